// The cache is untrusted input: anyone with write access to the disk could change an installed
// plugin, and a publisher key may have been revoked since install. Re-verification re-hashes
// every installed tree against the digest recorded at install and re-checks its release against
// the agent's current trust store; a failing entry is quarantined, never silently kept.
import type { Logger } from "pino";
import { treeDigest } from "../signing/digest.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { pluginKey } from "../signing/manifest.js";
import { verifyRelease, type TrustStore } from "../signing/release.js";
import { checkStatementMatches } from "../signing/statement.js";
import type { CacheEntry, PluginCache } from "./cache.js";
import { EVENT } from "../signing/events.js";

export type CacheReport = {
  checked: number;
  ok: number;
  quarantined: { plugin: string; code: string; message: string }[];
  inUse: string[];
};

export async function verifyCache(cache: PluginCache, trust: TrustStore, log: Logger): Promise<CacheReport> {
  const report: CacheReport = { checked: 0, ok: 0, quarantined: [], inUse: [] };
  for (const e of cache.list()) {
    const key = pluginKey(e.pluginId, e.version);
    // A plugin a job is running now is checked on the next pass rather than pulled from under it.
    if (cache.isInUse(e)) {
      report.inUse.push(key);
      continue;
    }
    report.checked++;
    try {
      await checkFiles(cache, e);
      await checkRelease(e, trust);
      report.ok++;
    } catch (err) {
      const reason = { code: errorCodeOf(err), message: errorMessageOf(err) };
      await cache.quarantine(e, reason);
      report.quarantined.push({ plugin: key, ...reason });
    }
  }
  log.info(
    {
      event: EVENT.AGENT_CACHE_REVERIFIED,
      checked: report.checked,
      ok: report.ok,
      quarantined: report.quarantined.length,
      in_use: report.inUse.length,
    },
    "cache re-verified",
  );
  return report;
}

async function checkFiles(cache: PluginCache, e: CacheEntry): Promise<void> {
  let digest: string;
  try {
    digest = await treeDigest(cache.dirOf(e));
  } catch (err) {
    throw new ArcadeError(
      ErrorCode.CHECKSUM_MISMATCH,
      `installed files of ${pluginKey(e.pluginId, e.version)} cannot be read: ${errorMessageOf(err)}`,
    );
  }
  if (digest !== e.treeDigest) {
    throw new ArcadeError(
      ErrorCode.CHECKSUM_MISMATCH,
      `installed files of ${pluginKey(e.pluginId, e.version)} changed since they were verified`,
    );
  }
}

async function checkRelease(e: CacheEntry, trust: TrustStore): Promise<void> {
  if (!e.release)
    throw new ArcadeError(ErrorCode.SIGNATURE_MISSING, `${pluginKey(e.pluginId, e.version)} has no recorded release to re-verify`);
  const buf = (b: string) => Buffer.from(b, "base64");
  const { statement } = await verifyRelease(
    { statement: buf(e.release.statement), openpgp: e.release.openpgp.map(buf), sigstore: e.release.sigstore },
    trust,
  );
  checkStatementMatches(
    statement,
    { id: e.pluginId, version: e.version, sha256: e.sha256, size: e.size },
    `cached ${pluginKey(e.pluginId, e.version)}`,
  );
}
