// Agent configuration: agent.yaml (the seed's keys: id, server, plugins.directory,
// download_timeout, cache_size, builtin) plus a few limits, overridable by ARCADE_AGENT_<KEY>
// variables (e.g. ARCADE_AGENT_PLUGINS_CACHE_SIZE). Unknown keys and bad values are refused
// with the name of the key.
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { applyEnvOverrides, hostPort, isLoopback, leafKeys, parseWith, readConfigDocument, splitHostPort } from "../signing/validation.js";

const MIB = 1024 * 1024;
const pluginRef = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]*\/[a-z0-9][a-z0-9._-]*@[0-9A-Za-z.+-]+$/, "expected id@version, e.g. notify/slack@1.2.0");

const Schema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "1-64 letters, digits, '.', '_' or '-'"),
  server: hostPort,
  // Plaintext gRPC to a non-loopback server (without tls.ca); refused unless set.
  insecure: z.boolean().default(false),
  tls: z
    .strictObject({
      // CA that signed the server's certificate; setting it turns TLS on.
      ca: z.string().min(1).optional(),
      // This agent's client certificate and key, for servers that require mTLS.
      cert: z.string().min(1).optional(),
      key: z.string().min(1).optional(),
    })
    .prefault({}),
  plugins: z
    .strictObject({
      directory: z.string().min(1).default("./arcade-agent/plugins"),
      // seconds, per plugin download
      download_timeout: z.number().int().min(1).max(86_400).default(300),
      // MB; least recently used downloads are evicted past it (never built-ins or plugins in use)
      cache_size: z.number().int().min(1).max(1_048_576).default(2048),
      // Pre-installed plugins: builtin/<id>@<version>.tgz, verified and cached at start.
      builtin: z.array(pluginRef).default([]),
      max_parallel_downloads: z.number().int().min(1).max(32).default(4),
      // seconds between full re-verifications of the cache (files and signatures); 0 turns it off;
      // at most 24 days (a longer timer overflows Node's setInterval)
      verify_interval: z
        .number()
        .int()
        .min(0)
        .max(24 * 86_400)
        .default(3600),
      // seconds a newly installed plugin gets to pass its self-test
      self_test_timeout: z.number().int().min(1).max(600).default(30),
      // attempts per download (resuming each time) before the job fails
      download_attempts: z.number().int().min(1).max(20).default(5),
      // MB; the agent's own cap on one plugin, whatever a server announces
      max_plugin_size: z.number().int().min(1).max(2047).default(1024),
    })
    .prefault({}),
  // The agent's own trust root: a plugin is installed only if one of these keys signed its release.
  trust: z
    .strictObject({
      keyring: z.string().min(1).optional(),
      sigstore_keys: z.array(z.strictObject({ hint: z.string().min(1).max(256), key: z.string().min(1) })).default([]),
    })
    .prefault({}),
  // Where the long-lived credential is kept (0600); written at enrollment.
  credential_file: z.string().min(1).default("./arcade-agent/credential"),
  // The one-time token from `arcade agent create`, for the first start only (prefer the file
  // or ARCADE_AGENT_ENROLLMENT_TOKEN over writing the token into this file).
  enrollment_token: z.string().min(16).optional(),
  enrollment_token_file: z.string().min(1).optional(),
  sandbox: z
    .strictObject({
      // Plugins whose manifest asks for the network get it only if this policy allows it.
      allow_network: z.boolean().default(false),
      // Fail closed: refuse to run plugins where no namespace layer (bubblewrap/unshare) can cut the network.
      require_network_isolation: z.boolean().default(false),
    })
    .prefault({}),
  work_dir: z.string().min(1).default("./arcade-agent/work"),
  // seconds between FetchJob calls when idle (the server may ask for more)
  poll_interval: z.number().int().min(1).max(300).default(2),
  // host:port for /metrics and /healthz; "" turns it off
  metrics_listen: z.union([hostPort, z.literal("")]).default("127.0.0.1:9465"),
  // bytes of command output kept per job
  max_output_bytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * MIB)
    .default(MIB),
  // bytes of a plugin's ctx.log() lines reported per step (the server keeps at most its own jobs.max_step_log_bytes)
  max_step_log_bytes: z
    .number()
    .int()
    .min(1024)
    .max(16 * MIB)
    .default(64 * 1024),
});

