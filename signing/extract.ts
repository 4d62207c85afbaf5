// Extracting a plugin tarball. node-tar's defaults are not enough for archives from elsewhere
// (see notes/signing-and-tar.md §3): as root it keeps owners and setuid bits, it has no entry or
// size caps, and strict mode leaves partial files behind. Everything is extracted into a fresh
// private directory that is deleted on any failure, so callers only ever see a whole tree.

import { createReadStream } from "node:fs";
import { chmod, lstat, mkdtemp, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Unpack, type Parser } from "tar";
import { ArcadeError, ErrorCode } from "./errors.js";
import { MAX_MANIFEST_BYTES, parseManifestBytes, type PluginManifest } from "./manifest.js";

export interface ExtractLimits {
  maxEntries: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxDepth: number;
  /** Decompressed/compressed bytes; node-tar aborts once the running ratio exceeds it. */
  maxDecompressionRatio: number;
  maxPathLength: number;
}

export const DEFAULT_EXTRACT_LIMITS: Readonly<ExtractLimits> = Object.freeze({
  maxEntries: 10_000,
  maxFileBytes: 256 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
  maxDepth: 16,
  maxDecompressionRatio: 200,
  maxPathLength: 4096,
});

export const READ_CHUNK = 64 * 1024;

const REGULAR = new Set(["File", "OldFile", "ContiguousFile"]);

/** What the guard needs of an entry: a tar ReadEntry, or a file the packer is about to add. */
export interface EntryInfo {
  type: string;
  size: number;
  mode?: number | undefined;
}

const unsafe = (message: string) => new ArcadeError(ErrorCode.ARCHIVE_UNSAFE, message);

/**
 * Judges entries in archive order. Shared by safeExtract, readManifestFromTarball and packPlugin,
 * so the server refuses at publish time (and the packer at pack time) what agents refuse.
 */
export class EntryGuard {
  entries = 0;
  bytes = 0;
  readonly #seen = new Set<string>();
  constructor(readonly limits: ExtractLimits) {}

