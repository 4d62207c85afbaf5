// Jobs and their t_job_plugin rows: submit, hand out to one agent, record each step and the end.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { JobPluginSpec, JobStatus } from "../proto/gen/arcade/v1/admin.js";
import type { Job as WireJob } from "../proto/gen/arcade/v1/agent.js";
import { DbStepStatus, stageName, stepStatusFromDb, stageFromName } from "../proto/stages.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { pluginKey } from "../signing/manifest.js";
import { capLines } from "../signing/text.js";
import type { AgentIdentity as AclIdentity } from "./acl.js";
import { jobAllowed, type AclStore } from "./acl-store.js";
import type { AuditLog } from "./audit.js";
import type { Db } from "./db/client.js";
import { findPublished } from "./plugins.js";

export type JobLimits = {
  defaultTimeoutSeconds: number;
  maxCommands: number;
  maxPlugins: number;
  maxOutputBytes: number;
  maxStepLogBytes: number;
};
const MAX_TIMEOUT_SECONDS = 7 * 86_400;
const MAX_RESULT_BYTES = 64 * 1024;
const MAX_CONFIG_BYTES = 64 * 1024;

export async function submitJob(
  db: Db,
  req: { commands: string[]; plugins: JobPluginSpec[]; agentId: string; timeoutSeconds: number },
  limits: JobLimits,
): Promise<string> {
  if (req.commands.length > limits.maxCommands) throw invalid(`a job may have at most ${limits.maxCommands} commands`);
  if (req.plugins.length > limits.maxPlugins) throw invalid(`a job may use at most ${limits.maxPlugins} plugins`);
  if (req.commands.length === 0 && req.plugins.length === 0) throw invalid("a job needs at least one command or plugin");
  if (req.timeoutSeconds > MAX_TIMEOUT_SECONDS) throw invalid(`a job's timeout may be at most ${MAX_TIMEOUT_SECONDS} seconds`);
  for (const c of req.commands) if (c.trim() === "") throw invalid("commands must not be empty");
  const rows = [];
  for (const p of req.plugins) {
    const stage = stageName(p.stage);
    if (!stage) throw invalid(`plugin ${pluginKey(p.pluginId, p.version)}: stage must be one of before, after, on_success, on_failure`);
    await findPublished(db, p.pluginId, p.version); // PLUGIN_NOT_FOUND now rather than on the agent later
    const config = p.configJson === "" ? "{}" : p.configJson;
    if (Buffer.byteLength(config) > MAX_CONFIG_BYTES)
      throw invalid(`plugin ${p.pluginId}: config is larger than ${MAX_CONFIG_BYTES} bytes`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(config);
    } catch {
      throw invalid(`plugin ${p.pluginId}: config is not valid JSON`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw invalid(`plugin ${p.pluginId}: config must be a JSON object`);
    rows.push({
      id: randomUUID(),
      pluginId: p.pluginId,
      version: p.version,
      pluginConfig: config,
      executionOrder: p.executionOrder,
      executionStage: stage,
    });
  }
  const id = randomUUID();
  await db.job.create({
    data: {
      id,
      commands: JSON.stringify(req.commands),
      targetAgentId: req.agentId || null,
      timeoutSeconds: req.timeoutSeconds || limits.defaultTimeoutSeconds,
      plugins: { create: rows },
    },
  });
  return id;
}

/**
 * Hands this agent the oldest pending job it may run: targeted at it or at nobody, and every
 * plugin granted to it by the ACLs (deny by default). Jobs it may not run stay pending for
 * other agents — except one targeted at this very agent, which can then never run: it fails
 * with ACL_DENIED and the refusal is audited. A conditional update makes the claim atomic.
 */
export async function claimJob(db: Db, who: AclIdentity, acl: AclStore, audit?: AuditLog): Promise<WireJob | undefined> {
  const candidates = await db.job.findMany({
    where: { status: "pending", OR: [{ targetAgentId: null }, { targetAgentId: who.agentId }] },
    orderBy: { createdAt: "asc" },
    select: { id: true, targetAgentId: true, plugins: { select: { pluginId: true, version: true } } },
    // Enough that jobs this agent may not run cannot hide the ones it may.
    take: 500,
  });
  if (candidates.length === 0) return undefined;
  const grants = await acl.grants();
  for (const c of candidates) {
    const d = jobAllowed(
      grants,
      who,
      c.plugins.map((p) => ({ id: p.pluginId, version: p.version })),
    );
    if (!d.allowed) {
      if (c.targetAgentId === who.agentId) {
        const reason = `agent ${who.agentId} is not granted ${d.reason}`;
        const failed = await db.job.updateMany({
          where: { id: c.id, status: "pending" },
          data: { status: "failed", errorCode: ErrorCode.ACL_DENIED, errorMessage: reason, completedAt: new Date() },
        });
        if (failed.count === 1) {
          await db.jobPlugin.updateMany({ where: { jobId: c.id }, data: { status: DbStepStatus.skipped } });
          await audit?.record({ actor: `agent:${who.agentId}`, action: "job.dispatch", subject: c.id, outcome: "denied", reason });
        }
      }
      continue;
    }
    const claimed = await db.job.updateMany({
      where: { id: c.id, status: "pending" },
      data: { status: "assigned", assignedAgentId: who.agentId, assignedAt: new Date() },
    });
    if (claimed.count === 1) return toWireJob(db, c.id);
  }
  return undefined; // nothing for this agent now, or others won the races; it polls again
}

async function toWireJob(db: Db, jobId: string): Promise<WireJob> {
  const job = await db.job.findUniqueOrThrow({ where: { id: jobId }, include: { plugins: true } });
  const plugins = [];
  for (const row of job.plugins) {
    const p = await findPublished(db, row.pluginId, row.version);
    plugins.push({
      stepId: row.id,
      plugin: { pluginId: p.pluginId, version: p.version, sha256: p.sha256, size: p.size },
      stage: stageFromName(row.executionStage)!,
      executionOrder: row.executionOrder,
      configJson: row.pluginConfig,
    });
  }
  return { jobId: job.id, commands: JSON.parse(job.commands) as string[], plugins, timeoutSeconds: job.timeoutSeconds };
}

/** The job, checked to be assigned to this agent: an agent can only report on its own work. */
export async function ownedJob(db: Db, agentId: string, jobId: string) {
  const job = await db.job.findUnique({ where: { id: jobId } });
  if (!job || job.assignedAgentId !== agentId)
    throw new ArcadeError(ErrorCode.PERMISSION_DENIED, `job ${jobId} is not assigned to agent ${agentId}`);
  if (job.status === "succeeded" || job.status === "failed")
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `job ${jobId} is already ${job.status}`);
  return job;
}

export async function recordStep(
  db: Db,
  agentId: string,
  r: {
    jobId: string;
    stepId: string;
    status: DbStepStatus;
    result: string;
    errorCode: string;
    errorMessage: string;
    startedAtMs: number;
    completedAtMs: number;
    logs: string[];
  },
  limits: Pick<JobLimits, "maxStepLogBytes">,
): Promise<void> {
  const job = await ownedJob(db, agentId, r.jobId);
  const updated = await db.jobPlugin.updateMany({
    where: { id: r.stepId, jobId: r.jobId },
    data: {
      status: r.status,
      result: r.result ? cap(r.result, MAX_RESULT_BYTES) : null,
      errorCode: r.errorCode || null,
      errorMessage: r.errorMessage ? cap(r.errorMessage, MAX_RESULT_BYTES) : null,
      // The agent is not trusted to have capped or cleaned the lines: do both again. A step is
      // reported more than once (running, then its end); the end carries the logs.
      ...(r.logs.length > 0 ? { logs: JSON.stringify(capLines(r.logs, limits.maxStepLogBytes)) } : {}),
      startedAt: r.startedAtMs ? new Date(r.startedAtMs) : undefined,
      completedAt: r.completedAtMs ? new Date(r.completedAtMs) : undefined,
    },
  });
  if (updated.count !== 1) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `job ${r.jobId} has no step ${r.stepId}`);
  if (job.status === "assigned") await db.job.update({ where: { id: job.id }, data: { status: "running", startedAt: new Date() } });
}

