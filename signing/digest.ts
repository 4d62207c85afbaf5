// SHA-256 is the identity of a tarball everywhere (blob key, signed statement, download check).
// Hashing is always streamed: tarballs may be hundreds of MiB and several run at once.

import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join, relative, sep } from "node:path";

const CHUNK = 256 * 1024;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(s: unknown): s is string {
  return typeof s === "string" && SHA256_HEX.test(s);
}

/** Hashes and counts bytes as they pass through an upload or download. */
export class HashCounter {
  #hash: Hash = createHash("sha256");
  #size = 0;
  #hex: string | undefined;

  update(buf: Uint8Array): this {
    // node's Hash throws on update after digest; say which mistake it was instead.
    if (this.#hex !== undefined) throw new Error("HashCounter.update() after digest()");
    this.#hash.update(buf);
    this.#size += buf.length;
    return this;
  }

  get size(): number {
    return this.#size;
  }

  /** Lowercase hex. Idempotent: node's Hash.digest() may only run once, callers may ask twice. */
  digest(): string {
    this.#hex ??= this.#hash.digest("hex");
    return this.#hex;
  }
}

export async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const counter = new HashCounter();
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
    counter.update(chunk as Buffer);
  }
  return { sha256: counter.digest(), size: counter.size };
}

/**
 * Digest of an extracted plugin tree: every directory and file by relative path, with each
 * file's executable bit and SHA-256, in sorted order. Recorded at install so the cache can be
 * re-verified later without keeping the tarball; any added, removed or changed file changes it.
 */
export async function treeDigest(root: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const abs = join(dir, name);
      const rel = relative(root, abs).split(sep).join("/");
      const st = await lstat(abs);
      if (st.isDirectory()) {
        lines.push(`d ${rel}`);
        await walk(abs);
      } else if (st.isFile()) {
        lines.push(`f ${rel} ${st.mode & 0o111 ? "x" : "-"} ${(await sha256File(abs)).sha256}`);
      } else {
        lines.push(`? ${rel}`); // never produced by safeExtract: its presence alone changes the digest
      }
    }
  };
  await walk(root);
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}