  /** The canonical relative path ("" for the archive root itself), or the violation. */
  check(rawPath: string, e: EntryInfo): string | ArcadeError {
    const shown = JSON.stringify(rawPath.slice(0, 200));
    if (++this.entries > this.limits.maxEntries) return unsafe(`more than ${this.limits.maxEntries} entries`);
    if (Buffer.byteLength(rawPath) > this.limits.maxPathLength)
      return unsafe(`path longer than ${this.limits.maxPathLength} bytes: ${shown}`);
    // Backslashes and drive letters are separators/roots on Windows: never produced by packPlugin.
    if (rawPath.startsWith("/") || /^[A-Za-z]:/.test(rawPath) || /[\\\0]/.test(rawPath)) return unsafe(`unsafe path ${shown}`);
    const segments = rawPath.split("/").filter((s) => s !== "" && s !== ".");
    if (segments.includes("..")) return unsafe(`path escapes the package: ${shown}`);
    if (segments.length > this.limits.maxDepth) return unsafe(`nested deeper than ${this.limits.maxDepth}: ${shown}`);
    const path = segments.join("/");
    const isFile = REGULAR.has(e.type);
    if (!isFile && e.type !== "Directory") return unsafe(`${e.type} entries are not allowed: ${shown}`);
    if (path === "") return isFile ? unsafe(`file entry for the package root: ${shown}`) : "";
    // Two entries for one path would let the copy the server inspected differ from the one run.
    if (this.#seen.has(path)) return unsafe(`duplicate entry ${shown}`);
    this.#seen.add(path);
    if (isFile) {
      if (e.size > this.limits.maxFileBytes) {
        return new ArcadeError(ErrorCode.SIZE_LIMIT, `${shown} is ${e.size} bytes; the limit is ${this.limits.maxFileBytes}`);
      }
      this.bytes += e.size;
      if (this.bytes > this.limits.maxTotalBytes) {
        return new ArcadeError(ErrorCode.SIZE_LIMIT, `package contents exceed ${this.limits.maxTotalBytes} bytes`);
      }
    }
    e.mode = normalMode(isFile, e.mode ?? 0);
    return path;
  }
}

/** 0755 for directories and anything executable, else 0644: no setuid/sticky, no shared write. */
export function normalMode(isFile: boolean, mode: number): number {
  return !isFile || mode & 0o111 ? 0o755 : 0o644;
}

/** Any failure as an ArcadeError: ours unchanged (e.g. a checksum error from the source stream). */
export function toArchiveError(err: unknown, what: string): ArcadeError {
  if (err instanceof ArcadeError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "ENOSPC" || e?.code === "EDQUOT") {
    return new ArcadeError(ErrorCode.DISK_FULL, `no space left while extracting ${what}`, {}, { cause: err });
  }
  const message = e instanceof Error ? e.message : String(err);
  const code = /decompression ratio/.test(message) ? ErrorCode.SIZE_LIMIT : ErrorCode.ARCHIVE_UNSAFE;
  return new ArcadeError(code, `${what} is not a safe plugin archive: ${message}`, {}, { cause: err });
}

export function destroySource(src: NodeJS.ReadableStream, err: Error): void {
  const d = (src as { destroy?: (e?: Error) => void }).destroy;
  if (typeof d === "function") d.call(src, err);
}

/**
 * Pipes `src` into a tar Parser/Unpack and settles once the parser has ended (for Unpack: every
 * file written and closed). node-tar parsers are not node streams, so stream.pipeline is avoided.
 */
export function drive(src: NodeJS.ReadableStream, sink: Parser): Promise<void> {
  return new Promise((resolve, reject) => {
    let ended = false;
    const fail = (err: unknown) => {
      destroySource(src, err instanceof Error ? err : new Error(String(err)));
      reject(err);
    };
    src.on("error", fail);
    src.on("end", () => (ended = true));
    src.on("close", () => ended || fail(new Error("source stream closed before its end")));
    sink.on("error", fail);
    sink.on("end", () => resolve());
    src.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

/** Renamed away first, so late writes from an aborted Unpack cannot land in what rm just walked. */
async function discard(dir: string): Promise<void> {
  const trash = `${dir}.discard`;
  const target = await rename(dir, trash).then(
    () => trash,
    () => dir,
  );
  await rm(target, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
}

/** Checks what actually landed on disk and makes modes exact whatever the process umask is. */
async function audit(root: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const dirs = [root];
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    for (const name of await readdir(dir)) {
      const abs = join(dir, name);
      const st = await lstat(abs);
      if (st.isDirectory()) dirs.push(abs);
      else if (st.isFile()) {
        files += 1;
        bytes += st.size;
      } else throw unsafe(`unexpected ${abs.slice(root.length + 1)} after extraction`);
      await chmod(abs, normalMode(st.isFile(), st.mode));
    }
  }
  return { files, bytes };
}

async function readExtractedManifest(dir: string): Promise<PluginManifest | undefined> {
  const file = join(dir, "manifest.json");
  const st = await lstat(file).catch(() => undefined);
  if (!st) return undefined;
  if (!st.isFile()) throw new ArcadeError(ErrorCode.MANIFEST_INVALID, "manifest.json: is not a regular file");
  if (st.size > MAX_MANIFEST_BYTES) {
    throw new ArcadeError(ErrorCode.MANIFEST_INVALID, `manifest.json: is ${st.size} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
  }
  return parseManifestBytes(await readFile(file));
}

/**
 * Extracts a (gzipped) plugin tarball into a new 0700 directory under destParent, which the
 * caller renames into place. Throws ArcadeError ARCHIVE_UNSAFE, SIZE_LIMIT, DISK_FULL,
 * MANIFEST_INVALID (a root manifest.json that does not parse), or any ArcadeError the source
 * stream fails with; in every case nothing is left under destParent.
 */
export async function safeExtract(
  source: string | NodeJS.ReadableStream,
  destParent: string,
  limits: Partial<ExtractLimits> = {},
): Promise<{ dir: string; files: number; bytes: number; manifest?: PluginManifest }> {
  const lim: ExtractLimits = { ...DEFAULT_EXTRACT_LIMITS, ...limits };
  const what = typeof source === "string" ? source : "the plugin archive";
  const dir = await mkdtemp(join(destParent, ".extract-"));
  let src: NodeJS.ReadableStream | undefined;
  let violation: ArcadeError | undefined;
  try {
    src = typeof source === "string" ? createReadStream(source, { highWaterMark: READ_CHUNK }) : source;
    const guard = new EntryGuard(lim);
    const unpack: Unpack = new Unpack({
      cwd: dir,
      strict: true,
      preserveOwner: false,
      noMtime: true,
      maxDepth: lim.maxDepth,
      maxDecompressionRatio: lim.maxDecompressionRatio,
      // Never throw here: node-tar calls filters outside any promise, so a throw kills the process.
      filter: (path, entry) => {
        if (violation) return false;
        const verdict = guard.check(path, entry as EntryInfo);
        if (typeof verdict === "string") return verdict !== "";
        violation = verdict;
        unpack.abort(verdict);
        if (src) destroySource(src, verdict);
        return false;
      },
    });
    await drive(src, unpack);
    if (violation) throw violation;
    const { files, bytes } = await audit(dir);
    const manifest = await readExtractedManifest(dir);
    return manifest ? { dir, files, bytes, manifest } : { dir, files, bytes };
  } catch (err) {
    if (src) destroySource(src, err instanceof Error ? err : new Error(String(err)));
    await discard(dir);
    throw toArchiveError(violation ?? err, what);
  }
}
