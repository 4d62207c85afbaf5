// The agent daemon: open the cache, install built-ins, then register (step 1) and poll for
// jobs (step 2), running each through the executor (steps 3-5). A server that is down is
// waited for, not fatal: the agent keeps polling with backoff and re-registers when it returns.
// A failure that retrying can never fix (a TLS set-up the server refuses, a revoked or unknown
// credential, a spent enrollment token) is fatal instead: see `permanentFailure` below.
import os from "node:os";
import fs from "node:fs";
import type { Logger } from "pino";
import { AgentServiceClient, type Job } from "../proto/gen/arcade/v1/agent.js";
import { CLIENT_OPTIONS, bearer, call, channelCredentials, isTransient } from "../proto/rpc.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { loadTrustStore } from "../keys/truststore.js";
import { installBuiltins } from "./builtin.js";
import { readCredential, registerMetadata, writeCredential } from "./credential.js";
import { PluginCache } from "./cache.js";
import type { AgentConfig } from "./config.js";
import { Downloader } from "./downloader.js";
import { executeJob } from "./executor.js";
import { AgentMetrics } from "./metrics.js";
import { Reporter } from "./reporter.js";
import { detectSandbox, formatSandboxReport } from "./sandbox/detect.js";
import { sandboxSelfTest } from "./selftest.js";
import { verifyCache } from "./verify-cache.js";
import { disableInspectorActivation } from "./sandbox/runner.js";
import { EVENT } from "../signing/events.js";

