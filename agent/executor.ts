// Step 5: one job from start to report. Plugins are made available (cache or download, in
// parallel), each started in its own child process that serves all its stages, then:
// before → the job's commands → on_success | on_failure → after. Every step is reported as it
// starts and ends; a failed step fails the job, and later stages still run as the seed says.
import fsp from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { Job, JobPlugin } from "../proto/gen/arcade/v1/agent.js";
import { StepStatus } from "../proto/gen/arcade/v1/plugin.js";
import { stageName, type StageName } from "../proto/stages.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { parseManifest, pluginKey, type PluginManifest } from "../signing/manifest.js";
import { capLines } from "../signing/text.js";
import type { CacheEntry, PluginCache } from "./cache.js";
import { runCommands } from "./commands.js";
import type { Downloader } from "./downloader.js";
import type { Reporter } from "./reporter.js";
import { PluginProcess } from "./sandbox/runner.js";
import { EVENT } from "../signing/events.js";

export type ExecutorDeps = {
  cache: PluginCache;
  downloader: Downloader;
  reporter: Reporter;
  log: Logger;
  workDir: string;
  maxParallelDownloads: number;
  maxOutputBytes: number;
  /** Bytes of a plugin's ctx.log() lines reported per step. */
  maxStepLogBytes: number;
  /** Aborted when the agent stops: commands are killed and remaining plugin steps skipped. */
  signal?: AbortSignal;
  /** Sandbox policy for every plugin process of the job (network, fail-closed isolation). */
  sandbox?: { allowNetwork: boolean; requireNetworkIsolation: boolean };
};

const ORDER: StageName[] = ["before", "on_success", "on_failure", "after"];

export async function executeJob(job: Job, d: ExecutorDeps): Promise<boolean> {
  const log = d.log.child({ job_id: job.jobId });
  const startedAt = Date.now();
  const deadline = startedAt + (job.timeoutSeconds || 3600) * 1000;
  const jobDir = path.join(d.workDir, "jobs", job.jobId);
  const workspace = path.join(jobDir, "workspace");
  await fsp.mkdir(workspace, { recursive: true, mode: 0o700 });
  const releases: (() => void)[] = [];
  const procs = new Map<string, PluginProcess>();
  let failure: ArcadeError | undefined;
  let exitCode = 0;
  let output = "";
  try {
    // Steps 3-4: every plugin present and verified before anything runs.
    const { entries, errors } = await ensureAll(job.plugins, d, releases);
    if (errors.size > 0) {
      failure = [...errors.values()][0]!;
      for (const s of job.plugins) {
        const err = errors.get(pluginKey(s.plugin!.pluginId, s.plugin!.version));
        if (err)
          await d.reporter.step({
            jobId: job.jobId,
            stepId: s.stepId,
            status: StepStatus.STEP_STATUS_FAILED,
            errorCode: err.code,
            errorMessage: err.message,
            completedAtMs: Date.now(),
          });
      }
      // the others are marked skipped by the server when the job completes
    } else {
      // Step 5.
      const steps = sortSteps(job.plugins);
      const runStep = async (s: JobPlugin, status?: "succeeded" | "failed") => {
        if (d.signal?.aborted) {
          failure ??= cancelled();
          return d.reporter.skip(job.jobId, s.stepId);
        }
        const r = await runPluginStep(job, s, entries, procs, { workspace, jobDir, status }, d, log);
        if (!r.ok && !failure) failure = r.error;
      };
      for (const s of steps.before) {
        if (failure) await d.reporter.skip(job.jobId, s.stepId);
        else await runStep(s);
      }
      if (!failure) {
        log.info({ event: EVENT.AGENT_JOB_COMMANDS, step: "execute", commands: job.commands.length }, "running job commands");
        const r = await runCommands(job.commands, {
          cwd: workspace,
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: workspace, LANG: "C.UTF-8", ARCADE_JOB_ID: job.jobId },
          deadline,
          maxOutputBytes: d.maxOutputBytes,
          onStart: (cmd) => log.info({ event: EVENT.AGENT_COMMAND_STARTED, step: "execute", command: cmd }, "command"),
          signal: d.signal,
        });
        exitCode = r.exitCode;
        output = r.output;
        failure = r.error;
      }
      const outcome = failure ? "failed" : "succeeded";
      for (const s of failure ? steps.on_failure : steps.on_success) await runStep(s, outcome);
      for (const s of failure ? steps.on_success : steps.on_failure) await d.reporter.skip(job.jobId, s.stepId);
      for (const s of steps.after) await runStep(s, failure ? "failed" : "succeeded");
    }
  } catch (e) {
    failure = asArcade(e);
    log.error({ event: EVENT.AGENT_JOB_ABORTED, err: e }, "job aborted");
  } finally {
    await Promise.all([...procs.values()].map((p) => p.close().catch(() => undefined)));
    for (const release of releases) release();
    await d.cache.persistUsage().catch(() => undefined);
    await fsp.rm(jobDir, { recursive: true, force: true }).catch(() => undefined);
  }
  await d.reporter.complete({
    jobId: job.jobId,
    succeeded: !failure,
    exitCode,
    output,
    errorCode: failure?.code ?? "",
    errorMessage: failure?.message ?? "",
    startedAtMs: startedAt,
    completedAtMs: Date.now(),
  });
  log.info(
    { event: EVENT.AGENT_JOB_FINISHED, step: "execute", succeeded: !failure, code: failure?.code },
    failure ? "job failed" : "job succeeded",
  );
  return !failure;
}

