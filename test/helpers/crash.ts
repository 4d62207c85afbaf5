// Shared by the kill -9 tests (test/e2e/cache.test.ts and the soak, test/soak/crash.soak.ts):
// a seeded random source, and the invariant a crash must keep.
import { randomInt } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { expect } from "vitest";
import { PluginCache } from "../../agent/cache.js";
import { verifyCache } from "../../agent/verify-cache.js";
import { loadTrustStore } from "../../keys/truststore.js";
import { publisher } from "./keys.js";

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same sequence on every machine. */
export function seeded(seed: number): { next(): number; int(min: number, max: number): number; bytes(n: number): Buffer } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    /** An integer in [min, max]. */
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(next() * 4294967296), Math.min(i, n - 4));
      return b;
    },
  };
}

/** ARCADE_TEST_SEED, or a fresh one; printed either way so a failing run can be replayed. */
export function testSeed(what: string): number {
  const fromEnv = process.env.ARCADE_TEST_SEED;
  const seed = fromEnv !== undefined && fromEnv !== "" ? Number.parseInt(fromEnv, 10) >>> 0 : randomInt(2 ** 32 - 1);
  console.log(`${what}: seed ${seed} (replay with ARCADE_TEST_SEED=${seed})`);
  return seed;
}

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