export const AGENT_VERSION = "0.1.0";
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Exit status of `arcade agent start` when retrying can never succeed (sysexits' EX_CONFIG), so a
 * service manager can be told not to restart it (systemd: RestartPreventExitStatus=78).
 */
export const EXIT_CANNOT_SUCCEED = 78;

export type RunningAgent = {
  metrics: AgentMetrics;
  cache: PluginCache;
  /** Resolves after the first successful Register (only then is the agent "ready"). */
  registered: Promise<void>;
  /** Resolves when the agent gave up on a failure retrying cannot fix; its loop has stopped. */
  fatal: Promise<ArcadeError>;
  stop(): Promise<void>;
};

/** How many times in a row an uncertain permanent failure must repeat before the agent gives up. */
const CONFIRMATIONS = 3;

export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  // A plugin must not be able to open our inspector with SIGUSR1 (see the isolation note).
  disableInspectorActivation();
  const metrics = new AgentMetrics();
  const trust = await loadTrustStore(config.trust);
  log.info(
    { event: EVENT.AGENT_TRUST_LOADED, openpgp_keys: trust.openpgp.length, sigstore_keys: trust.sigstore.map((k) => k.hint) },
    "trust store loaded",
  );
  const cache = await PluginCache.open(config.pluginsDir, config.cacheSizeBytes, log);
  // Which isolation layers this machine gives plugins, said once at start (and by `arcade agent doctor`).
  const sandbox = await detectSandbox();
  log.info({ event: EVENT.AGENT_SANDBOX_DETECTED, sandbox: sandbox.layers }, formatSandboxReport(sandbox));
  if (config.sandbox.requireNetworkIsolation && !sandbox.layers.namespaces) {
    throw new ArcadeError(
      ErrorCode.SANDBOX_UNAVAILABLE,
      "sandbox.require_network_isolation is set but no namespace layer works here (install bubblewrap, or allow user namespaces); refusing to run plugins",
    );
  }
  const selfTest = sandboxSelfTest({ tempDir: cache.tempDir, timeoutMs: config.selfTestTimeoutMs, sandbox: config.sandbox });
  await installBuiltins(cache, config.builtin, trust, log, selfTest);

  // Fail at start, not in the poll loop, when the agent can neither present a credential nor enroll.
  if (!readCredential(config.credentialFile)) registerMetadata(undefined, readEnrollmentToken(config), config.credentialFile);
  const client = new AgentServiceClient(config.server, channelCredentials(config.tls), CLIENT_OPTIONS);
  let token = "";
  const tokenOf = () => token;
  const downloader = new Downloader({
    client,
    trust,
    token: tokenOf,
    cache,
    metrics,
    log,
    timeoutMs: config.downloadTimeoutMs,
    maxPluginBytes: config.maxPluginBytes,
    attempts: config.downloadAttempts,
    selfTest,
  });
  // Scheduled and on-demand (SIGHUP) re-verification of everything in the cache.
  let verifying: Promise<unknown> | undefined;
  const reverify = () => {
    // Each pass reloads the keyring files, so a key removed from them stops counting at once,
    // for re-verification and for downloads alike (the downloader reads the same object).
    verifying ??= loadTrustStore(config.trust)
      .then((fresh) => Object.assign(trust, fresh))
      .then(() => verifyCache(cache, trust, log))
      .catch((err: unknown) => log.error({ event: EVENT.AGENT_CACHE_REVERIFY_FAILED, err }, "cache re-verification failed"))
      .finally(() => (verifying = undefined));
  };
  const verifyTimer = config.verifyIntervalMs > 0 ? setInterval(reverify, config.verifyIntervalMs) : undefined;
  verifyTimer?.unref();
  process.on("SIGHUP", reverify);
  // One pass soon after start, in the background: the cache may have been changed while we were down.
  setTimeout(reverify, 1000).unref();
  // Stopping the agent cancels the running job: its commands and plugins are killed, not orphaned.
  const abort = new AbortController();
  const reporter = new Reporter(client, tokenOf, log);
  let pollMs = config.pollIntervalMs;

  // Step 1: enroll with the one-time token the first time, then register with the credential.
  const register = async () => {
    const installed = cache.list().map((e) => ({ pluginId: e.pluginId, version: e.version, sha256: e.sha256, size: e.size }));
    const credential = readCredential(config.credentialFile);
    const md = registerMetadata(credential, credential ? undefined : readEnrollmentToken(config), config.credentialFile);
    const res = await call(
      client.register,
      client,
      { agentId: config.id, hostname: os.hostname(), agentVersion: AGENT_VERSION, installed },
      md,
      30_000,
      { clientCert: Boolean(config.tls?.cert) },
    );
    if (res.credential) {
      await writeCredential(config.credentialFile, res.credential);
      log.info({ event: EVENT.AGENT_ENROLLED, step: "register", credential_file: config.credentialFile }, "enrolled: credential stored");
    }
    token = res.credential || credential!;
    pollMs = Math.max(config.pollIntervalMs, res.pollIntervalSeconds * 1000);
    log.info(
      {
        event: EVENT.AGENT_REGISTERED,
        step: "register",
        agent_id: res.agentId,
        labels: res.labels,
        installed: installed.length,
        server: config.server,
      },
      "registered with the server",
    );
    onRegistered();
  };
  let onRegistered!: () => void;
  const registered = new Promise<void>((r) => (onRegistered = r));
  let onFatal!: (e: ArcadeError) => void;
  const fatal = new Promise<ArcadeError>((r) => (onFatal = r));

  let stopping = false;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });

  const loop = (async () => {
    let failures = 0;
    let repeated: { code: string; times: number } | undefined;
    while (!stopping) {
      let registering = false;
      try {
        if (!token) {
          registering = true;
          await register();
          registering = false;
        }
        const res = await call(client.fetchJob, client, {}, bearer(token), 30_000, { clientCert: Boolean(config.tls?.cert) });
        failures = 0;
        repeated = undefined;
        const job: Job | undefined = res.job;
        if (job && !JOB_ID.test(job.jobId)) {
          // The id names a directory on this host: never take it on trust.
          log.error(
            { event: EVENT.AGENT_JOB_REJECTED, job_id: JSON.stringify(job.jobId).slice(0, 80) },
            "refusing a job whose id is not a UUID",
          );
        } else if (job) {
          log.info(
            {
              event: EVENT.AGENT_JOB_RECEIVED,
              step: "fetch",
              job_id: job.jobId,
              plugins: job.plugins.map((p) => `${p.plugin?.pluginId}@${p.plugin?.version}`),
              commands: job.commands.length,
            },
            "job received",
          );
          const ok = await executeJob(job, {
            cache,
            downloader,
            reporter,
            log,
            workDir: config.workDir,
            maxParallelDownloads: config.maxParallelDownloads,
            maxOutputBytes: config.maxOutputBytes,
            maxStepLogBytes: config.maxStepLogBytes,
            signal: abort.signal,
            sandbox: config.sandbox,
          });
          metrics.jobs.inc({ status: ok ? "succeeded" : "failed" });
          continue; // there may be more work queued: ask again at once
        }
      } catch (e) {
        const why = permanentFailure(e, registering, config);
        if (why) {
          repeated = repeated?.code === why.code ? { code: why.code, times: repeated.times + 1 } : { code: why.code, times: 1 };
          if (why.details.uncertain !== true || repeated.times >= CONFIRMATIONS) {
            stopping = true;
            onFatal(why);
            break;
          }
        } else repeated = undefined;
        // A credential refused between registrations (rotated, or a reset session): register
        // again, re-reading credential_file; if Register refuses it too, that is permanent above.
        if (errorCodeOf(e) === ErrorCode.UNAUTHENTICATED) token = "";
        failures++;
        // A suspected permanent failure is said each time and checked again soon (one poll
        // interval, not the growing backoff): the answer decides whether the agent stops.
        const level = why || failures === 1 || failures % 30 === 0 ? "warn" : "debug";
        log[level](
          { event: EVENT.AGENT_SERVER_UNREACHABLE, code: errorCodeOf(e), reason: errorMessageOf(e), failures },
          why ? "the server refused the connection; checking again before giving up" : "cannot reach the server; will retry",
        );
        await sleep(why ? pollMs : Math.min(30_000, pollMs * 2 ** Math.min(failures, 4)) * (0.75 + Math.random() / 2));
        continue;
      }
      await sleep(pollMs);
    }
  })();

  return {
    metrics,
    cache,
    registered,
    fatal,
    stop: async () => {
      stopping = true;
      abort.abort();
      if (verifyTimer) clearInterval(verifyTimer);
      process.off("SIGHUP", reverify);
      wake?.();
      await loop;
      client.close();
    },
  };
}