type Installed = { entry: CacheEntry; manifest: PluginManifest };

/** Ensures each distinct plugin once, several at a time; collects failures per plugin. */
async function ensureAll(
  plugins: JobPlugin[],
  d: ExecutorDeps,
  releases: (() => void)[],
): Promise<{ entries: Map<string, Installed>; errors: Map<string, ArcadeError> }> {
  const unique = new Map(plugins.map((p) => [pluginKey(p.plugin!.pluginId, p.plugin!.version), p.plugin!]));
  const entries = new Map<string, Installed>();
  const errors = new Map<string, ArcadeError>();
  const queue = [...unique.entries()];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [key, ref] = next;
      try {
        const { entry } = await d.downloader.ensure(ref);
        releases.push(d.cache.acquire(entry));
        const manifest = parseManifest(JSON.parse(await fsp.readFile(path.join(d.cache.dirOf(entry), "manifest.json"), "utf8")));
        entries.set(key, { entry, manifest });
      } catch (e) {
        errors.set(key, asArcade(e));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(d.maxParallelDownloads, queue.length) }, worker));
  return { entries, errors };
}

async function runPluginStep(
  job: Job,
  s: JobPlugin,
  entries: Map<string, Installed>,
  procs: Map<string, PluginProcess>,
  ctx: { workspace: string; jobDir: string; status?: "succeeded" | "failed" },
  d: ExecutorDeps,
  log: Logger,
): Promise<{ ok: true } | { ok: false; error: ArcadeError }> {
  const ref = s.plugin!;
  const key = pluginKey(ref.pluginId, ref.version);
  const stage = stageName(s.stage)!;
  const startedAt = Date.now();
  await d.reporter.step({ jobId: job.jobId, stepId: s.stepId, status: StepStatus.STEP_STATUS_RUNNING, startedAtMs: startedAt });
  let outcome: { ok: boolean; result: string | null; error?: { code: string; message: string }; logs?: string[]; completedAt: number };
  try {
    const installed = entries.get(key)!;
    if (!installed.manifest.stages.includes(stage)) {
      throw new ArcadeError(
        ErrorCode.PLUGIN_FAILED,
        `${key} does not implement stage ${stage} (its manifest lists ${installed.manifest.stages.join(", ")})`,
      );
    }
    let proc = procs.get(key);
    if (!proc) {
      proc = await PluginProcess.start({
        pluginDir: d.cache.dirOf(installed.entry),
        manifest: installed.manifest,
        workRoot: ctx.jobDir,
        jobWorkspace: ctx.workspace,
        sandbox: d.sandbox,
      });
      procs.set(key, proc);
    }
    const config = JSON.parse(s.configJson || "{}") as Record<string, unknown>;
    outcome = await proc.runStage(stage, config, { id: job.jobId, workspace: ctx.workspace, status: ctx.status });
  } catch (e) {
    outcome = { ok: false, result: null, error: { code: errorCodeOf(e), message: errorMessageOf(e) }, completedAt: Date.now() };
  }
  const completedAt = outcome.completedAt ?? Date.now();
  log.info(
    {
      event: EVENT.AGENT_STAGE_FINISHED,
      step: "execute",
      plugin_id: ref.pluginId,
      version: ref.version,
      stage,
      ok: outcome.ok,
      code: outcome.error?.code,
    },
    `plugin stage ${stage} ${outcome.ok ? "succeeded" : "failed"}`,
  );
  await d.reporter.step({
    jobId: job.jobId,
    stepId: s.stepId,
    status: outcome.ok ? StepStatus.STEP_STATUS_SUCCEEDED : StepStatus.STEP_STATUS_FAILED,
    result: outcome.result ?? "",
    errorCode: outcome.error?.code ?? "",
    errorMessage: outcome.error?.message ?? "",
    startedAtMs: startedAt,
    completedAtMs: completedAt,
    logs: capLines(outcome.logs ?? [], d.maxStepLogBytes),
  });
  if (outcome.ok) return { ok: true };
  return {
    ok: false,
    error: new ArcadeError(
      (outcome.error?.code as ErrorCode) ?? ErrorCode.PLUGIN_FAILED,
      `${key} ${stage}: ${outcome.error?.message ?? "failed"}`,
    ),
  };
}

function sortSteps(plugins: JobPlugin[]): Record<StageName, JobPlugin[]> {
  const by = Object.fromEntries(ORDER.map((s) => [s, [] as JobPlugin[]])) as Record<StageName, JobPlugin[]>;
  for (const p of plugins) {
    const s = stageName(p.stage);
    if (s) by[s].push(p);
  }
  for (const s of ORDER) by[s].sort((a, b) => a.executionOrder - b.executionOrder);
  return by;
}

function cancelled(): ArcadeError {
  return new ArcadeError(ErrorCode.JOB_CANCELLED, "the agent was stopped while the job ran; its processes were killed");
}

function asArcade(e: unknown): ArcadeError {
  return e instanceof ArcadeError ? e : new ArcadeError(ErrorCode.INTERNAL, errorMessageOf(e));
}
