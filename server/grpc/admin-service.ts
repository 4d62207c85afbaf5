// AdminService: publishing, jobs, agents, ACLs, tokens and the audit trail, for people and
// automation holding an admin token with a role.
import type { ServerReadableStream, ServerUnaryCall } from "@grpc/grpc-js";
import type { AdminServiceServer, PublishPluginRequest, PublishPluginResponse } from "../../proto/gen/arcade/v1/admin.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../../signing/errors.js";
import { isAllowed, parseLabels } from "../acl.js";
import { checkJobDispatchable } from "../acl-store.js";
import { authenticateAdmin, authorize, createAdminToken, createEnrollmentToken, type AdminIdentity, type Permission } from "../auth.js";
import type { ServerContext, SurfaceCall } from "../context.js";
import { getJob, submitJob } from "../jobs.js";
import { findPublished } from "../plugins.js";
import { describeSigner, type VerifiedRelease } from "../../signing/release.js";
import {
  checkInnerManifest,
  checkPublishHeader,
  checkUploadedBytes,
  recordVersion,
  verifyPublishRelease,
  type PublishHeader,
} from "../plugins.js";
import { peerOf, publicError, throttledAuth, unary } from "./handler.js";
import { EVENT } from "../../signing/events.js";
import type { AdminRpc, AuditAction } from "../../signing/vocabulary.js";

/**
 * Every admin RPC: authenticate the token (throttled), check the role holds the permission,
 * then run. Refusals are audited with the missing permission; changes of who may do what are
 * audited with their outcome.
 */
function adminRpc<Req, Res>(
  ctx: ServerContext,
  rpc: AdminRpc,
  permission: Permission,
  fn: (call: ServerUnaryCall<Req, Res>, who: AdminIdentity) => Promise<Res>,
) {
  return unary<Req, Res>(ctx.log, rpc, async (call) => fn(call, await authorizeCall(ctx, call, rpc, permission)));
}

async function authorizeCall(ctx: ServerContext, call: SurfaceCall, rpc: AdminRpc, permission: Permission): Promise<AdminIdentity> {
  const source = peerOf(call);
  const who = await throttledAuth(ctx, call, "auth.admin", rpc, () => authenticateAdmin(ctx.db, call.metadata));
  try {
    authorize(who, permission);
  } catch (e) {
    await ctx.audit.record({
      actor: `admin:${who.name}`,
      action: `rpc.${rpc}`,
      outcome: "denied",
      reason: errorMessageOf(e),
      source,
      details: { role: who.role, permission },
    });
    throw e;
  }
  return who;
}

