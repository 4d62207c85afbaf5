// Content-addressed blob storage behind a small interface (local filesystem now; an
// S3-compatible store later). Blobs are written to a temp file while being hashed, fsynced,
// and only then renamed to sha256/<2 hex>/<64 hex>: a reader never sees a partial blob, and
// the same bytes are stored once however many versions point at them.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { HashCounter, isSha256Hex } from "../signing/digest.js";

export interface BlobWriter {
  /** Appends bytes, waiting for the disk (backpressure). Throws SIZE_LIMIT past the cap. */
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes and digest written so far. */
  readonly size: number;
  digest(): string;
  /** Path of the temp file, readable before commit (e.g. to inspect the manifest). */
  readonly tempPath: string;
  /** Makes the blob visible under its digest. Returns its key. */
  commit(): Promise<string>;
  /** Removes the temp file; safe to call more than once and after commit. */
  abort(): Promise<void>;
}

export interface BlobStore {
  createWriter(maxBytes: number): Promise<BlobWriter>;
  /** Size on disk, or undefined when the blob is missing. */
  size(key: string): Promise<number | undefined>;
  openRead(key: string, highWaterMark: number): Readable;
}

export class LocalBlobStore implements BlobStore {
  constructor(private readonly root: string) {}

  async init(): Promise<void> {
    await fsp.mkdir(path.join(this.root, "tmp"), { recursive: true, mode: 0o700 });
    await fsp.mkdir(path.join(this.root, "sha256"), { recursive: true, mode: 0o755 });
    // Leftovers of uploads interrupted by a crash are never referenced: drop them.
    for (const f of await fsp.readdir(path.join(this.root, "tmp"))) await fsp.rm(path.join(this.root, "tmp", f), { force: true });
  }

  pathOf(key: string): string {
    if (!isSha256Hex(key)) throw new ArcadeError(ErrorCode.INTERNAL, `invalid blob key ${JSON.stringify(key)}`);
    return path.join(this.root, "sha256", key.slice(0, 2), key);
  }

  async createWriter(maxBytes: number): Promise<BlobWriter> {
    const tempPath = path.join(this.root, "tmp", `${Date.now()}-${randomBytes(8).toString("hex")}.part`);
    const handle = await fsp.open(tempPath, "wx", 0o600);
    const hash = new HashCounter();
    let closed = false;
    const close = async () => {
      if (!closed) {
        closed = true;
        await handle.close();
      }
    };
    return {
      tempPath,
      get size() {
        return hash.size;
      },
      digest: () => hash.digest(),
      write: async (chunk) => {
        if (hash.size + chunk.length > maxBytes) {
          throw new ArcadeError(ErrorCode.SIZE_LIMIT, `upload exceeds the server's max_plugin_size (${maxBytes} bytes)`, { maxBytes });
        }
        hash.update(chunk);
        await handle.write(chunk);
      },
      commit: async () => {
        await handle.sync();
        await close();
        const key = hash.digest();
        const dest = this.pathOf(key);
        await fsp.mkdir(path.dirname(dest), { recursive: true });
        // Same digest already stored: identical bytes, keep the existing file.
        if (fs.existsSync(dest)) await fsp.rm(tempPath, { force: true });
        else await fsp.rename(tempPath, dest);
        return key;
      },
      abort: async () => {
        await close().catch(() => {});
        await fsp.rm(tempPath, { force: true });
      },
    };
  }

  async size(key: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.pathOf(key))).size;
    } catch {
      return undefined;
    }
  }

  openRead(key: string, highWaterMark: number): Readable {
    return fs.createReadStream(this.pathOf(key), { highWaterMark });
  }
}
