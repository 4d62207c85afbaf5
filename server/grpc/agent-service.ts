// AgentService: the five steps of the seed, seen from the server.
import type { AgentServiceServer } from "../../proto/gen/arcade/v1/agent.js";
import { stepStatusToDb } from "../../proto/stages.js";
import { ArcadeError, ErrorCode, errorCodeOf } from "../../signing/errors.js";
import { isSha256Hex } from "../../signing/digest.js";
import { isValidPluginId, isValidVersion } from "../../signing/manifest.js";
import { authenticateAgent, createAgentSession } from "../auth.js";
import type { ServerContext } from "../context.js";
import { streamBlob } from "../download.js";
import { claimJob, completeJob, recordStep } from "../jobs.js";
import { findPublished } from "../plugins.js";
import { peerOf, publicError, unary } from "./handler.js";

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_INSTALLED = 10_000;

export function agentService(ctx: ServerContext): AgentServiceServer {
  const { db, log } = ctx;
  return {
    // Step 1. Until enrollment tokens land, the id is claimed here and bound to the session
    // token returned; every later call is identified by that token alone.
    register: unary(log, "Register", async (call) => {
      const r = call.request;
      if (!AGENT_ID.test(r.agentId))
        throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "agent id must be 1-64 letters, digits, '.', '_' or '-'");
      if (r.installed.length > MAX_INSTALLED)
        throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `too many installed plugins reported (max ${MAX_INSTALLED})`);
      const valid = r.installed.filter((p) => isValidPluginId(p.pluginId) && isValidVersion(p.version) && isSha256Hex(p.sha256));
      const installed = [...new Map(valid.map((p) => [`${p.pluginId}@${p.version}`, p])).values()];
      const meta = { hostname: r.hostname.slice(0, 255), agentVersion: r.agentVersion.slice(0, 64), lastSeenAt: new Date() };
      await db.agent.upsert({ where: { id: r.agentId }, create: { id: r.agentId, ...meta }, update: meta });
      await db.agentPlugin.deleteMany({ where: { agentId: r.agentId } });
      if (installed.length > 0) {
        await db.agentPlugin.createMany({
          data: installed.map((p) => ({ agentId: r.agentId, pluginId: p.pluginId, version: p.version, sha256: p.sha256 })),
        });
      }
      const token = await createAgentSession(db, r.agentId, ctx.config.sessionTtlSeconds);
      log.info({ agent_id: r.agentId, installed: installed.length, peer: peerOf(call) }, "agent registered");
      return { sessionToken: token, agentId: r.agentId, pollIntervalSeconds: ctx.config.pollIntervalSeconds };
    }),

    // Step 2.
    fetchJob: unary(log, "FetchJob", async (call) => {
      const agentId = await authenticateAgent(db, call.metadata);
      await db.agent.update({ where: { id: agentId }, data: { lastSeenAt: new Date() } });
      const job = await claimJob(db, agentId);
      if (job) {
        ctx.metrics.jobs.inc({ event: "dispatched" });
        log.info({ agent_id: agentId, job_id: job.jobId, plugins: job.plugins.length }, "job dispatched");
      }
      return { job };
    }),

    // Step 4 (step 3, the cache check, happens on the agent).
    downloadPlugin: (call) => {
      const { pluginId, version, offset } = call.request;
      // Labels name a plugin only once the caller is known and the plugin exists: request
      // fields must not be able to mint new time series.
      let labels = { plugin_id: "-", version: "-" };
      const started = process.hrtime.bigint();
      void (async () => {
        const agentId = await authenticateAgent(db, call.metadata);
        if (!isValidPluginId(pluginId) || !isValidVersion(version))
          throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "invalid plugin id or version");
        // Permission before existence, so a refused caller learns nothing about what is published.
        await checkDownloadAllowed(ctx, agentId, pluginId, version);
        const p = await findPublished(db, pluginId, version);
        labels = { plugin_id: pluginId, version };
        const r = await streamBlob(call, ctx.store, p, offset, ctx.config.chunkSize);
        ctx.metrics.downloads.inc({ ...labels, status: r.cancelled ? "cancelled" : "served" });
        ctx.metrics.downloadBytes.inc({ plugin_id: pluginId }, r.sent);
        if (!r.cancelled) ctx.metrics.downloadDuration.observe({ plugin_id: pluginId }, Number(process.hrtime.bigint() - started) / 1e9);
        log.info(
          { agent_id: agentId, plugin_id: pluginId, version, offset, bytes: r.sent },
          r.cancelled ? "download cancelled by the agent" : "plugin served",
        );
        call.end();
      })().catch((e: unknown) => {
        const code = errorCodeOf(e);
        ctx.metrics.downloads.inc({ ...labels, status: downloadStatus(code) });
        if (code === ErrorCode.BLOB_CORRUPT)
          log.error({ plugin_id: pluginId, version, code }, "stored blob is corrupt; refusing to serve it");
        call.emit("error", publicError(e, log, "DownloadPlugin"));
      });
    },

    // Step 5, reported by the agent as it goes.
    reportStep: unary(log, "ReportStep", async (call) => {
      const agentId = await authenticateAgent(db, call.metadata);
      const r = call.request;
      const status = stepStatusToDb(r.status);
      if (status === undefined) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "step status is required");
      await recordStep(db, agentId, { ...r, status });
      return {};
    }),

    completeJob: unary(log, "CompleteJob", async (call) => {
      const agentId = await authenticateAgent(db, call.metadata);
      const r = call.request;
      await completeJob(db, agentId, r, ctx.config.jobs);
      ctx.metrics.jobs.inc({ event: r.succeeded ? "succeeded" : "failed" });
      log.info({ agent_id: agentId, job_id: r.jobId, succeeded: r.succeeded, code: r.errorCode || undefined }, "job completed");
      return {};
    }),
  };
}

function downloadStatus(code: ErrorCode): string {
  if (code === ErrorCode.PERMISSION_DENIED || code === ErrorCode.UNAUTHENTICATED) return "denied";
  if (code === ErrorCode.BLOB_CORRUPT) return "corrupt";
  if (code === ErrorCode.PLUGIN_NOT_FOUND) return "not_found";
  return "failed";
}

/**
 * Deny by default: an agent may download only the plugins of a job currently assigned to it.
 * (Per-agent ACLs, which also allow prefetching, arrive with the identity issue.)
 */
async function checkDownloadAllowed(ctx: ServerContext, agentId: string, pluginId: string, version: string): Promise<void> {
  const n = await ctx.db.jobPlugin.count({
    where: { pluginId, version, job: { assignedAgentId: agentId, status: { in: ["assigned", "running"] } } },
  });
  if (n === 0) {
    throw new ArcadeError(ErrorCode.PERMISSION_DENIED, `agent ${agentId} has no assigned job that uses ${pluginId}@${version}`);
  }
}