export function adminService(ctx: ServerContext): AdminServiceServer {
  const { db, log } = ctx;
  const changed = (who: AdminIdentity, call: SurfaceCall, action: AuditAction, subject: string, details: Record<string, unknown> = {}) =>
    ctx.audit.record({
      actor: `admin:${who.name}`,
      action,
      subject,
      outcome: "succeeded",
      source: peerOf(call),
      details: { role: who.role, ...details },
    });
  return {
    publishPlugin: (call, cb) => {
      publish(ctx, call).then(
        (res) => cb(null, res),
        (e: unknown) => {
          ctx.metrics.publishes.inc({ status: errorCodeOf(e) });
          cb(publicError(e, log, "PublishPlugin"));
        },
      );
    },

    listPlugins: adminRpc(ctx, "ListPlugins", "plugin.read", async (call) => {
      const rows = await db.plugin.findMany({
        where: { yankedAt: null, ...(call.request.pluginId ? { pluginId: call.request.pluginId } : {}) },
        orderBy: [{ pluginId: "asc" }, { publishedAt: "asc" }],
        take: 1000,
      });
      return {
        plugins: rows.map((p) => ({
          plugin: { pluginId: p.pluginId, version: p.version, sha256: p.sha256, size: p.size },
          publishedAtMs: p.publishedAt.getTime(),
          signers: JSON.parse(p.signers) as string[],
        })),
      };
    }),

    submitJob: adminRpc(ctx, "SubmitJob", "job.submit", async (call, who) => {
      const r = call.request;
      for (const p of r.plugins) await findPublished(db, p.pluginId, p.version); // PLUGIN_NOT_FOUND before any ACL verdict
      try {
        await checkJobDispatchable(
          ctx.acl,
          r.agentId,
          r.plugins.map((p) => ({ id: p.pluginId, version: p.version })),
        );
      } catch (e) {
        await ctx.audit.record({
          actor: `admin:${who.name}`,
          action: "job.submit",
          subject: r.agentId,
          outcome: "denied",
          reason: errorMessageOf(e),
          source: peerOf(call),
        });
        throw e;
      }
      const jobId = await submitJob(db, r, ctx.config.jobs);
      ctx.metrics.jobs.inc({ event: "submitted" });
      log.info(
        { event: EVENT.SERVER_JOB_SUBMITTED, job_id: jobId, plugins: r.plugins.length, target: r.agentId || undefined, by: who.name },
        "job submitted",
      );
      await changed(who, call, "job.submit", jobId, { target: r.agentId, plugins: r.plugins.map((p) => `${p.pluginId}@${p.version}`) });
      return { jobId };
    }),

    getJob: adminRpc(ctx, "GetJob", "job.read", async (call) => ({ job: await getJob(db, call.request.jobId) })),

    createAgent: adminRpc(ctx, "CreateAgent", "agent.manage", async (call, who) => {
      const r = call.request;
      const { agentId, token, expiresAt } = await createAgent(ctx, r.agentId, r.labels, r.tokenTtlSeconds, who.name);
      await changed(who, call, "agent.create", agentId, { labels: r.labels, tokenExpires: expiresAt.toISOString() });
      return { agentId, enrollmentToken: token, expiresAtMs: expiresAt.getTime() };
    }),

    revokeAgent: adminRpc(ctx, "RevokeAgent", "agent.manage", async (call, who) => {
      const id = call.request.agentId;
      const r = await db.agent.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: new Date() } });
      if (r.count === 0) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `no active agent ${id}`);
      await db.agentCredential.updateMany({ where: { agentId: id, revokedAt: null }, data: { revokedAt: new Date() } });
      await changed(who, call, "agent.revoke", id);
      return {};
    }),

    listAgents: adminRpc(ctx, "ListAgents", "agent.read", async () => {
      const ms = (d: Date | null) => (d ? d.getTime() : 0);
      const rows = await db.agent.findMany({ orderBy: { id: "asc" }, take: 10_000 });
      return {
        agents: rows.map((a) => ({
          agentId: a.id,
          labels: JSON.parse(a.labels) as Record<string, string>,
          hostname: a.hostname,
          createdAtMs: ms(a.createdAt),
          enrolledAtMs: ms(a.enrolledAt),
          revokedAtMs: ms(a.revokedAt),
          lastSeenAtMs: ms(a.lastSeenAt),
        })),
      };
    }),

    grantAcl: adminRpc(ctx, "GrantAcl", "acl.manage", async (call, who) => {
      const r = call.request;
      const g = await ctx.acl.grant({
        subject: r.subject,
        pluginPattern: r.pluginPattern,
        versionRange: r.versionRange || undefined,
        createdBy: who.name,
      });
      await changed(who, call, "acl.grant", g.id, { subject: g.subject, pluginPattern: r.pluginPattern, versionRange: r.versionRange });
      return { grantId: g.id };
    }),

    revokeAcl: adminRpc(ctx, "RevokeAcl", "acl.manage", async (call, who) => {
      await ctx.acl.revoke(call.request.grantId);
      await changed(who, call, "acl.revoke", call.request.grantId);
      return {};
    }),

    listAcl: adminRpc(ctx, "ListAcl", "acl.read", async () => {
      const rows = await db.aclGrant.findMany({ orderBy: { createdAt: "asc" } });
      return {
        grants: rows.map((g) => ({
          grantId: g.id,
          subject: g.subject,
          pluginPattern: g.pluginPattern,
          versionRange: g.versionRange ?? "",
          createdAtMs: g.createdAt.getTime(),
          createdBy: g.createdBy,
        })),
      };
    }),

    checkAcl: adminRpc(ctx, "CheckAcl", "acl.read", async (call) => {
      const r = call.request;
      const agent = await db.agent.findUnique({ where: { id: r.agentId } });
      if (!agent) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `no agent ${r.agentId}`);
      if (agent.revokedAt) return { allowed: false, reason: `agent ${r.agentId} is revoked` };
      const d = isAllowed(
        await ctx.acl.grants(),
        { agentId: agent.id, labels: JSON.parse(agent.labels) as Record<string, string> },
        { id: r.pluginId, version: r.version },
      );
      return { allowed: d.allowed, reason: d.reason };
    }),

    createAdminToken: adminRpc(ctx, "CreateAdminToken", "token.manage", async (call, who) => {
      const token = await createAdminToken(db, call.request.name, call.request.role, who.name);
      await changed(who, call, "token.create", call.request.name, { grantedRole: call.request.role });
      return { token };
    }),

    queryAudit: adminRpc(ctx, "QueryAudit", "audit.read", async (call) => {
      const r = call.request;
      const rows = await db.auditEvent.findMany({
        where: {
          ...(r.action ? { action: r.action } : {}),
          ...(r.actor ? { actor: r.actor } : {}),
          ...(r.outcome ? { outcome: r.outcome } : {}),
          ...(r.sinceMs ? { time: { gte: new Date(r.sinceMs) } } : {}),
        },
        orderBy: { seq: "desc" },
        take: Math.min(r.limit || 100, 10_000),
      });
      return {
        events: rows.reverse().map((e) => ({
          seq: e.seq,
          timeMs: e.time.getTime(),
          actor: e.actor,
          action: e.action,
          subject: e.subject,
          outcome: e.outcome,
          reason: e.reason,
          source: e.source,
          detailsJson: e.details,
        })),
      };
    }),
  };
}

