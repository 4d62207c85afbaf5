// `arcade job submit|status`: submit, wait with progress on a terminal, and a readable report.
import type { Metadata } from "@grpc/grpc-js";
import type { AdminServiceClient, JobStatus } from "../proto/gen/arcade/v1/admin.js";
import { StepStatus, stageToJSON, stepStatusToJSON } from "../proto/gen/arcade/v1/plugin.js";
import { call } from "../proto/rpc.js";
import { stageName, stepStatusName } from "../proto/stages.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { neutralizeBlock, neutralizeLine } from "../signing/text.js";
import { connectAdmin, type ConnectOptions } from "./admin-client.js";
import { enumNamer, printJson, printable } from "./output.js";
import { jobProgress } from "./progress.js";
import type { SubmitFlags } from "./job-file.js";

/** Enum fields of job messages, by name in --json output. */
export const JOB_ENUMS = { stage: enumNamer(stageToJSON, "STAGE_"), status: enumNamer(stepStatusToJSON, "STEP_STATUS_") };

const DONE_STEP = new Set<StepStatus>([StepStatus.STEP_STATUS_SUCCEEDED, StepStatus.STEP_STATUS_FAILED, StepStatus.STEP_STATUS_SKIPPED]);

function seconds(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${flag} ${v}: expected a number of seconds`);
  return n;
}

export async function submitCommand(
  o: SubmitFlags & ConnectOptions & { wait?: boolean; json?: boolean; waitTimeout: string },
): Promise<void> {
  const { buildJobRequest } = await import("./job-file.js");
  const req = buildJobRequest(o);
  const waitMs = seconds("--wait-timeout", o.waitTimeout) * 1000;
  const { client, md } = connectAdmin(o);
  try {
    const { jobId } = await call(client.submitJob, client, req, md);
    if (!o.wait) {
      if (o.json) printJson({ jobId });
      else console.log(jobId);
      return;
    }
    const j = await waitWithProgress(client, md, jobId, waitMs, "--wait-timeout");
    report(j, o.json);
    if (j.status !== "succeeded") process.exitCode = 1;
  } finally {
    client.close();
  }
}

export async function statusCommand(jobId: string, o: ConnectOptions & { wait?: boolean; json?: boolean; timeout: string }): Promise<void> {
  const waitMs = seconds("--timeout", o.timeout) * 1000;
  const { client, md } = connectAdmin(o);
  try {
    const j = o.wait
      ? await waitWithProgress(client, md, jobId, waitMs, "--timeout")
      : (await call(client.getJob, client, { jobId }, md)).job!;
    report(j, o.json);
  } finally {
    client.close();
  }
}

function report(j: JobStatus, json: boolean | undefined): void {
  if (json) printJson(j, JOB_ENUMS);
  else console.log(printable(formatJob(j)));
}

async function waitWithProgress(
  client: AdminServiceClient,
  md: Metadata,
  jobId: string,
  timeoutMs: number,
  flag: string,
): Promise<JobStatus> {
  const bar = await jobProgress(jobId);
  try {
    return await waitForJob(client, md, jobId, timeoutMs, (j) =>
      bar.show(j.status, j.steps.filter((s) => DONE_STEP.has(s.status)).length, j.steps.length),
    );
  } catch (e) {
    if (e instanceof ArcadeError && e.code === ErrorCode.JOB_TIMEOUT)
      throw new ArcadeError(
        ErrorCode.JOB_TIMEOUT,
        `${e.message}; stopped waiting (${flag}), the job keeps running: follow it with \`arcade job status ${jobId} --wait\``,
      );
    throw e;
  } finally {
    bar.stop();
  }
}

/** Polls until the job finishes; JOB_TIMEOUT after timeoutMs (the job itself is left alone). */
export async function waitForJob(
  client: AdminServiceClient,
  md: Metadata,
  jobId: string,
  timeoutMs: number,
  onUpdate?: (j: JobStatus) => void,
): Promise<JobStatus> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await call(client.getJob, client, { jobId }, md);
    if (job) onUpdate?.(job);
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
