// Server configuration: config.toml (the seed's [plugin] keys plus listen, database and
// metrics settings), overridable by ARCADE_<SECTION>_<KEY> variables. Unknown keys and bad
// values are refused with the name of the key; every limit has a safe default.
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { z } from "zod";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { applyEnvOverrides, hostPort, isLoopback, leafKeys, parseWith, readConfigDocument, splitHostPort } from "../signing/validation.js";

const MIB = 1024 * 1024;

const Schema = z.strictObject({
  server: z
    .strictObject({
      listen: hostPort.default("127.0.0.1:50051"),
      data_dir: z.string().min(1).default("./arcade-data"),
      // production refuses settings that weaken integrity (e.g. require_checksum = false)
      mode: z.enum(["production", "development"]).default("production"),
      // Serve plaintext gRPC without [tls] (always refused otherwise in production mode, and on
      // non-loopback addresses in development mode).
      insecure: z.boolean().default(false),
      // seconds an enrollment token from `arcade agent create` stays valid
      enrollment_ttl: z
        .number()
        .int()
        .min(60)
        .max(30 * 86400)
        .default(86400),
      poll_interval: z.number().int().min(1).max(300).default(2),
    })
    .prefault({}),
  database: z
    .strictObject({
      // Default: an embedded SQLite file under data_dir.
      url: z.string().min(1).optional(),
    })
    .prefault({}),
  plugin: z
    .strictObject({
      storage_path: z.string().min(1).optional(),
      // MB, as in the seed. Capped below 2 GiB because sizes are stored as 32-bit integers.
      max_plugin_size: z.number().int().min(1).max(2047).default(512),
      require_checksum: z.boolean().default(true),
      // Download chunk size in bytes; under grpc-js's 4 MiB receive limit with framing room.
      chunk_size: z
        .number()
        .int()
        .min(16 * 1024)
        .max(4 * MIB - 64)
        .default(256 * 1024),
    })
    .prefault({}),
  tls: z
    .strictObject({
      // PEM certificate chain and key for the gRPC listener (`arcade certs init` makes a first set).
      cert: z.string().min(1).optional(),
      key: z.string().min(1).optional(),
      // PEM CA bundle: when set, clients must present a certificate it signed (mTLS), and an
      // agent's certificate must name the agent its credential belongs to.
      client_ca: z.string().min(1).optional(),
    })
    .prefault({}),
  trust: z
    .strictObject({
      // Armored OpenPGP public keys of the publishers whose releases this server accepts.
      keyring: z.string().min(1).optional(),
      // Keyed Sigstore public keys (PEM), each with the hint bundles name it by.
      sigstore_keys: z.array(z.strictObject({ hint: z.string().min(1).max(256), key: z.string().min(1) })).default([]),
      // Development only, on loopback only: accept plugins without a signed statement.
      allow_unsigned: z.boolean().default(false),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      // host:port for /metrics and /healthz; "" turns the endpoint off.
      listen: z.union([hostPort, z.literal("")]).default("127.0.0.1:9464"),
    })
    .prefault({}),
  jobs: z
    .strictObject({
      default_timeout: z
        .number()
        .int()
        .min(1)
        .max(7 * 86400)
        .default(3600),
      max_commands: z.number().int().min(1).max(1000).default(100),
      // seconds between sweeps for jobs whose agent went silent, and the slack given past a job's timeout
      reap_interval: z.number().int().min(1).max(3600).default(30),
      report_grace: z.number().int().min(0).max(86_400).default(60),
      max_plugins: z.number().int().min(1).max(100).default(32),
      max_output_bytes: z
        .number()
        .int()
        .min(1024)
        .max(64 * MIB)
        .default(MIB),
      // bytes of a plugin's ctx.log() lines kept per step in the job report
      max_step_log_bytes: z
        .number()
        .int()
        .min(1024)
        .max(16 * MIB)
        .default(64 * 1024),
      // seconds a job may wait for an agent before it fails with JOB_PENDING_TIMEOUT
      pending_timeout: z
        .number()
        .int()
        .min(1)
        .max(7 * 86400)
        .default(3600),
    })
    .prefault({}),
});

