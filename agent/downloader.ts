// Steps 3 and 4 on the agent: cache check, then download → hash → size check → extract →
// manifest check → install. Each check is a small named function below, in that order.
// One download per plugin@version however many jobs ask at once; partial bytes are kept in
// temp/ and the next attempt resumes from them (they are re-hashed, never trusted).
import { once } from "node:events";
import fs from "node:fs";
import fsp from "node:fs/promises";
import type { Logger } from "pino";
import type { AgentServiceClient, DownloadPluginResponse } from "../proto/gen/arcade/v1/agent.js";
import type { Release as WireRelease } from "../proto/gen/arcade/v1/plugin.js";
import { bearer, fromServiceError, isTransient } from "../proto/rpc.js";
import { HashCounter, treeDigest } from "../signing/digest.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { safeExtract } from "../signing/extract.js";
import { pluginKey, type PluginManifest } from "../signing/manifest.js";
import { describeSigner, verifyRelease, type ReleaseSigner, type TrustStore, type VerifiedRelease } from "../signing/release.js";
import { checkManifestMatchesStatement, checkStatementMatches, type ReleaseStatement } from "../signing/statement.js";
import type { CacheEntry, PluginCache, PluginIdentity, StoredRelease } from "./cache.js";
import type { SelfTest } from "./selftest.js";
import type { AgentMetrics } from "./metrics.js";
import { EVENT } from "../signing/events.js";

export type DownloaderOptions = {
  client: AgentServiceClient;
  /** The agent's own keys: a release is installed only if one of them signed it. */
  trust: TrustStore;
  token: () => string;
  cache: PluginCache;
  metrics: AgentMetrics;
  log: Logger;
  timeoutMs: number;
  /** The agent's own cap on one plugin's size. */
  maxPluginBytes?: number;
  /** The gate a verified plugin must pass before it is marked usable (agent/selftest.ts). */
  selfTest?: SelfTest;
  attempts?: number;
};

export type Ensured = { entry: CacheEntry; cached: boolean };

export class Downloader {
  private inflight = new Map<string, Promise<CacheEntry>>();

  constructor(private readonly o: DownloaderOptions) {}

