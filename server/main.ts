// Server start-up: configuration → database (migrated) → blob store → gRPC services.
import fs from "node:fs";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { AdminServiceService } from "../proto/gen/arcade/v1/admin.js";
import { AgentServiceService } from "../proto/gen/arcade/v1/agent.js";
import { loadTrustStore } from "../keys/truststore.js";
import { agentIdFromCertificate } from "../keys/certs.js";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";
import type { TrustStore } from "../signing/release.js";
import { isLoopback, splitHostPort } from "../signing/validation.js";
import { bindError } from "../signing/address.js";
import { AclStore } from "./acl-store.js";
import { AuditLog } from "./audit.js";
import { ensureBootstrapAdmin } from "./auth.js";
import { AuthThrottle } from "./ratelimit.js";
import { LocalBlobStore } from "./blobstore.js";
import type { ServerConfig } from "./config.js";
import type { ServerContext } from "./context.js";
import { openDatabase } from "./db/client.js";
import { adminService } from "./grpc/admin-service.js";
import { expirePendingJobs, reapStuckJobs } from "./jobs.js";
import { agentService } from "./grpc/agent-service.js";
import { ServerMetrics } from "./metrics.js";
import { EVENT } from "../signing/events.js";

export type RunningServer = {
  /** host:port actually bound (port 0 in the config picks a free one). */
  address: string;
  adminTokenFile: string;
  metrics: ServerMetrics;
  healthy(): Promise<boolean>;
  stop(): Promise<void>;
};

export async function startServer(config: ServerConfig, log: Logger): Promise<RunningServer> {
  const { host, port } = splitHostPort(config.listen);
  checkTransport(config, host, log);
  if (config.mode === "development")
    log.warn({ event: EVENT.SERVER_DEVELOPMENT_MODE }, "development mode: integrity settings may be relaxed; never use it in production");

  // Keys first: a server that cannot verify publishes must not start at all.
  const trust: TrustStore =
    config.trust.keyring || config.trust.sigstoreKeys.length ? await loadTrustStore(config.trust) : { openpgp: [], sigstore: [] };
  if (config.trust.allowUnsigned)
    log.warn({ event: EVENT.SERVER_UNSIGNED_ALLOWED }, "trust.allow_unsigned: UNSIGNED PLUGINS ARE ACCEPTED (development only)");
  // The data dir holds the database (job commands, configs, output) and the admin token: owner only.
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const {
    db,
    provider,
    close: closeDb,
  } = await openDatabase(config.databaseUrl, { log: (m) => log.info({ event: EVENT.SERVER_MIGRATION, component: "migrate" }, m) });
  const store = new LocalBlobStore(config.storagePath);
  await store.init();
  const adminTokenFile = await ensureBootstrapAdmin(db, config.dataDir);
  const metrics = new ServerMetrics();
  const ctx: ServerContext = {
    db,
    store,
    config,
    metrics,
    log,
    trust,
    acl: new AclStore(db),
    audit: new AuditLog(db, log),
    throttle: new AuthThrottle(),
    // Under mTLS grpc-js exposes the verified client certificate; without it there is none.
    peerAgentId: (call) => (config.tls?.clientCa ? (agentIdFromCertificate(call.getAuthContext()?.sslPeerCertificate) ?? "") : undefined),
  };

  const server = new Server({
    // Uploads come in 256 KiB chunks; leave headroom but keep the 4 MiB default ceiling.
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
  });
  server.addService(AgentServiceService, agentService(ctx));
  server.addService(AdminServiceService, adminService(ctx));
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, serverCredentials(config), (err, p) =>
      err ? reject(bindError(err, "server.listen", "ARCADE_SERVER_LISTEN", config.listen)) : resolve(p),
    ),
  );
  const address = `${host.includes(":") ? `[${host}]` : host}:${bound}`;
  log.info(
    { event: EVENT.SERVER_LISTENING, listen: address, database: provider, storage: config.storagePath, overrides: config.overrides },
    "server listening",
  );

  const reaper = setInterval(() => {
    reapStuckJobs(db, config.jobs.reportGraceSeconds).then(
      (ids) => {
        for (const id of ids) {
          metrics.jobs.inc({ event: "failed" });
          log.warn({ event: EVENT.SERVER_JOB_TIMED_OUT, job_id: id, code: "JOB_TIMEOUT" }, "job failed: its agent stopped reporting");
        }
      },
      (err: unknown) => log.error({ event: EVENT.SERVER_JOB_SWEEP_FAILED, err }, "stuck-job sweep failed"),
    );
    expirePendingJobs(db, config.jobs.pendingTimeoutSeconds).then(
      async (ids) => {
        for (const id of ids) {
          metrics.jobs.inc({ event: "failed" });
          log.warn(
            { event: EVENT.SERVER_JOB_EXPIRED, job_id: id, code: ErrorCode.JOB_PENDING_TIMEOUT },
            "job failed: no agent took it in time",
          );
          await ctx.audit.record({
            actor: "server",
            action: "job.expire",
            subject: id,
            outcome: "failed",
            reason: ErrorCode.JOB_PENDING_TIMEOUT,
          });
        }
      },
      (err: unknown) => log.error({ event: EVENT.SERVER_JOB_SWEEP_FAILED, err }, "pending-job sweep failed"),
    );
  }, config.jobs.reapIntervalSeconds * 1000);
  reaper.unref();

  const healthy = async () => {
    await db.$queryRawUnsafe("SELECT 1");
    return true;
  };
  return {
    address,
    adminTokenFile,
    metrics,
    healthy,
    stop: async () => {
      clearInterval(reaper);
      await new Promise<void>((resolve) => {
        // tryShutdown can hang while clients linger (grpc note §3.8): force after a grace period.
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 3000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await closeDb();
    },
  };
}

/** TLS by default: plaintext only when told --insecure, and never silently. */
function checkTransport(config: ServerConfig, host: string, log: Logger): void {
  if (config.tls) return;
  if (config.mode === "production" && !config.insecure) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      "production mode requires TLS: set [tls] cert and key (`arcade certs init` makes a first set), or pass --insecure to serve plaintext",
    );
  }
  if (!isLoopback(host) && !config.insecure) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `refusing plaintext gRPC on ${config.listen}: configure [tls], or pass --insecure if the network is protected otherwise`,
    );
  }
  log.warn(
    { event: EVENT.SERVER_INSECURE, listen: config.listen },
    "INSECURE: serving plaintext gRPC (no [tls] configured); credentials and tokens cross the network unencrypted",
  );
}

function serverCredentials(config: ServerConfig): ServerCredentials {
  if (!config.tls) return ServerCredentials.createInsecure();
  const read = (f: string) => {
    try {
      return fs.readFileSync(f);
    } catch (e) {
      throw new ArcadeError(ErrorCode.CONFIG_INVALID, `tls: cannot read ${f}: ${errorMessageOf(e)}`);
    }
  };
  const clientCa = config.tls.clientCa ? read(config.tls.clientCa) : null;
  return ServerCredentials.createSsl(
    clientCa,
    [{ cert_chain: read(config.tls.cert), private_key: read(config.tls.key) }],
    clientCa !== null,
  );
}