export async function completeJob(
  db: Db,
  agentId: string,
  r: {
    jobId: string;
    succeeded: boolean;
    exitCode: number;
    output: string;
    errorCode: string;
    errorMessage: string;
    startedAtMs: number;
    completedAtMs: number;
  },
  limits: JobLimits,
): Promise<void> {
  const job = await ownedJob(db, agentId, r.jobId);
  const now = new Date();
  // Steps the agent never reached (e.g. a download failed first) did not run: say so.
  await db.jobPlugin.updateMany({
    where: { jobId: job.id, status: { in: [DbStepStatus.pending, DbStepStatus.running] } },
    data: { status: DbStepStatus.skipped },
  });
  await db.job.update({
    where: { id: job.id },
    data: {
      status: r.succeeded ? "succeeded" : "failed",
      exitCode: r.exitCode,
      output: cap(r.output, limits.maxOutputBytes),
      errorCode: r.errorCode || null,
      errorMessage: r.errorMessage || null,
      startedAt: job.startedAt ?? (r.startedAtMs ? new Date(r.startedAtMs) : now),
      completedAt: r.completedAtMs ? new Date(r.completedAtMs) : now,
    },
  });
}

export async function getJob(db: Db, jobId: string): Promise<JobStatus> {
  const job = await db.job.findUnique({
    where: { id: jobId },
    include: { plugins: { orderBy: [{ executionOrder: "asc" }, { createdAt: "asc" }] } },
  });
  if (!job) throw new ArcadeError(ErrorCode.JOB_NOT_FOUND, `no job ${jobId}`);
  const ms = (d: Date | null) => (d ? d.getTime() : 0);
  return {
    jobId: job.id,
    status: job.status,
    agentId: job.assignedAgentId ?? "",
    commands: JSON.parse(job.commands) as string[],
    exitCode: job.exitCode ?? 0,
    output: job.output,
    errorMessage: job.errorMessage ?? "",
    errorCode: job.errorCode ?? "",
    createdAtMs: ms(job.createdAt),
    startedAtMs: ms(job.startedAt),
    completedAtMs: ms(job.completedAt),
    steps: job.plugins.map((s) => ({
      stepId: s.id,
      pluginId: s.pluginId,
      version: s.version,
      stage: stageFromName(s.executionStage)!,
      executionOrder: s.executionOrder,
      status: stepStatusFromDb(s.status),
      result: s.result ?? "",
      errorMessage: s.errorMessage ?? "",
      errorCode: s.errorCode ?? "",
      startedAtMs: ms(s.startedAt),
      completedAtMs: ms(s.completedAt),
      logs: StoredLogs.parse(JSON.parse(s.logs)),
    })),
  };
}

