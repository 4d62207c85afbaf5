// The agent's plugin cache, content checked once and indexed:
//   builtin/<id>@<version>.tgz   pre-installed packages (extracted beside them at start)
//   downloaded/<id>@<version>/   installed plugins, read-only files
//   temp/                        partial downloads (kept for resume) and extraction dirs
//   quarantine/                  refused or damaged entries, kept for inspection
//   index.json                   the only record of what is usable, replaced atomically
// An entry is usable only once its directory is in place AND the index names it; a crash
// between the two leaves a directory the next start removes.
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { pluginKey } from "../signing/manifest.js";
import { EVENT } from "../signing/events.js";

export type PluginIdentity = { pluginId: string; version: string; sha256: string; size: number };

/** The release as verified at install (base64 statement and OpenPGP signatures, Sigstore JSON). */
export type StoredRelease = { statement: string; openpgp: string[]; sigstore: string[] };

export type CacheEntry = PluginIdentity & {
  /** Directory relative to the cache root. */
  dir: string;
  /** signing/digest.ts treeDigest of the installed files, for later re-verification. */
  treeDigest: string;
  release?: StoredRelease;
  builtin: boolean;
  /** Bytes on disk after extraction, counted against cache_size. */
  diskBytes: number;
  installedAt: number;
  lastUsedAt: number;
};

type IndexFile = { version: 1; entries: Record<string, CacheEntry> };

export class PluginCache {
  private entries = new Map<string, CacheEntry>();
  private inUse = new Map<string, number>();

