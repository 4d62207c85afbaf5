// Shared by the kill -9 tests (test/e2e/cache.test.ts and the soak, test/soak/crash.soak.ts):
// the invariant a crash must keep.
import fs from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { expect } from "vitest";
import { PluginCache } from "../../agent/cache.js";
import { verifyCache } from "../../agent/verify-cache.js";
import { loadTrustStore } from "../../keys/truststore.js";
import { publisher } from "./keys.js";

/**
 * What a fresh agent start sees in `pluginsDir` after a crash must be exactly the complete,
 * verified installs: every listed entry re-verifies (files and signature), no installed directory
 * is unlisted, nothing half-extracted survives, and nothing was quarantined along the way.
 * Opens the cache the way a starting agent does (which sweeps), so call it with no agent running.
 */
export async function expectOnlyCompleteVerifiedInstalls(pluginsDir: string): Promise<string[]> {
  const log = pino({ level: "silent" });
  const cache = await PluginCache.open(pluginsDir, 1 << 30, log, { lock: false });
  const report = await verifyCache(cache, await loadTrustStore({ keyring: (await publisher()).keyring }), log);
  expect(report.quarantined).toEqual([]);
  expect(report.ok).toBe(cache.list().length);
  const installed: string[] = [];
  const downloaded = path.join(pluginsDir, "downloaded");
  for (const ns of fs.readdirSync(downloaded)) for (const d of fs.readdirSync(path.join(downloaded, ns))) installed.push(`${ns}/${d}`);
  const listed = cache
    .list()
    .map((e) => `${e.pluginId}@${e.version}`)
    .sort();
  expect(installed.sort()).toEqual(listed);
  expect(fs.readdirSync(path.join(pluginsDir, "temp"))).toEqual(["downloads"]);
  expect(fs.readdirSync(path.join(pluginsDir, "quarantine"))).toEqual([]);
  return listed;
}
