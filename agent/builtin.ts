// Built-in plugins (the seed's mixed mode): builtin/<id>@<version>.tgz shipped with the agent.
// They are hashed and extracted through the same safe path as downloads and indexed as
// built-in, so a job naming the same id@version and sha256 is a cache hit, and eviction skips them.
import fsp from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { sha256File } from "../signing/digest.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { safeExtract } from "../signing/extract.js";
import { parsePluginRef, pluginKey } from "../signing/manifest.js";
import type { PluginCache } from "./cache.js";

export async function installBuiltins(cache: PluginCache, refs: string[], log: Logger): Promise<void> {
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
    const { dir, bytes, manifest } = await safeExtract(file, cache.tempDir);
    if (!manifest || manifest.id !== id || manifest.version !== version) {
      await fsp.rm(dir, { recursive: true, force: true });
      throw new ArcadeError(
        ErrorCode.MANIFEST_MISMATCH,
        `built-in ${file}: its manifest says ${manifest ? pluginKey(manifest.id, manifest.version) : "nothing"}, expected ${s}`,
      );
    }
    await cache.install(ref, dir, bytes, true);
    log.info({ plugin_id: id, version, sha256: digest.sha256 }, "built-in plugin installed");
  }
}
