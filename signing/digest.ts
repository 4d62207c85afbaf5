// SHA-256 is the identity of a tarball everywhere (blob key, signed statement, download check).
// Hashing is always streamed: tarballs may be hundreds of MiB and several run at once.

import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";

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