  private constructor(
    readonly root: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  static async open(root: string, maxBytes: number, log: Logger, o: { lock?: boolean } = {}): Promise<PluginCache> {
    const c = new PluginCache(root, maxBytes, log);
    for (const d of ["builtin", "downloaded", "temp", "temp/downloads", "quarantine"])
      await fsp.mkdir(path.join(root, d), { recursive: true, mode: 0o700 });
    if (o.lock !== false) acquireLock(root);
    await c.load();
    await c.sweep();
    return c;
  }

  get tempDir(): string {
    return path.join(this.root, "temp");
  }

  partialPath(ref: { pluginId: string; version: string }): string {
    return path.join(this.root, "temp", "downloads", `${pluginKey(ref.pluginId, ref.version).replace("/", "~")}.part`);
  }

  /** Step 3: an index lookup and one stat — never a re-hash. */
  lookup(ref: PluginIdentity): CacheEntry | undefined {
    const e = this.entries.get(pluginKey(ref.pluginId, ref.version));
    if (!e || e.sha256 !== ref.sha256) return undefined;
    try {
      fs.statSync(path.join(this.root, e.dir, "manifest.json"));
    } catch {
      return undefined;
    }
    return e;
  }

  dirOf(e: CacheEntry): string {
    return path.join(this.root, e.dir);
  }

  list(): CacheEntry[] {
    return [...this.entries.values()];
  }

  /** Moves a verified, extracted directory into place, then records it: from here it is usable. */
  async install(
    ref: PluginIdentity,
    extractedDir: string,
    diskBytes: number,
    o: { builtin?: boolean; treeDigest: string; release?: StoredRelease },
  ): Promise<CacheEntry> {
    const builtin = o.builtin === true;
    const key = pluginKey(ref.pluginId, ref.version);
    const rel = path.join(builtin ? "builtin" : "downloaded", key);
    const dest = path.join(this.root, rel);
    await makeReadOnly(extractedDir);
    await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 });
    const old = this.entries.get(key);
    if (old) await this.remove(key, "replaced by a different sha256");
    await fsp.rm(dest, { recursive: true, force: true });
    await fsp.rename(extractedDir, dest);
    const now = Date.now();
    const entry: CacheEntry = {
      ...ref,
      dir: rel,
      builtin,
      diskBytes,
      treeDigest: o.treeDigest,
      release: o.release,
      installedAt: now,
      lastUsedAt: now,
    };
    this.entries.set(key, entry);
    await this.save();
    await this.evict();
    return entry;
  }

  /** Marks an entry in use for a job: it cannot be evicted until released. */
  acquire(e: CacheEntry): () => void {
    const key = pluginKey(e.pluginId, e.version);
    this.inUse.set(key, (this.inUse.get(key) ?? 0) + 1);
    e.lastUsedAt = Date.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.inUse.get(key) ?? 1) - 1;
      if (n <= 0) this.inUse.delete(key);
      else this.inUse.set(key, n);
    };
  }

  /** Least recently used downloads go first; built-ins and plugins in use never do. */
  async evict(): Promise<string[]> {
    let total = this.list().reduce((n, e) => n + e.diskBytes, 0);
    const evicted: string[] = [];
    const candidates = this.list()
      .filter((e) => !e.builtin && !this.inUse.has(pluginKey(e.pluginId, e.version)))
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const e of candidates) {
      if (total <= this.maxBytes) break;
      const key = pluginKey(e.pluginId, e.version);
      await this.remove(key, "evicted (cache_size)");
      total -= e.diskBytes;
      evicted.push(key);
    }
    return evicted;
  }

  isInUse(e: CacheEntry): boolean {
    return this.inUse.has(pluginKey(e.pluginId, e.version));
  }

  /** Unlists an installed entry and moves its files to quarantine/ with the reason beside them. */
  async quarantine(e: CacheEntry, reason: { code: string; message: string }): Promise<string> {
    const key = pluginKey(e.pluginId, e.version);
    this.entries.delete(key);
    await this.save();
    return this.quarantineDir(path.join(this.root, e.dir), key, reason);
  }

  /** Moves any directory (e.g. a plugin that failed its self-test) to quarantine/<key>-<time>/. */
  async quarantineDir(dir: string, key: string, reason: { code: string; message: string }): Promise<string> {
    const dest = path.join(this.root, "quarantine", `${key.replace("/", "~")}-${Date.now()}`);
    await fsp.mkdir(dest, { recursive: true, mode: 0o700 });
    await fsp.rename(dir, path.join(dest, "files")).catch(() => fsp.rm(dir, { recursive: true, force: true }));
    await fsp.writeFile(
      path.join(dest, "reason.json"),
      `${JSON.stringify({ plugin: key, ...reason, at: new Date().toISOString() }, null, 2)}\n`,
    );
    const [pluginId, version] = key.split("@");
    this.log.warn(
      { event: EVENT.AGENT_PLUGIN_QUARANTINED, plugin_id: pluginId, version, code: reason.code, reason: reason.message, quarantine: dest },
      "plugin quarantined",
    );
    return dest;
  }

  async persistUsage(): Promise<void> {
    await this.save();
  }

  private async remove(key: string, why: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e) return;
    // Unlist first: a crash after this line leaves an unlisted directory, which is swept.
    this.entries.delete(key);
    await this.save();
    await fsp.rm(path.join(this.root, e.dir), { recursive: true, force: true });
    this.log.info(
      { event: EVENT.AGENT_CACHE_ENTRY_REMOVED, plugin_id: e.pluginId, version: e.version, reason: why },
      "cache entry removed",
    );
  }

  private async load(): Promise<void> {
    let raw: string;
    try {
      raw = await fsp.readFile(path.join(this.root, "index.json"), "utf8");
    } catch {
      return; // a new cache
    }
    try {
      const idx = JSON.parse(raw) as IndexFile;
      if (idx.version !== 1 || typeof idx.entries !== "object") throw new Error("unknown index version");
      for (const [k, e] of Object.entries(idx.entries)) this.entries.set(k, e);
    } catch (err) {
      // The index is written atomically, so this is damage from outside: start empty, keep the evidence.
      this.log.warn(
        { event: EVENT.AGENT_CACHE_INDEX_UNREADABLE, err },
        "cache index unreadable; moving it to quarantine and starting empty",
      );
      await fsp.rename(path.join(this.root, "index.json"), path.join(this.root, "quarantine", `index-${Date.now()}.json`));
    }
  }

  /** Drops index entries whose directory vanished and directories no entry names. */
  private async sweep(): Promise<void> {
    let changed = false;
    for (const [k, e] of this.entries) {
      if (!fs.existsSync(path.join(this.root, e.dir, "manifest.json"))) {
        this.entries.delete(k);
        changed = true;
      }
    }
    if (changed) await this.save();
    const listed = new Set(this.list().map((e) => e.dir));
    for (const top of ["downloaded", "builtin"]) {
      for (const ns of await fsp.readdir(path.join(this.root, top), { withFileTypes: true })) {
        if (!ns.isDirectory()) continue;
        for (const d of await fsp.readdir(path.join(this.root, top, ns.name), { withFileTypes: true })) {
          const rel = path.join(top, ns.name, d.name);
          // Only directories are installs; files (built-in tarballs and their release files) stay.
          if (!d.isDirectory() || listed.has(rel)) continue;
          this.log.warn({ event: EVENT.AGENT_CACHE_SWEPT, dir: rel }, "removing unlisted cache directory (interrupted install)");
          await fsp.rm(path.join(this.root, rel), { recursive: true, force: true });
        }
      }
    }
    // Extraction dirs from an interrupted install; partial downloads stay for resume.
    for (const d of await fsp.readdir(this.tempDir))
      if (d !== "downloads") await fsp.rm(path.join(this.tempDir, d), { recursive: true, force: true });
  }

  private saving: Promise<void> = Promise.resolve();

  /** Saves are chained: concurrent installs must not interleave their temp-file writes. */
  private save(): Promise<void> {
    const next = this.saving.then(() => this.writeIndex());
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async writeIndex(): Promise<void> {
    const file = path.join(this.root, "index.json");
    const tmp = `${file}.tmp`;
    const body: IndexFile = { version: 1, entries: Object.fromEntries(this.entries) };
    const fh = await fsp.open(tmp, "w", 0o600);
    try {
      await fh.writeFile(JSON.stringify(body, null, 2));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    await fsyncDir(this.root);
  }
}

async function makeReadOnly(dir: string): Promise<void> {
  for (const ent of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(ent.parentPath, ent.name);
    if (ent.isFile()) {
      const st = await fsp.stat(p);
      await fsp.chmod(p, st.mode & 0o111 ? 0o555 : 0o444);
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * One agent per cache directory: a second one would sweep the first one's installs. The lock
 * file holds the owner's pid; a lock whose process is gone (kill -9) is taken over.
 */
function acquireLock(root: string): void {
  const file = path.join(root, ".lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      process.once("exit", () => {
        try {
          if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.rmSync(file);
        } catch {
          // already gone
        }
      });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const owner = Number.parseInt(fs.readFileSync(file, "utf8"), 10);
      if (owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new ArcadeError(
          ErrorCode.CONFIG_INVALID,
          `plugin cache ${root} is in use by another agent (pid ${owner}): give each agent its own plugins.directory (to re-verify a running agent's cache, send it SIGHUP)`,
        );
      }
      fs.rmSync(file, { force: true }); // stale: its owner died without cleaning up
    }
  }
  throw new ArcadeError(ErrorCode.CONFIG_INVALID, `could not lock plugin cache ${root}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
