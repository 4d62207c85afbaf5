// The agent daemon: open the cache, install built-ins, then register (step 1) and poll for
// jobs (step 2), running each through the executor (steps 3-5). A server that is down is
// waited for, not fatal: the agent keeps polling with backoff and re-registers when it returns.
import os from "node:os";
import fs from "node:fs";
import type { Logger } from "pino";
import { AgentServiceClient, type Job } from "../proto/gen/arcade/v1/agent.js";
import { CLIENT_OPTIONS, bearer, call, channelCredentials } from "../proto/rpc.js";
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

export const AGENT_VERSION = "0.1.0";
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type RunningAgent = { metrics: AgentMetrics; cache: PluginCache; stop(): Promise<void> };

export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  // A plugin must not be able to open our inspector with SIGUSR1 (see the isolation note).
  disableInspectorActivation();
  const metrics = new AgentMetrics();
  const trust = await loadTrustStore(config.trust);
  log.info({ openpgp_keys: trust.openpgp.length, sigstore_keys: trust.sigstore.map((k) => k.hint) }, "trust store loaded");
  const cache = await PluginCache.open(config.pluginsDir, config.cacheSizeBytes, log);
  // Which isolation layers this machine gives plugins, said once at start (and by `arcade agent doctor`).
  const sandbox = await detectSandbox();
  log.info({ sandbox: sandbox.layers }, formatSandboxReport(sandbox));
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
      .catch((err: unknown) => log.error({ err }, "cache re-verification failed"))
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
    );
    if (res.credential) {
      await writeCredential(config.credentialFile, res.credential);
      log.info({ step: "register", credential_file: config.credentialFile }, "enrolled: credential stored");
    }
    token = res.credential || credential!;
    pollMs = Math.max(config.pollIntervalMs, res.pollIntervalSeconds * 1000);
    log.info(
      { step: "register", agent_id: res.agentId, labels: res.labels, installed: installed.length, server: config.server },
      "registered with the server",
    );
  };

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
    while (!stopping) {
      try {
        if (!token) await register();
        const res = await call(client.fetchJob, client, {}, bearer(token));
        failures = 0;
        const job: Job | undefined = res.job;
        if (job && !JOB_ID.test(job.jobId)) {
          // The id names a directory on this host: never take it on trust.
          log.error({ job_id: JSON.stringify(job.jobId).slice(0, 80) }, "refusing a job whose id is not a UUID");
        } else if (job) {
          log.info(
            {
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
        if (errorCodeOf(e) === ErrorCode.UNAUTHENTICATED) token = ""; // session expired or server reset: register again
        failures++;
        const level = failures === 1 || failures % 30 === 0 ? "warn" : "debug";
        log[level]({ code: errorCodeOf(e), reason: errorMessageOf(e), failures }, "cannot reach the server; will retry");
        await sleep(Math.min(30_000, pollMs * 2 ** Math.min(failures, 4)) * (0.75 + Math.random() / 2));
        continue;
      }
      await sleep(pollMs);
    }
  })();

  return {
    metrics,
    cache,
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

function readEnrollmentToken(c: AgentConfig): string | undefined {
  if (c.enrollmentToken) return c.enrollmentToken;
  if (!c.enrollmentTokenFile) return undefined;
  try {
    return fs.readFileSync(c.enrollmentTokenFile, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
