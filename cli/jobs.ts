// `arcade job submit|status`: job specs from flags or a YAML/JSON file, and a readable report.
import fs from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { AdminServiceClient, JobPluginSpec, JobStatus, SubmitJobRequest } from "../proto/gen/arcade/v1/admin.js";
import type { Metadata } from "@grpc/grpc-js";
import { call } from "../proto/rpc.js";
import { stageFromName, stageName, stepStatusName } from "../proto/stages.js";
import { StepStatus } from "../proto/gen/arcade/v1/plugin.js";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";
import { parsePluginRef } from "../signing/manifest.js";
import { neutralizeBlock, neutralizeLine } from "../signing/text.js";
import { parseWith } from "../signing/validation.js";

const JobFile = z.strictObject({
  commands: z.array(z.string().min(1)).default([]),
  plugins: z
    .array(
      z.strictObject({
        plugin: z.string().min(3),
        stage: z.enum(["before", "after", "on_success", "on_failure"]),
        order: z.number().int().min(0).default(0),
        config: z.record(z.string(), z.unknown()).default({}),
      }),
    )
    .default([]),
  agent: z.string().optional(),
  timeout: z.number().int().min(1).optional(),
});

export type SubmitFlags = { run?: string[]; plugin?: string[]; config?: string[]; file?: string; agent?: string; timeout?: string };

export function buildJobRequest(f: SubmitFlags): SubmitJobRequest {
  const req: SubmitJobRequest = { commands: [], plugins: [], agentId: f.agent ?? "", timeoutSeconds: f.timeout ? Number(f.timeout) : 0 };
  if (f.file) {
    let doc: unknown;
    try {
      doc = parseYaml(fs.readFileSync(f.file, "utf8"));
    } catch (e) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${f.file}: ${errorMessageOf(e)}`);
    }
    const j = parseWith(JobFile, doc, f.file, ErrorCode.INVALID_ARGUMENT);
    req.commands.push(...j.commands);
    for (const p of j.plugins) req.plugins.push(spec(p.plugin, p.stage, p.order, JSON.stringify(p.config)));
    if (j.agent && !f.agent) req.agentId = j.agent;
    if (j.timeout && !f.timeout) req.timeoutSeconds = j.timeout;
  }
  req.commands.push(...(f.run ?? []));
  const configs = new Map<string, string>();
  for (const c of f.config ?? []) {
    const i = c.indexOf("=");
    if (i < 1) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--config ${c}: expected <plugin id>=<JSON object>`);
    configs.set(c.slice(0, i), c.slice(i + 1));
  }
  for (const p of f.plugin ?? []) {
    const [ref, stage = "", order = "0"] = p.split(":");
    const { id } = parsePluginRef(ref!);
    req.plugins.push(spec(ref!, stage, Number(order), configs.get(id) ?? "{}"));
  }
  if (Number.isNaN(req.timeoutSeconds)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "--timeout must be a number of seconds");
  return req;
}

function spec(ref: string, stage: string, order: number, configJson: string): JobPluginSpec {
  const { id, version } = parsePluginRef(ref);
  const s = stageFromName(stage);
  if (s === undefined)
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      `plugin ${ref}: stage must be before, after, on_success or on_failure (write ${ref}:before:1)`,
    );
  if (!Number.isInteger(order) || order < 0)
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `plugin ${ref}: order must be a whole number`);
  return { pluginId: id, version, stage: s, executionOrder: order, configJson };
}

export async function waitForJob(client: AdminServiceClient, md: Metadata, jobId: string, timeoutMs: number): Promise<JobStatus> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await call(client.getJob, client, { jobId }, md);
    if (job && (job.status === "succeeded" || job.status === "failed")) return job;
    if (Date.now() > until)
      throw new ArcadeError(ErrorCode.JOB_TIMEOUT, `job ${jobId} is still ${job?.status} after ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** A job report for a terminal. Everything agents and plugins wrote is untrusted: neutralised. */
export function formatJob(j: JobStatus): string {
  const ts = (ms: number) => (ms ? new Date(ms).toISOString().slice(11, 23) : "-");
  const lines = [
    `job ${j.jobId}: ${j.status}${j.agentId ? ` on ${j.agentId}` : ""}${j.errorCode ? ` (${j.errorCode}: ${neutralizeLine(j.errorMessage)})` : ""}`,
    `  commands: ${j.commands.length} (exit code ${j.exitCode})`,
  ];
  if (j.steps.length) {
    lines.push("  order stage       plugin                         status     started      completed    result / error");
    for (const s of j.steps) {
      const status = stepStatusName(s.status - 1);
      const detail = s.status === StepStatus.STEP_STATUS_FAILED ? `${s.errorCode}: ${s.errorMessage}` : s.result;
      lines.push(
        `  ${String(s.executionOrder).padEnd(5)} ${(stageName(s.stage) ?? "?").padEnd(11)} ${`${s.pluginId}@${s.version}`.padEnd(30)} ${status.padEnd(10)} ${ts(s.startedAtMs).padEnd(12)} ${ts(s.completedAtMs).padEnd(12)} ${neutralizeLine(detail.replace(/\s+/g, " ")).slice(0, 80)}`,
      );
      for (const l of s.logs) lines.push(`        | ${neutralizeLine(l)}`);
    }
  }
  if (j.output)
    lines.push(
      "  output:",
      ...neutralizeBlock(j.output)
        .trimEnd()
        .split("\n")
        .map((l) => `    ${l}`),
    );
  return lines.join("\n");
}
