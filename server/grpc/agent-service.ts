// AgentService: the five steps of the seed, seen from the server. Every call is identified by
// the agent's credential (enrollment token for the very first Register); a body field naming
// another agent is refused and audited.
import type { AgentServiceServer } from "../../proto/gen/arcade/v1/agent.js";
import { stepStatusToDb } from "../../proto/stages.js";
import { isSha256Hex } from "../../signing/digest.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../../signing/errors.js";
import { isValidPluginId, isValidVersion, pluginKey } from "../../signing/manifest.js";
import { checkPluginAllowed } from "../acl-store.js";
import { authenticateAgent, enroll, enrollmentToken, rotateCredential, type AgentIdentity } from "../auth.js";
import type { ServerContext, SurfaceCall } from "../context.js";
import { streamBlob } from "../download.js";
import { claimJob, completeJob, recordStep } from "../jobs.js";
import { findPublished } from "../plugins.js";
import { peerOf, publicError, throttledAuth, unary } from "./handler.js";
import { EVENT } from "../../signing/events.js";

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_INSTALLED = 10_000;

export function agentService(ctx: ServerContext): AgentServiceServer {
  const { db, log } = ctx;
  const identify = (call: SurfaceCall, rpc: string) => identifyAgent(ctx, call, rpc);
  return {
    // Step 1: enrollment (one-time token → credential) or a re-registration with the credential.
    register: unary(log, "Register", async (call) => {
      const r = call.request;
      if (!AGENT_ID.test(r.agentId))
        throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "agent id must be 1-64 letters, digits, '.', '_' or '-'");
      if (r.installed.length > MAX_INSTALLED)
        throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `too many installed plugins reported (max ${MAX_INSTALLED})`);
      const source = peerOf(call);
      let credential = "";
      let who: { agentId: string; labels: Record<string, string> };
      const token = enrollmentToken(call.metadata);
      if (token) {
        const certId = ctx.peerAgentId(call);
        if (certId !== undefined && certId !== r.agentId) {
          await ctx.audit.record({
            actor: `agent:${r.agentId}`,
            action: "agent.enroll",
            outcome: "denied",
            reason: `client certificate names agent ${certId || "(none)"}`,
            source,
          });
          throw new ArcadeError(ErrorCode.PERMISSION_DENIED, `the client certificate does not name agent ${r.agentId}`);
        }
        credential = await throttledAuth(ctx, call, "agent.enroll", r.agentId, () => enroll(db, r.agentId, token), `agent:${r.agentId}`);
        const agent = await db.agent.findUniqueOrThrow({ where: { id: r.agentId } });
        who = { agentId: r.agentId, labels: JSON.parse(agent.labels) as Record<string, string> };
        await ctx.audit.record({ actor: `agent:${r.agentId}`, action: "agent.enroll", outcome: "succeeded", source });
      } else {
        who = await identify(call, "Register");
        await requireSameAgent(ctx, who, r.agentId, "Register", source);
      }
      const valid = r.installed.filter((p) => isValidPluginId(p.pluginId) && isValidVersion(p.version) && isSha256Hex(p.sha256));
      const installed = [...new Map(valid.map((p) => [`${p.pluginId}@${p.version}`, p])).values()];
      await db.agent.update({
        where: { id: who.agentId },
        data: { hostname: r.hostname.slice(0, 255), agentVersion: r.agentVersion.slice(0, 64), lastSeenAt: new Date() },
      });
      await db.agentPlugin.deleteMany({ where: { agentId: who.agentId } });
      if (installed.length > 0) {
        await db.agentPlugin.createMany({
          data: installed.map((p) => ({ agentId: who.agentId, pluginId: p.pluginId, version: p.version, sha256: p.sha256 })),
        });
      }
      log.info(
        {
          event: EVENT.SERVER_AGENT_REGISTERED,
          agent_id: who.agentId,
          installed: installed.length,
          enrolled: credential !== "",
          peer: source,
        },
        "agent registered",
      );
      return { credential, agentId: who.agentId, pollIntervalSeconds: ctx.config.pollIntervalSeconds, labels: who.labels };
    }),

    rotateCredential: unary(log, "RotateCredential", async (call) => {
      const who = await identify(call, "RotateCredential");
      const credential = await rotateCredential(db, who);
      await ctx.audit.record({
        actor: `agent:${who.agentId}`,
        action: "agent.credential.rotate",
        outcome: "succeeded",
        source: peerOf(call),
      });
      return { credential };
    }),

    // Step 2: only jobs whose every plugin this agent is granted.
    fetchJob: unary(log, "FetchJob", async (call) => {
      const who = await identify(call, "FetchJob");
      await db.agent.update({ where: { id: who.agentId }, data: { lastSeenAt: new Date() } });
      const job = await claimJob(db, who, ctx.acl, ctx.audit);
      if (job) {
        ctx.metrics.jobs.inc({ event: "dispatched" });
        log.info(
          { event: EVENT.SERVER_JOB_DISPATCHED, agent_id: who.agentId, job_id: job.jobId, plugins: job.plugins.length },
          "job dispatched",
        );
        await ctx.audit.record({
          actor: `agent:${who.agentId}`,
          action: "job.dispatch",
          subject: job.jobId,
          outcome: "succeeded",
          source: peerOf(call),
        });
      }
      return { job };
    }),

    // Step 4 (step 3, the cache check, happens on the agent).
    downloadPlugin: (call) => {
      const { pluginId, version, offset } = call.request;
      // Labels name a plugin only once the caller is known and allowed: request fields must
      // not be able to mint new time series.
      let labels = { plugin_id: "-", version: "-" };
      let actor = "unknown";
      const source = peerOf(call);
      const started = process.hrtime.bigint();
      void (async () => {
        const who = await identify(call, "DownloadPlugin");
        actor = `agent:${who.agentId}`;
        if (!isValidPluginId(pluginId) || !isValidVersion(version))
          throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "invalid plugin id or version");
        // Permission before existence, so a refused caller learns nothing about what is published.
        await checkPluginAllowed(ctx.acl, who, { id: pluginId, version });
        const p = await findPublished(db, pluginId, version);
        labels = { plugin_id: pluginId, version };
        const r = await streamBlob(call, ctx.store, p, offset, ctx.config.chunkSize);
        ctx.metrics.downloads.inc({ ...labels, status: r.cancelled ? "cancelled" : "served" });
        ctx.metrics.downloadBytes.inc({ plugin_id: pluginId }, r.sent);
        if (!r.cancelled) ctx.metrics.downloadDuration.observe({ plugin_id: pluginId }, Number(process.hrtime.bigint() - started) / 1e9);
        log.info(
          {
            event: r.cancelled ? EVENT.SERVER_PLUGIN_DOWNLOAD_CANCELLED : EVENT.SERVER_PLUGIN_SERVED,
            agent_id: who.agentId,
            plugin_id: pluginId,
            version,
            offset,
            bytes: r.sent,
          },
          r.cancelled ? "download cancelled by the agent" : "plugin served",
        );
        await ctx.audit.record({
          actor,
          action: "plugin.download",
          subject: pluginKey(pluginId, version),
          outcome: r.cancelled ? "failed" : "succeeded",
          reason: r.cancelled ? "cancelled by the agent" : "",
          source,
          details: { sha256: p.sha256, offset, bytes: r.sent },
        });
        call.end();
      })().catch(async (e: unknown) => {
        const code = errorCodeOf(e);
        const status = downloadStatus(code);
        ctx.metrics.downloads.inc({ ...labels, status });
        if (code === ErrorCode.BLOB_CORRUPT)
          log.error(
            { event: EVENT.SERVER_BLOB_CORRUPT, plugin_id: pluginId, version, code },
            "stored blob is corrupt; refusing to serve it",
          );
        await ctx.audit.record({
          actor,
          action: "plugin.download",
          subject: `${pluginId}@${version}`.slice(0, 200),
          outcome: status === "denied" ? "denied" : "failed",
          reason: `${code}: ${errorMessageOf(e)}`,
          source,
        });
        call.emit("error", publicError(e, log, "DownloadPlugin"));
      });
    },

    // Step 5, reported by the agent as it goes.
    reportStep: unary(log, "ReportStep", async (call) => {
      const who = await identify(call, "ReportStep");
      const r = call.request;
      const status = stepStatusToDb(r.status);
      if (status === undefined) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "step status is required");
      await recordStep(db, who.agentId, { ...r, status }, ctx.config.jobs);
      return {};
    }),

    completeJob: unary(log, "CompleteJob", async (call) => {
      const who = await identify(call, "CompleteJob");
      const r = call.request;
      await completeJob(db, who.agentId, r, ctx.config.jobs);
      ctx.metrics.jobs.inc({ event: r.succeeded ? "succeeded" : "failed" });
      log.info(
        {
          event: EVENT.SERVER_JOB_COMPLETED,
          agent_id: who.agentId,
          job_id: r.jobId,
          succeeded: r.succeeded,
          code: r.errorCode || undefined,
        },
        "job completed",
      );
      await ctx.audit.record({
        actor: `agent:${who.agentId}`,
        action: "job.complete",
        subject: r.jobId,
        outcome: r.succeeded ? "succeeded" : "failed",
        reason: r.errorCode,
        source: peerOf(call),
      });
      return {};
    }),
  };
}