/**
 * Fails jobs that waited for an agent longer than `jobs.pending_timeout`: no agent that may run
 * them polled in time (all busy, offline, or none granted). Without this such a job waits for
 * ever and `job submit --wait` with it.
 */
export async function expirePendingJobs(db: Db, pendingTimeoutSeconds: number, now = new Date()): Promise<string[]> {
  const cutoff = new Date(now.getTime() - pendingTimeoutSeconds * 1000);
  const candidates = await db.job.findMany({
    where: { status: "pending", createdAt: { lt: cutoff } },
    select: { id: true, targetAgentId: true },
    orderBy: { createdAt: "asc" },
    take: 500,
  });
  const expired: string[] = [];
  for (const j of candidates) {
    const who = j.targetAgentId ? `agent ${j.targetAgentId}` : "any agent granted its plugins";
    const done = await db.job.updateMany({
      where: { id: j.id, status: "pending" },
      data: {
        status: "failed",
        errorCode: ErrorCode.JOB_PENDING_TIMEOUT,
        errorMessage: `no agent took the job within jobs.pending_timeout (${pendingTimeoutSeconds} s): check that ${who} is running (arcade agent list) and not busy, then submit it again`,
        completedAt: now,
      },
    });
    if (done.count === 1) {
      await db.jobPlugin.updateMany({ where: { jobId: j.id }, data: { status: DbStepStatus.skipped } });
      expired.push(j.id);
    }
  }
  return expired;
}

/**
 * Fails jobs whose agent went silent: assigned or running past their timeout plus a grace
 * period. Without this a crashed agent leaves its job "running" forever.
 */
export async function reapStuckJobs(db: Db, graceSeconds: number, now = new Date()): Promise<string[]> {
  const candidates = await db.job.findMany({
    where: { status: { in: ["assigned", "running"] }, assignedAt: { lt: new Date(now.getTime() - graceSeconds * 1000) } },
    select: { id: true, assignedAt: true, timeoutSeconds: true },
    take: 500,
  });
  const reaped: string[] = [];
  for (const j of candidates) {
    if (j.assignedAt!.getTime() + (j.timeoutSeconds + graceSeconds) * 1000 > now.getTime()) continue;
    const done = await db.job.updateMany({
      where: { id: j.id, status: { in: ["assigned", "running"] } },
      data: {
        status: "failed",
        errorCode: ErrorCode.JOB_TIMEOUT,
        errorMessage: `the agent did not report within the job's timeout (${j.timeoutSeconds} s) plus ${graceSeconds} s: it may have crashed or lost the server`,
        completedAt: now,
      },
    });
    if (done.count === 1) {
      await db.jobPlugin.updateMany({
        where: { jobId: j.id, status: { in: [DbStepStatus.pending, DbStepStatus.running] } },
        data: { status: DbStepStatus.skipped },
      });
      reaped.push(j.id);
    }
  }
  return reaped;
}

const StoredLogs = z.array(z.string());

function cap(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  return `${Buffer.from(s).subarray(0, max).toString("utf8")}\n[truncated]`;
}

function invalid(msg: string): ArcadeError {
  return new ArcadeError(ErrorCode.INVALID_ARGUMENT, msg);
}
