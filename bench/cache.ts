// Warm-cache check for a job that needs 50 installed plugins: Arcade's lookup (index entry plus
// one stat per plugin) side by side with the seed's approach, re-hashing every plugin's files on
// every job, and with a full re-verification (files and signatures) as the scheduled check does.
// Usage: node dist/bench/cache.js [rounds=20] [plugin MiB=1]
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { PluginCache } from "../agent/cache.js";
import { verifyCache } from "../agent/verify-cache.js";
import { treeDigest } from "../signing/digest.js";
import { parseManifest } from "../signing/manifest.js";
import { generateSigningKey, readPublicKeys, readSecretKey, signDetached } from "../signing/openpgp.js";
import { buildStatement } from "../signing/statement.js";

const rounds = Number(process.argv[2] ?? 20);
const mib = Number(process.argv[3] ?? 1);
const N = 50;
const log = pino({ level: "silent" });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const root = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-bench-cache-"));
try {
  const key = await generateSigningKey({ name: "Bench", email: "bench@arcade.invalid" });
  const secret = await readSecretKey(key.privateKeyArmored);
  const trust = { openpgp: await readPublicKeys(key.publicKeyArmored), sigstore: [] };
  const cache = await PluginCache.open(path.join(root, "plugins"), 2 ** 40, log);
  const refs: { pluginId: string; version: string; sha256: string; size: number }[] = [];
  for (let i = 0; i < N; i++) {
    const dir = fs.mkdtempSync(path.join(cache.tempDir, ".extract-"));
    const manifest = parseManifest({
      schemaVersion: 1,
      id: `bench/p${i}`,
      version: "1.0.0",
      entry: "index.mjs",
      runtime: "node",
      stages: ["before"],
      description: "bench",
    });
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest));
    fs.writeFileSync(path.join(dir, "index.mjs"), "export const before = async () => 1;\n");
    fs.writeFileSync(path.join(dir, "payload.bin"), randomBytes(mib * 1024 * 1024));
    const ref = { pluginId: manifest.id, version: "1.0.0", sha256: randomBytes(32).toString("hex"), size: mib * 1024 * 1024 };
    const { bytes } = buildStatement({ manifest, sha256: ref.sha256, size: ref.size });
    const asc = (await signDetached(bytes, secret)) as string;
    const release = { statement: Buffer.from(bytes).toString("base64"), openpgp: [Buffer.from(asc).toString("base64")], sigstore: [] };
    await cache.install(ref, dir, mib * 1024 * 1024, { treeDigest: await treeDigest(dir), release });
    refs.push(ref);
  }

  const time = async (fn: () => Promise<void> | void) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  const lookup: number[] = [];
  const rehash: number[] = [];
  const reverify: number[] = [];
  for (let r = 0; r < rounds; r++) {
    lookup.push(
      await time(() =>
        refs.forEach(
          (ref) =>
            cache.lookup(ref) ??
            (() => {
              throw new Error("miss");
            })(),
        ),
      ),
    );
    rehash.push(await time(async () => void (await Promise.all(cache.list().map((e) => treeDigest(cache.dirOf(e)))))));
    if (r < Math.min(rounds, 5)) reverify.push(await time(async () => void (await verifyCache(cache, trust, log))));
  }
  const l = median(lookup);
  const h = median(rehash);
  const v = median(reverify);
  console.log(`warm-cache check, ${N} plugins of ${mib} MiB, ${rounds} rounds (medians)`);
  console.log(`  arcade lookup (index + stat)      ${l.toFixed(3)} ms`);
  console.log(`  seed re-hash of every plugin      ${h.toFixed(1)} ms   (${(h / l).toFixed(0)}x the lookup)`);
  console.log(`  full re-verification (hash+sig)   ${v.toFixed(1)} ms   (${reverify.length} rounds; scheduled, not per job)`);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