/** The calling agent, from its credential (throttled and audited on failure), checked against its client certificate under mTLS. */
async function identifyAgent(ctx: ServerContext, call: SurfaceCall, rpc: string): Promise<AgentIdentity> {
  const source = peerOf(call);
  const who = await throttledAuth(ctx, call, "auth.agent", rpc, () => authenticateAgent(ctx.db, call.metadata));
  const certId = ctx.peerAgentId(call);
  if (certId !== undefined && certId !== who.agentId) {
    await ctx.audit.record({
      actor: `agent:${who.agentId}`,
      action: "auth.agent",
      subject: rpc,
      outcome: "denied",
      reason: `client certificate names agent ${certId}`,
      source,
    });
    throw new ArcadeError(
      ErrorCode.PERMISSION_DENIED,
      `the client certificate names agent ${certId} but the credential belongs to ${who.agentId}`,
    );
  }
  return who;
}

async function requireSameAgent(ctx: ServerContext, who: { agentId: string }, named: string, rpc: string, source: string): Promise<void> {
  if (named === who.agentId) return;
  await ctx.audit.record({
    actor: `agent:${who.agentId}`,
    action: "auth.agent",
    subject: rpc,
    outcome: "denied",
    reason: `request names agent ${named}`,
    source,
  });
  throw new ArcadeError(ErrorCode.PERMISSION_DENIED, `the request names agent ${named} but the credential belongs to ${who.agentId}`);
}

function downloadStatus(code: ErrorCode): string {
  if (code === ErrorCode.PERMISSION_DENIED || code === ErrorCode.UNAUTHENTICATED || code === ErrorCode.ACL_DENIED) return "denied";
  if (code === ErrorCode.BLOB_CORRUPT) return "corrupt";
  if (code === ErrorCode.PLUGIN_NOT_FOUND) return "not_found";
  return "failed";
}
