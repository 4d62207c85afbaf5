import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { PluginCache } from "../../agent/cache.js";

const log = pino({ level: "silent" });
const MB = 1024 * 1024;

function root(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "arcade-cache-"));
}

/** An extracted plugin dir in temp/, as the downloader leaves it before install. */
function staged(cache: PluginCache, id: string): string {
  const d = fs.mkdtempSync(path.join(cache.tempDir, ".extract-"));
  fs.writeFileSync(path.join(d, "manifest.json"), JSON.stringify({ id }));
  fs.writeFileSync(path.join(d, "index.mjs"), "export {}\n");
  return d;
}

const ref = (name: string, sha = "a".repeat(64)) => ({ pluginId: `t/${name}`, version: "1.0.0", sha256: sha, size: 10 });

describe("plugin cache", () => {
  it("installs atomically, finds entries by index + stat, and makes files read-only", async () => {
    const c = await PluginCache.open(root(), 100 * MB, log);
    expect(c.lookup(ref("a"))).toBeUndefined();
    const e = await c.install(ref("a"), staged(c, "a"), 1000, { treeDigest: "t" });
    expect(c.lookup(ref("a"))?.dir).toBe(e.dir);
    expect(c.lookup(ref("a", "b".repeat(64)))).toBeUndefined(); // same id@version, other bytes: a miss
    expect(fs.statSync(path.join(c.dirOf(e), "index.mjs")).mode & 0o222).toBe(0);
    const reopened = await PluginCache.open(c.root, 100 * MB, log);
    expect(reopened.lookup(ref("a"))).toBeDefined();
  });

  it("removes at start what a crash left: unlisted dirs, extraction leftovers, entries whose dir vanished", async () => {
    const c = await PluginCache.open(root(), 100 * MB, log);
    const kept = await c.install(ref("kept"), staged(c, "kept"), 10, { treeDigest: "t" });
    const gone = await c.install(ref("gone"), staged(c, "gone"), 10, { treeDigest: "t" });
    fs.mkdirSync(path.join(c.root, "downloaded", "t", "half@1.0.0"), { recursive: true }); // moved but never indexed
    staged(c, "leftover");
    fs.writeFileSync(c.partialPath(ref("p")), "partial"); // kept for resume
    fs.rmSync(c.dirOf(gone), { recursive: true, force: true });
    const r = await PluginCache.open(c.root, 100 * MB, log);
    expect(r.list().map((e) => e.pluginId)).toEqual([kept.pluginId]);
    expect(fs.existsSync(path.join(c.root, "downloaded", "t", "half@1.0.0"))).toBe(false);
    expect(fs.readdirSync(r.tempDir)).toEqual(["downloads"]);
    expect(fs.existsSync(r.partialPath(ref("p")))).toBe(true);
  });

  it("quarantines an unreadable index and starts empty", async () => {
    const dir = root();
    await PluginCache.open(dir, MB, log);
    fs.writeFileSync(path.join(dir, "index.json"), "{not json");
    const c = await PluginCache.open(dir, MB, log);
    expect(c.list()).toEqual([]);
    expect(fs.readdirSync(path.join(dir, "quarantine")).some((f) => f.startsWith("index-"))).toBe(true);
  });

  it("evicts least recently used downloads past cache_size, never built-ins or plugins in use", async () => {
    const c = await PluginCache.open(root(), 3 * MB, log);
    // Use times come from the clock: step it explicitly so "least recently used" is unambiguous.
    vi.useFakeTimers({ toFake: ["Date"] });
    onTestFinished(() => void vi.useRealTimers());
    const t0 = Date.now();
    await c.install(ref("builtin"), staged(c, "builtin"), MB, { builtin: true, treeDigest: "t" });
    const old = await c.install(ref("old"), staged(c, "old"), MB, { treeDigest: "t" });
    const release = c.acquire(old); // in use by a job
    vi.setSystemTime(t0 + 1000);
    await c.install(ref("mid"), staged(c, "mid"), MB, { treeDigest: "t" });
    vi.setSystemTime(t0 + 2000);
    await c.install(ref("new"), staged(c, "new"), MB, { treeDigest: "t" }); // 4 MB > 3 MB: one must go
    expect(
      c
        .list()
        .map((e) => e.pluginId)
        .sort(),
    ).toEqual(["t/builtin", "t/new", "t/old"]);
    release();
    await c.install(ref("newer"), staged(c, "newer"), MB, { treeDigest: "t" });
    expect(
      c
        .list()
        .map((e) => e.pluginId)
        .sort(),
    ).toEqual(["t/builtin", "t/new", "t/newer"]);
    expect(fs.existsSync(path.join(c.root, "downloaded", "t", "old@1.0.0"))).toBe(false);
  });

  it("keeps the index consistent under concurrent installs", async () => {
    const c = await PluginCache.open(root(), 100 * MB, log);
    await Promise.all(["a", "b", "c", "d", "e"].map((n) => c.install(ref(n), staged(c, n), 10, { treeDigest: "t" })));
    const reopened = await PluginCache.open(c.root, 100 * MB, log, { lock: false });
    expect(reopened.list()).toHaveLength(5);
  });
});