async function createAgent(ctx: ServerContext, agentId: string, labels: Record<string, string>, ttlSeconds: number, by: string) {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(agentId))
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "agent id must be 1-64 letters, digits, '.', '_' or '-'");
  const pairs = Object.entries(labels);
  const normalized =
    pairs.length === 0
      ? {}
      : parseLabels(
          Object.entries(labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(","),
        );
  const ttl = ttlSeconds || ctx.config.enrollmentTtlSeconds;
  if (ttl > 30 * 86_400) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "an enrollment token may live at most 30 days");
  const existing = await ctx.db.agent.findUnique({ where: { id: agentId } });
  if (existing?.revokedAt) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `agent ${agentId} was revoked; create it under a new id`);
  if (existing?.enrolledAt)
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `agent ${agentId} is already enrolled; revoke it first to re-enroll under a new id`);
  await ctx.db.agent.upsert({
    where: { id: agentId },
    create: { id: agentId, labels: JSON.stringify(normalized), createdBy: by },
    update: { labels: JSON.stringify(normalized) },
  });
  // One live enrollment token per agent: a new one cancels any earlier unused one.
  await ctx.db.enrollmentToken.deleteMany({ where: { agentId, usedAt: null } });
  const { token, expiresAt } = await createEnrollmentToken(ctx.db, agentId, ttl);
  return { agentId, token, expiresAt };
}

async function publish(
  ctx: ServerContext,
  call: ServerReadableStream<PublishPluginRequest, PublishPluginResponse>,
): Promise<PublishPluginResponse> {
  const who = await authorizeCall(ctx, call, "PublishPlugin", "plugin.publish");
  const limits = { maxPluginBytes: ctx.config.maxPluginBytes, requireChecksum: ctx.config.requireChecksum };
  let header: PublishHeader | undefined;
  let verified: VerifiedRelease | undefined;
  const writer = await ctx.store.createWriter(limits.maxPluginBytes);
  try {
    // Reading with for-await applies backpressure: the next message waits for the disk.
    for await (const msg of call as AsyncIterable<PublishPluginRequest>) {
      const p = msg.payload;
      if (p?.$case === "header") {
        if (header) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "the header must be sent once, first");
        header = p.value;
        checkPublishHeader(header, limits);
        verified = await verifyPublishRelease(header, ctx.trust, ctx.config.trust.allowUnsigned);
      } else if (p?.$case === "chunk") {
        if (!header) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "the first message must be the header");
        await writer.write(p.value);
      }
    }
    if (!header) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "empty upload: no header");
    const sha256 = checkUploadedBytes(header, writer);
    await checkInnerManifest(header, writer, verified);
    const { ref, created } = await recordVersion(ctx.db, header, writer, sha256, verified);
    ctx.metrics.publishes.inc({ status: created ? "created" : "existing" });
    const signers = verified?.signers.map(describeSigner) ?? ["UNSIGNED (development server)"];
    ctx.log.info(
      {
        event: EVENT.SERVER_PLUGIN_PUBLISHED,
        plugin_id: ref.pluginId,
        version: ref.version,
        sha256,
        size: ref.size,
        created,
        signers,
        peer: peerOf(call),
      },
      "plugin published",
    );
    await ctx.audit.record({
      actor: `admin:${who.name}`,
      action: "plugin.publish",
      subject: `${ref.pluginId}@${ref.version}`,
      outcome: "succeeded",
      source: peerOf(call),
      details: { sha256, size: ref.size, created, signers },
    });
    return { plugin: ref, created };
  } catch (e) {
    await ctx.audit.record({
      actor: `admin:${who.name}`,
      action: "plugin.publish",
      subject: header ? `${header.pluginId}@${header.version}` : "",
      outcome: "failed",
      reason: `${errorCodeOf(e)}: ${errorMessageOf(e)}`,
      source: peerOf(call),
    });
    throw e;
  } finally {
    await writer.abort(); // no-op after commit; removes the temp file on every failure
  }
}