export type AgentConfig = {
  id: string;
  server: string;
  insecure: boolean;
  tls?: { ca: string; cert?: string; key?: string };
  pluginsDir: string;
  downloadTimeoutMs: number;
  cacheSizeBytes: number;
  builtin: string[];
  maxParallelDownloads: number;
  maxPluginBytes: number;
  verifyIntervalMs: number;
  selfTestTimeoutMs: number;
  downloadAttempts: number;
  trust: { keyring?: string; sigstoreKeys: { hint: string; key: string }[] };
  workDir: string;
  sandbox: { allowNetwork: boolean; requireNetworkIsolation: boolean };
  credentialFile: string;
  enrollmentToken?: string;
  enrollmentTokenFile?: string;
  pollIntervalMs: number;
  metricsListen: string;
  maxOutputBytes: number;
  maxStepLogBytes: number;
  overrides: string[];
};

const ENV_KEYS = leafKeys(Schema.shape);

export function loadAgentConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const source = file ? path.basename(file) : "agent config";
  const doc = file ? readConfigDocument(file, "YAML", (t) => parseYaml(t, { uniqueKeys: true })) : {};
  const { applied } = applyEnvOverrides(doc, "ARCADE_AGENT", ENV_KEYS, env);
  const c = parseWith(Schema, doc, source, ErrorCode.CONFIG_INVALID);
  if (!c.tls.ca && !isLoopback(splitHostPort(c.server).host) && !c.insecure) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${source}: server: refusing plaintext gRPC to ${c.server}; use a loopback address or set insecure: true if the network is protected otherwise`,
    );
  }
  if ((c.tls.cert || c.tls.key) && !c.tls.ca) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${source}: tls.ca: required with tls.cert/tls.key (a client certificate never goes over plaintext)`,
    );
  }
  if (!c.trust.keyring && c.trust.sigstore_keys.length === 0) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `${source}: trust.keyring: required: the agent installs only plugins signed by keys it trusts (or configure trust.sigstore_keys)`,
    );
  }
  const base = file ? path.dirname(path.resolve(file)) : process.cwd();
  return {
    id: c.id,
    server: c.server,
    insecure: c.insecure,
    tls: c.tls.ca
      ? {
          ca: path.resolve(base, c.tls.ca),
          cert: c.tls.cert ? path.resolve(base, c.tls.cert) : undefined,
          key: c.tls.key ? path.resolve(base, c.tls.key) : undefined,
        }
      : undefined,
    pluginsDir: path.resolve(base, c.plugins.directory),
    downloadTimeoutMs: c.plugins.download_timeout * 1000,
    cacheSizeBytes: c.plugins.cache_size * MIB,
    builtin: c.plugins.builtin,
    maxParallelDownloads: c.plugins.max_parallel_downloads,
    maxPluginBytes: c.plugins.max_plugin_size * MIB,
    verifyIntervalMs: c.plugins.verify_interval * 1000,
    selfTestTimeoutMs: c.plugins.self_test_timeout * 1000,
    downloadAttempts: c.plugins.download_attempts,
    trust: {
      keyring: c.trust.keyring ? path.resolve(base, c.trust.keyring) : undefined,
      sigstoreKeys: c.trust.sigstore_keys.map((k) => ({ hint: k.hint, key: path.resolve(base, k.key) })),
    },
    workDir: path.resolve(base, c.work_dir),
    sandbox: { allowNetwork: c.sandbox.allow_network, requireNetworkIsolation: c.sandbox.require_network_isolation },
    credentialFile: path.resolve(base, c.credential_file),
    enrollmentToken: c.enrollment_token,
    enrollmentTokenFile: c.enrollment_token_file ? path.resolve(base, c.enrollment_token_file) : undefined,
    pollIntervalMs: c.poll_interval * 1000,
    metricsListen: c.metrics_listen,
    maxOutputBytes: c.max_output_bytes,
    maxStepLogBytes: c.max_step_log_bytes,
    overrides: applied,
  };
}