/**
 * The failure as a fatal error with what to fix, when retrying with the same configuration and
 * credential can never succeed; undefined for what may pass (server down or restarting,
 * timeouts, a throttled source). UNAUTHENTICATED is fatal only from Register: from FetchJob it
 * first causes a new Register, which re-reads credential_file (a rotated credential).
 */
export function permanentFailure(e: unknown, registering: boolean, config: AgentConfig): ArcadeError | undefined {
  if (!(e instanceof ArcadeError) || isTransient(e)) return undefined;
  const hint = FIX[e.code]?.(config);
  if (!hint) return undefined;
  if ((e.code === ErrorCode.UNAUTHENTICATED || e.code === ErrorCode.PERMISSION_DENIED) && !registering) return undefined;
  return new ArcadeError(e.code, `${neutralize(e.message)}; ${hint}`, { ...e.details });
}

const FIX: Partial<Record<ErrorCode, (c: AgentConfig) => string>> = {
  TLS_CLIENT_CERT_REQUIRED: () =>
    "set tls.cert and tls.key in the agent config to a client certificate for this agent from the CA the server trusts for clients (`arcade certs init --agents <id>` makes one)",
  TLS_CLIENT_CERT_REJECTED: () =>
    "check tls.cert and tls.key: the certificate must come from the CA the server trusts for clients (its tls.client_ca) and must not be expired",
  TLS_SERVER_UNTRUSTED: (c) =>
    `check tls.ca: it must be the CA that issued the server's certificate, and the server address (${c.server}) must be a name or IP that certificate covers`,
  UNAUTHENTICATED: (c) =>
    `the server refuses this agent's credential (${c.credentialFile}) or enrollment token: if the agent was revoked, create a replacement under a new id; if its enrollment token was used or expired, issue a new one with \`arcade agent create ${c.id}\` and put it in the enrollment token file`,
  PERMISSION_DENIED: () =>
    "the credential or the client certificate (tls.cert) belongs to another agent: check id, credential_file and tls.cert",
};

/** Server text can reach a terminal through this message: no control characters. */
function neutralize(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ");
}

function readEnrollmentToken(c: AgentConfig): string | undefined {
  if (c.enrollmentToken) return c.enrollmentToken;
  if (!c.enrollmentTokenFile) return undefined;
  try {
    return fs.readFileSync(c.enrollmentTokenFile, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