  /** The plugin, from the cache or freshly installed. Concurrent calls share one download. */
  async ensure(ref: PluginIdentity): Promise<Ensured> {
    const labels = { plugin_id: ref.pluginId };
    const hit = this.o.cache.lookup(ref);
    if (hit) {
      this.o.metrics.cacheHits.inc(labels);
      this.o.log.info({ event: EVENT.AGENT_CACHE_HIT, step: "cache", plugin_id: ref.pluginId, version: ref.version }, "cache hit");
      return { entry: hit, cached: true };
    }
    this.o.metrics.cacheMisses.inc(labels);
    const key = pluginKey(ref.pluginId, ref.version);
    let p = this.inflight.get(key);
    if (!p) {
      this.o.log.info({ event: EVENT.AGENT_CACHE_MISS, step: "cache", plugin_id: ref.pluginId, version: ref.version }, "cache miss");
      p = this.downloadAndInstall(ref).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return { entry: await p, cached: false };
  }

  private async downloadAndInstall(ref: PluginIdentity): Promise<CacheEntry> {
    const started = process.hrtime.bigint();
    const log = this.o.log.child({ plugin_id: ref.pluginId, version: ref.version });
    try {
      checkSizeLimit(ref, this.o.maxPluginBytes);
      const { part, statement, signers, release } = await this.fetchWithRetries(ref, log);
      const { dir, bytes, manifest } = await safeExtract(part, this.o.cache.tempDir);
      try {
        checkManifestMatchesStatement(manifest, statement);
        log.info({ event: EVENT.AGENT_PLUGIN_VERIFIED, dir }, "plugin verified and extracted; self-test next");
        await this.selfTestOrQuarantine(dir, manifest!, ref);
        const entry = await this.o.cache.install(ref, dir, bytes, { treeDigest: await treeDigest(dir), release: storable(release) });
        await fsp.rm(part, { force: true });
        const secs = Number(process.hrtime.bigint() - started) / 1e9;
        this.o.metrics.downloads.inc({ plugin_id: ref.pluginId, version: ref.version, status: "success" });
        this.o.metrics.downloadDuration.observe({ plugin_id: ref.pluginId }, secs);
        this.o.metrics.downloadSize.observe({ plugin_id: ref.pluginId }, ref.size);
        log.info(
          {
            event: EVENT.AGENT_PLUGIN_INSTALLED,
            step: "download",
            bytes: ref.size,
            seconds: Number(secs.toFixed(3)),
            sha256: ref.sha256,
            signed_by: signers.map(describeSigner),
          },
          "plugin downloaded, verified and installed",
        );
        return entry;
      } catch (e) {
        // Nothing of a refused plugin stays behind: not the extraction, not the downloaded bytes.
        await fsp.rm(dir, { recursive: true, force: true });
        await fsp.rm(part, { force: true });
        throw diskError(e, this.o.cache.root) ?? e;
      }
    } catch (e) {
      this.o.metrics.downloads.inc({ plugin_id: ref.pluginId, version: ref.version, status: errorCodeOf(e) });
      log.error(
        { event: EVENT.AGENT_PLUGIN_REFUSED, step: "download", code: errorCodeOf(e), reason: errorMessageOf(e) },
        "plugin download refused",
      );
      throw e;
    }
  }

  /** Self-test gate: a failing plugin's files go to quarantine/ with the reason, never into the cache. */
  private async selfTestOrQuarantine(dir: string, manifest: PluginManifest, ref: PluginIdentity): Promise<void> {
    if (!this.o.selfTest) return;
    try {
      await this.o.selfTest(dir, manifest);
    } catch (e) {
      const err = e instanceof ArcadeError ? e : new ArcadeError(ErrorCode.SELF_TEST_FAILED, errorMessageOf(e));
      if (err.code === ErrorCode.SELF_TEST_FAILED) {
        await this.o.cache.quarantineDir(dir, pluginKey(ref.pluginId, ref.version), { code: err.code, message: err.message });
      }
      throw err;
    }
  }

  private async fetchWithRetries(ref: PluginIdentity, log: Logger): Promise<Fetched> {
    const attempts = this.o.attempts ?? 3;
    for (let i = 1; ; i++) {
      try {
        return await this.fetch(ref);
      } catch (e) {
        const err = e instanceof ArcadeError ? e : fromServiceError(e);
        if (!isTransient(err) || i >= attempts) throw err;
        const wait = Math.min(10_000, 250 * 2 ** i) * (0.5 + Math.random() / 2); // backoff with jitter
        log.warn(
          { event: EVENT.AGENT_DOWNLOAD_RESUMING, step: "download", attempt: i, code: err.code, retry_in_ms: Math.round(wait) },
          "download interrupted; resuming",
        );
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /**
   * Streams the blob into temp/downloads/<key>.part, resuming after any bytes already there.
   * The header comes first: its release is verified against the agent's own keyring and must
   * describe the plugin the job named before a single byte is written.
   */
  private async fetch(ref: PluginIdentity): Promise<Fetched> {
    const part = this.o.cache.partialPath(ref);
    const hash = new HashCounter();
    const offset = await rehashPartial(part, ref, hash);
    const call = this.o.client.downloadPlugin({ pluginId: ref.pluginId, version: ref.version, offset }, bearer(this.o.token()), {
      deadline: new Date(Date.now() + this.o.timeoutMs),
    });
    const out = fs.createWriteStream(part, { flags: "a", mode: 0o600 });
    const closed = once(out, "close");
    let statement: ReleaseStatement | undefined;
    let signers: ReleaseSigner[] = [];
    let release: WireRelease | undefined;
    try {
      for await (const msg of call as AsyncIterable<DownloadPluginResponse>) {
        const p = msg.payload;
        if (p?.$case === "header") {
          checkHeader(p.value.plugin, p.value.offset, ref, offset);
          ({ statement, signers } = await verifySignedRelease(p.value.release, this.o.trust, ref));
          release = p.value.release;
          this.o.log.info(
            { event: EVENT.AGENT_DOWNLOAD_STARTED, plugin_id: ref.pluginId, version: ref.version, offset },
            "download started",
          );
        } else if (p?.$case === "chunk") {
          if (!statement) throw new ArcadeError(ErrorCode.DOWNLOAD_FAILED, "server sent data before the header");
          checkSizeBound(hash.size + p.value.length, ref);
          hash.update(p.value);
          if (!out.write(p.value)) await once(out, "drain");
        }
      }
      if (!statement) throw new ArcadeError(ErrorCode.DOWNLOAD_FAILED, "server ended the download without a header");
      out.end();
      await closed;
    } catch (e) {
      call.cancel();
      out.destroy();
      await closed.catch(() => {});
      const err = e instanceof ArcadeError ? e : (diskError(e, this.o.cache.root) ?? fromServiceError(e));
      // Keep the bytes only when the next attempt may resume after them.
      if (!isTransient(err)) await fsp.rm(part, { force: true });
      throw err;
    }
    try {
      checkComplete(hash, ref);
    } catch (e) {
      await fsp.rm(part, { force: true });
      throw e;
    }
    return { part, statement, signers, release: release! };
  }
}

type Fetched = { part: string; statement: ReleaseStatement; signers: ReleaseSigner[]; release: WireRelease };

/** Signature first, against the agent's keyring; then the statement must name the job's plugin and bytes. */
async function verifySignedRelease(release: WireRelease | undefined, trust: TrustStore, ref: PluginIdentity): Promise<VerifiedRelease> {
  const r = release ?? { statement: Buffer.alloc(0), openpgpSignatures: [], sigstoreBundles: [] };
  const verified = await verifyRelease({ statement: r.statement, openpgp: r.openpgpSignatures, sigstore: r.sigstoreBundles }, trust);
  checkStatementMatches(
    verified.statement,
    { id: ref.pluginId, version: ref.version, sha256: ref.sha256, size: ref.size },
    `the job's ${pluginKey(ref.pluginId, ref.version)}`,
  );
  return verified;
}

/** Re-hashes a partial file from an earlier attempt; returns the offset to resume from. */
async function rehashPartial(part: string, ref: PluginIdentity, hash: HashCounter): Promise<number> {
  let size: number;
  try {
    size = (await fsp.stat(part)).size;
  } catch {
    return 0;
  }
  if (size > ref.size) {
    await fsp.rm(part, { force: true });
    return 0;
  }
  for await (const buf of fs.createReadStream(part, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(buf);
  return hash.size;
}

/** The server must describe the very plugin the job named: same id, version, digest, size. */
function checkHeader(got: PluginIdentity | undefined, gotOffset: number, want: PluginIdentity, offset: number): void {
  if (!got || got.pluginId !== want.pluginId || got.version !== want.version) {
    throw new ArcadeError(
      ErrorCode.DOWNLOAD_FAILED,
      `server answered with ${got ? pluginKey(got.pluginId, got.version) : "nothing"} for ${pluginKey(want.pluginId, want.version)}`,
    );
  }
  if (got.sha256 !== want.sha256)
    throw new ArcadeError(
      ErrorCode.CHECKSUM_MISMATCH,
      `server now describes ${pluginKey(want.pluginId, want.version)} with sha256 ${got.sha256}, the job said ${want.sha256}`,
    );
  if (got.size !== want.size)
    throw new ArcadeError(
      ErrorCode.SIZE_MISMATCH,
      `server now describes ${pluginKey(want.pluginId, want.version)} as ${got.size} bytes, the job said ${want.size}`,
    );
  if (gotOffset !== offset) throw new ArcadeError(ErrorCode.DOWNLOAD_FAILED, `server resumed at ${gotOffset}, asked for ${offset}`);
}

function checkSizeLimit(ref: PluginIdentity, max: number | undefined): void {
  if (max !== undefined && ref.size > max) {
    throw new ArcadeError(
      ErrorCode.SIZE_LIMIT,
      `${pluginKey(ref.pluginId, ref.version)} is ${ref.size} bytes; this agent's plugins.max_plugin_size is ${max} bytes`,
    );
  }
}

/** A full disk is the operator's to fix, not a transient network error: say so plainly. */
function diskError(e: unknown, where: string): ArcadeError | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code !== "ENOSPC" && code !== "EDQUOT") return undefined;
  return new ArcadeError(
    ErrorCode.DISK_FULL,
    `no space left for the plugin cache in ${where}: free space or lower plugins.cache_size; nothing was installed`,
  );
}

/** Never write more than the announced size (a hostile server could fill the disk). */
function checkSizeBound(received: number, ref: PluginIdentity): void {
  if (received > ref.size)
    throw new ArcadeError(
      ErrorCode.SIZE_MISMATCH,
      `received more than the announced ${ref.size} bytes for ${pluginKey(ref.pluginId, ref.version)}`,
    );
}

function checkComplete(hash: HashCounter, ref: PluginIdentity): void {
  if (hash.size !== ref.size)
    throw new ArcadeError(
      ErrorCode.SIZE_MISMATCH,
      `received ${hash.size} of ${ref.size} bytes for ${pluginKey(ref.pluginId, ref.version)}`,
    );
  const got = hash.digest();
  if (got !== ref.sha256) {
    throw new ArcadeError(
      ErrorCode.CHECKSUM_MISMATCH,
      `${pluginKey(ref.pluginId, ref.version)}: downloaded bytes hash to ${got}, expected ${ref.sha256}; nothing was installed`,
    );
  }
}

function storable(r: WireRelease): StoredRelease {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  return { statement: b64(r.statement), openpgp: r.openpgpSignatures.map(b64), sigstore: r.sigstoreBundles };
}
