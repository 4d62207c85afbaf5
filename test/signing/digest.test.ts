import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HashCounter, isSha256Hex, sha256File } from "../../signing/digest.js";
import { withTmp } from "./tar-helpers.js";

describe("digest", () => {
  it("hashes a multi-chunk file and an empty one", async () => {
    await withTmp(async (tmp) => {
      const bytes = randomBytes(700_001);
      await writeFile(join(tmp, "f"), bytes);
      await writeFile(join(tmp, "empty"), "");
      expect(await sha256File(join(tmp, "f"))).toEqual({ sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length });
      expect((await sha256File(join(tmp, "empty"))).sha256).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    });
  });

  it("HashCounter counts, digests idempotently and refuses updates after digest", () => {
    const h = new HashCounter().update(Buffer.from("ab")).update(new Uint8Array([0x63]));
    expect(h.size).toBe(3);
    expect(h.digest()).toBe(createHash("sha256").update("abc").digest("hex"));
    expect(h.digest()).toBe(h.digest());
    expect(() => h.update(Buffer.from("d"))).toThrow(/after digest/);
  });

  it("isSha256Hex accepts only 64 lowercase hex characters", () => {
    expect(isSha256Hex("a".repeat(64))).toBe(true);
    for (const bad of ["A".repeat(64), "a".repeat(63), "a".repeat(65), `${"a".repeat(63)}g`, 42, undefined])
      expect(isSha256Hex(bad)).toBe(false);
  });
});
