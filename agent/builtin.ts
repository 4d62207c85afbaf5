// Built-in plugins (the seed's mixed mode): builtin/<id>@<version>.tgz shipped with the agent,
// each with its signed statement beside it (<id>@<version>.tgz.statement.json + .asc/.sig or
// .sigstore.json). Shipped with the agent is not the same as trusted: they go through the same
// signature, digest and extraction checks as a download, and are indexed as built-in, so a job
// naming the same id@version and sha256 is a cache hit and eviction skips them.
import fsp from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { sha256File, treeDigest } from "../signing/digest.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { safeExtract } from "../signing/extract.js";
import { parsePluginRef, pluginKey } from "../signing/manifest.js";
import { readReleaseFiles, verifyRelease, type TrustStore } from "../signing/release.js";
import { checkManifestMatchesStatement, checkStatementMatches } from "../signing/statement.js";
import type { PluginCache } from "./cache.js";
import type { SelfTest } from "./selftest.js";
import { EVENT } from "../signing/events.js";

export async function installBuiltins(
  cache: PluginCache,
  refs: string[],
  trust: TrustStore,
  log: Logger,
  selfTest?: SelfTest,
): Promise<void> {
  for (const s of refs) {
    const { id, version } = parsePluginRef(s);
    const file = path.join(cache.root, "builtin", `${pluginKey(id, version)}.tgz`);
    let digest: { sha256: string; size: number };
    try {
      digest = await sha256File(file);
    } catch {
      throw new ArcadeError(ErrorCode.CONFIG_INVALID, `built-in plugin ${s} is listed in plugins.builtin but ${file} does not exist`);
    }
    const ref = { pluginId: id, version, ...digest };
    if (cache.lookup(ref)?.builtin) continue;
    const release = await readReleaseFiles(file);
    const { statement } = await verifyRelease(release, trust);
    checkStatementMatches(statement, { id, version, sha256: digest.sha256, size: digest.size }, `built-in ${file}`);
    const { dir, bytes, manifest } = await safeExtract(file, cache.tempDir);
    try {
      checkManifestMatchesStatement(manifest, statement);
    } catch (e) {
      await fsp.rm(dir, { recursive: true, force: true });
      throw e;
    }
    if (selfTest) {
      try {
        await selfTest(dir, manifest!);
      } catch (e) {
        await cache.quarantineDir(dir, pluginKey(id, version), { code: ErrorCode.SELF_TEST_FAILED, message: (e as Error).message });
        throw e;
      }
    }
    const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
    await cache.install(ref, dir, bytes, {
      builtin: true,
      treeDigest: await treeDigest(dir),
      release: { statement: b64(release.statement), openpgp: release.openpgp.map(b64), sigstore: release.sigstore },
    });
    log.info(
      { event: EVENT.AGENT_BUILTIN_INSTALLED, plugin_id: id, version, sha256: digest.sha256 },
      "built-in plugin verified and installed",
    );
  }
}
