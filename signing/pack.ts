// Building plugin tarballs, and reading the manifest out of one without extracting it.
//
// The tar stream is written here from node-tar's Header/Pax encoders rather than with tar.c():
// tar.c() treats file names starting with "@" as archives to splice in, turns files that share
// an inode (pnpm stores) into hardlink entries that agents refuse, orders directory listings
// as the filesystem returns them, and its `portable` mode keeps modes like 0600. Here the bytes
// depend only on paths, contents and the executable bit, for a given Node/zlib version.

import { randomBytes } from "node:crypto";
import { constants, createReadStream, createWriteStream } from "node:fs";
import { lstat, open, readdir, readFile, realpath, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { Header, Parser, Pax, type ReadEntry } from "tar";
import { HashCounter } from "./digest.js";
import { ArcadeError, ErrorCode } from "./errors.js";
import {
  DEFAULT_EXTRACT_LIMITS,
  READ_CHUNK,
  EntryGuard,
  destroySource,
  drive,
  normalMode,
  toArchiveError,
  type EntryInfo,
  type ExtractLimits,
} from "./extract.js";
import { MAX_MANIFEST_BYTES, parseManifestBytes, type PluginManifest } from "./manifest.js";

/** Fixed so that rebuilding from a fresh checkout gives the same bytes (and the same sha256). */
const MTIME = new Date("2000-01-01T00:00:00Z");

// Never packed: VCS metadata (large, and remotes can embed credentials), Finder litter, and
// npm's caches and `.bin` symlink farms under node_modules (a plugin runs through `entry`, and
// the symlinks would otherwise make any package with dependencies unpackable).
const SKIP_ANYWHERE = new Set([".git", ".hg", ".svn", ".DS_Store"]);
const SKIP_IN_NODE_MODULES = new Set([".cache", ".bin"]);
// Dotfiles at the package root are skipped too: that is where .env, .npmrc and CI/editor config
// live. Nested dotfiles are kept (dependencies may need them at run time).
function skipped(parentRel: string, name: string): boolean {
  if (SKIP_ANYWHERE.has(name) || (parentRel === "" && name.startsWith("."))) return true;
  return SKIP_IN_NODE_MODULES.has(name) && basename(parentRel) === "node_modules";
}

interface PackEntry {
  rel: string;
  abs: string;
  dir: boolean;
}

async function collect(root: string, exclude: string, guard: EntryGuard): Promise<PackEntry[]> {
  const out: PackEntry[] = [];
  const pending = [""];
  for (let rel = pending.pop(); rel !== undefined; rel = pending.pop()) {
    for (const name of await readdir(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(root, r);
      if (skipped(rel, name) || abs === exclude) continue;
      const st = await lstat(abs);
      if (st.isSymbolicLink()) {
        throw new ArcadeError(ErrorCode.ARCHIVE_UNSAFE, `${r} is a symbolic link: plugins may only contain regular files and directories`);
      }
      if (!st.isFile() && !st.isDirectory()) {
        throw new ArcadeError(ErrorCode.ARCHIVE_UNSAFE, `${r} is not a regular file or directory`);
      }
      // The agents' limits, checked now so a package that cannot be installed is never built.
      const verdict = guard.check(r, { type: st.isFile() ? "File" : "Directory", size: st.size });
      if (verdict instanceof ArcadeError) throw verdict;
      out.push({ rel: r, abs, dir: st.isDirectory() });
      if (st.isDirectory()) pending.push(r);
    }
  }
  // manifest.json first lets readers find it early; the rest in code-unit order, never readdir's.
  const key = (e: PackEntry) => (e.rel === "manifest.json" ? "" : e.rel);
  return out.sort((a, b) => (key(a) < key(b) ? -1 : 1));
}

function headerBlocks(path: string, type: "File" | "Directory", mode: number, size: number): Buffer[] {
  const h = new Header({ path, type, mode, size, mtime: MTIME, uid: 0, gid: 0, uname: "", gname: "" });
  const needPax = h.encode();
  if (!h.block) throw new ArcadeError(ErrorCode.INTERNAL, `tar header for ${path} was not encoded`);
  // Long or non-ASCII paths go in a pax record; its own fields are fixed too.
  return needPax ? [new Pax({ path, mtime: MTIME, size }).encode(), h.block] : [h.block];
}

async function* tarStream(entries: PackEntry[]): AsyncGenerator<Buffer> {
  for (const e of entries) {
    if (e.dir) {
      yield* headerBlocks(`${e.rel}/`, "Directory", 0o755, 0);
      continue;
    }
    // O_NOFOLLOW and fstat: the file written is the one checked, even if swapped meanwhile.
    const fh = await open(e.abs, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ArcadeError(ErrorCode.ARCHIVE_UNSAFE, `${e.rel} is not a regular file`);
      yield* headerBlocks(e.rel, "File", normalMode(true, st.mode), st.size);
      for (let pos = 0; pos < st.size;) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, st.size - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
      const after = await fh.stat();
      if (after.size !== st.size || after.mtimeMs !== st.mtimeMs) {
        throw new ArcadeError(ErrorCode.ARCHIVE_UNSAFE, `${e.rel} changed while it was being packed`);
      }
      yield Buffer.alloc((512 - (st.size % 512)) % 512);
    } finally {
      await fh.close();
    }
  }
  yield Buffer.alloc(1024);
}

/** Hashes the gzip output and sets its OS byte to "unknown", as minizlib's portable mode does. */
function portableGzipTail(counter: HashCounter): Transform {
  let first = true;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (first && chunk.length >= 10) chunk[9] = 0xff;
      first = false;
      counter.update(chunk);
      cb(null, chunk);
    },
  });
}

