// AdminService: publishing and jobs, for people and automation holding the admin token.
import type { ServerReadableStream } from "@grpc/grpc-js";
import type { AdminServiceServer, PublishPluginRequest, PublishPluginResponse } from "../../proto/gen/arcade/v1/admin.js";
import { ArcadeError, ErrorCode, errorCodeOf } from "../../signing/errors.js";
import { checkAdmin } from "../auth.js";
import type { ServerContext } from "../context.js";
import { getJob, submitJob } from "../jobs.js";
import { describeSigner, type VerifiedRelease } from "../../signing/release.js";
import {
  checkInnerManifest,
  checkPublishHeader,
  checkUploadedBytes,
  recordVersion,
  verifyPublishRelease,
  type PublishHeader,
} from "../plugins.js";
import { peerOf, publicError, unary } from "./handler.js";

export function adminService(ctx: ServerContext): AdminServiceServer {
  const { db, log } = ctx;
  const admin = (md: Parameters<typeof checkAdmin>[0]) => checkAdmin(md, ctx.adminToken);
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

    listPlugins: unary(log, "ListPlugins", async (call) => {
      admin(call.metadata);
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

    submitJob: unary(log, "SubmitJob", async (call) => {
      admin(call.metadata);
      const jobId = await submitJob(db, call.request, ctx.config.jobs);
      ctx.metrics.jobs.inc({ event: "submitted" });
      log.info({ job_id: jobId, plugins: call.request.plugins.length, target: call.request.agentId || undefined }, "job submitted");
      return { jobId };
    }),

    getJob: unary(log, "GetJob", async (call) => {
      admin(call.metadata);
      return { job: await getJob(db, call.request.jobId) };
    }),
  };
}

async function publish(
  ctx: ServerContext,
  call: ServerReadableStream<PublishPluginRequest, PublishPluginResponse>,
): Promise<PublishPluginResponse> {
  checkAdmin(call.metadata, ctx.adminToken);
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
      { plugin_id: ref.pluginId, version: ref.version, sha256, size: ref.size, created, signers, peer: peerOf(call) },
      "plugin published",
    );
    return { plugin: ref, created };
  } finally {
    await writer.abort(); // no-op after commit; removes the temp file on every failure
  }
}