export type ServerConfig = {
  listen: string;
  dataDir: string;
  mode: "production" | "development";
  insecure: boolean;
  enrollmentTtlSeconds: number;
  pollIntervalSeconds: number;
  databaseUrl: string;
  storagePath: string;
  maxPluginBytes: number;
  requireChecksum: boolean;
  chunkSize: number;
  metricsListen: string;
  tls?: { cert: string; key: string; clientCa?: string };
  trust: { keyring?: string; sigstoreKeys: { hint: string; key: string }[]; allowUnsigned: boolean };
  jobs: {
    defaultTimeoutSeconds: number;
    maxCommands: number;
    maxPlugins: number;
    maxOutputBytes: number;
    reapIntervalSeconds: number;
    reportGraceSeconds: number;
    maxStepLogBytes: number;
    pendingTimeoutSeconds: number;
  };
  /** Environment variables that overrode the file, for the start-up log. */
  overrides: string[];
};

const ENV_KEYS = leafKeys(Schema.shape);

export function loadServerConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const source = file ?? "server config";
  const doc = file ? readConfigDocument(file, "TOML", parseToml) : {};
  const { applied } = applyEnvOverrides(doc, "ARCADE", ENV_KEYS, env);
  const c = parseWith(Schema, doc, path.basename(source), ErrorCode.CONFIG_INVALID);

  if (c.server.mode === "production" && !c.plugin.require_checksum) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${path.basename(source)}: plugin.require_checksum: cannot be false in production mode; set server.mode = "development" for local experiments`,
    );
  }
  if (c.trust.allow_unsigned && (c.server.mode !== "development" || !isLoopback(splitHostPort(c.server.listen).host))) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${path.basename(source)}: trust.allow_unsigned: only allowed with server.mode = "development" on a loopback listen address`,
    );
  }
  if (!c.trust.allow_unsigned && !c.trust.keyring && c.trust.sigstore_keys.length === 0) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${path.basename(source)}: trust.keyring: required: every publish is verified against the publishers' public keys (or configure trust.sigstore_keys)`,
    );
  }
  if (Boolean(c.tls.cert) !== Boolean(c.tls.key)) {
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, `${path.basename(source)}: tls: set both cert and key, or neither`);
  }
  if (c.tls.client_ca && !c.tls.cert) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${path.basename(source)}: tls.client_ca: client certificates need TLS: set tls.cert and tls.key too`,
    );
  }
  // Relative paths are relative to the config file, so a config works from any working dir.
  const base = file ? path.dirname(path.resolve(file)) : process.cwd();
  const dataDir = path.resolve(base, c.server.data_dir);
  const sqliteDefault = `file:${path.join(dataDir, "arcade.db")}`;
  const url = c.database.url ?? sqliteDefault;
  return {
    listen: c.server.listen,
    dataDir,
    mode: c.server.mode,
    insecure: c.server.insecure,
    enrollmentTtlSeconds: c.server.enrollment_ttl,
    pollIntervalSeconds: c.server.poll_interval,
    databaseUrl: url.startsWith("file:") ? `file:${path.resolve(base, url.slice(5))}` : url,
    storagePath: path.resolve(base, c.plugin.storage_path ?? path.join(dataDir, "plugins")),
    maxPluginBytes: c.plugin.max_plugin_size * MIB,
    requireChecksum: c.plugin.require_checksum,
    chunkSize: c.plugin.chunk_size,
    tls: c.tls.cert
      ? {
          cert: path.resolve(base, c.tls.cert),
          key: path.resolve(base, c.tls.key!),
          clientCa: c.tls.client_ca ? path.resolve(base, c.tls.client_ca) : undefined,
        }
      : undefined,
    trust: {
      keyring: c.trust.keyring ? path.resolve(base, c.trust.keyring) : undefined,
      sigstoreKeys: c.trust.sigstore_keys.map((k) => ({ hint: k.hint, key: path.resolve(base, k.key) })),
      allowUnsigned: c.trust.allow_unsigned,
    },
    metricsListen: c.metrics.listen,
    jobs: {
      defaultTimeoutSeconds: c.jobs.default_timeout,
      maxCommands: c.jobs.max_commands,
      reapIntervalSeconds: c.jobs.reap_interval,
      reportGraceSeconds: c.jobs.report_grace,
      maxPlugins: c.jobs.max_plugins,
      maxOutputBytes: c.jobs.max_output_bytes,
      maxStepLogBytes: c.jobs.max_step_log_bytes,
      pendingTimeoutSeconds: c.jobs.pending_timeout,
    },
    overrides: applied,
  };
}