/** Packs `dir` into a reproducible gzip tarball at `outFile` (written beside it, then renamed). */
export async function packPlugin(dir: string, outFile: string): Promise<{ manifest: PluginManifest; sha256: string; size: number }> {
  const root = await realpath(dir).catch(() => "");
  if (!root || !(await stat(root)).isDirectory()) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${dir} is not a directory`);
  const out = resolve(outFile);
  const exclude = join(await realpath(dirname(out)), basename(out));

  const mst = await lstat(join(root, "manifest.json")).catch(() => undefined);
  if (!mst) throw new ArcadeError(ErrorCode.MANIFEST_MISSING, `${dir} has no manifest.json`);
  if (!mst.isFile()) throw new ArcadeError(ErrorCode.MANIFEST_INVALID, "manifest.json: is not a regular file");
  if (mst.size > MAX_MANIFEST_BYTES) {
    throw new ArcadeError(ErrorCode.MANIFEST_INVALID, `manifest.json: is ${mst.size} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
  }
  const declared = parseManifestBytes(await readFile(join(root, "manifest.json")));
  const entries = await collect(root, exclude, new EntryGuard({ ...DEFAULT_EXTRACT_LIMITS }));
  if (!entries.some((e) => !e.dir && e.rel === declared.entry)) {
    throw new ArcadeError(
      ErrorCode.MANIFEST_INVALID,
      `manifest.json: entry: ${declared.entry} is not a file in the package (or is excluded)`,
    );
  }

  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString("hex")}.tmp`);
  const counter = new HashCounter();
  let manifest: PluginManifest;
  try {
    await pipeline(
      Readable.from(tarStream(entries)),
      createGzip({ level: 9 }),
      portableGzipTail(counter),
      createWriteStream(tmp, { flags: "wx", mode: 0o644, flush: true }),
    );
    // Read back with the server's own reader (limits, compression ratio), and return the manifest
    // that was packed rather than the one read earlier, in case the file changed in between.
    manifest = await readManifestFromTarball(tmp);
    await rename(tmp, out);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return { manifest, sha256: counter.digest(), size: counter.size };
}

/**
 * The root manifest.json of a tarball, read without writing anything to disk. The whole archive
 * is still scanned with the extractor's rules, so a duplicate manifest or an entry that agents
 * would refuse fails here (ARCHIVE_UNSAFE / SIZE_LIMIT) rather than at install time.
 */
export async function readManifestFromTarball(file: string, limits: Partial<ExtractLimits> = {}): Promise<PluginManifest> {
  const lim: ExtractLimits = { ...DEFAULT_EXTRACT_LIMITS, ...limits };
  const guard = new EntryGuard(lim);
  const src = createReadStream(file, { highWaterMark: READ_CHUNK });
  const chunks: Buffer[] = [];
  let found = false;
  let violation: ArcadeError | undefined;
  const parser: Parser = new Parser({
    strict: true,
    maxDecompressionRatio: lim.maxDecompressionRatio,
    filter: (path, entry) => {
      if (violation) return false;
      const e = entry as ReadEntry;
      let verdict = guard.check(path, e as EntryInfo);
      if (verdict === "manifest.json") {
        if (e.type === "Directory") verdict = new ArcadeError(ErrorCode.MANIFEST_INVALID, "manifest.json: is not a regular file");
        else if (e.size > MAX_MANIFEST_BYTES) {
          verdict = new ArcadeError(ErrorCode.MANIFEST_INVALID, `manifest.json: is ${e.size} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
        } else return (found = true);
      }
      if (typeof verdict === "string") return false;
      violation = verdict;
      parser.abort(verdict);
      destroySource(src, verdict);
      return false;
    },
    onReadEntry: (entry) => {
      entry.on("data", (c: Buffer) => chunks.push(c));
    },
  });
  try {
    await drive(src, parser);
  } catch (err) {
    throw toArchiveError(violation ?? err, file);
  }
  if (!found) throw new ArcadeError(ErrorCode.MANIFEST_MISSING, `${file} has no manifest.json at its root`);
  return parseManifestBytes(Buffer.concat(chunks));
}
