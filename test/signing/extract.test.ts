import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { createGzip, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ArcadeError } from "../../signing/errors.js";
import { safeExtract, type ExtractLimits } from "../../signing/extract.js";
import { rawTar, tgz, validManifest, withTmp, type RawEntry } from "./tar-helpers.js";

const MANIFEST: RawEntry = { path: "manifest.json", body: JSON.stringify(validManifest()) };

/**
 * Extracts `archive` into <tmp>/parent/dest and expects `code`; then checks that neither dest
 * nor anything around it holds a trace of the archive.
 */
async function expectRefused(archive: Buffer, code: string, limits: Partial<ExtractLimits> = {}): Promise<ArcadeError> {
  return withTmp(async (tmp) => {
    const dest = join(tmp, "parent/dest");
    await mkdir(dest, { recursive: true });
    await writeFile(join(tmp, "p.tgz"), archive);
    const err = await safeExtract(join(tmp, "p.tgz"), dest, limits).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ArcadeError);
    expect((err as ArcadeError).code).toBe(code);
    expect(await readdir(dest)).toEqual([]);
    expect((await readdir(join(tmp, "parent"))).sort()).toEqual(["dest"]);
    expect((await readdir(tmp)).sort()).toEqual(["p.tgz", "parent"]);
    return err as ArcadeError;
  });
}

describe("safeExtract refuses hostile archives and leaves nothing behind", () => {
  it.each<[string, RawEntry[]]>([
    ["parent traversal", [MANIFEST, { path: "../x", body: "pwned" }]],
    ["traversal via a subdirectory", [MANIFEST, { path: "a/../../x", body: "pwned" }]],
    ["hidden traversal", [MANIFEST, { path: "a/./../../../x", body: "pwned" }]],
    ["absolute path", [MANIFEST, { path: "/tmp/arcade-abs-path.txt", body: "pwned" }]],
    ["windows drive path", [MANIFEST, { path: "C:/x.txt", body: "pwned" }]],
    ["backslash path", [MANIFEST, { path: "a\\..\\..\\x", body: "pwned" }]],
    ["symlink", [MANIFEST, { path: "lnk", type: "SymbolicLink", linkpath: "/etc" }]],
    ["relative symlink", [MANIFEST, { path: "lnk", type: "SymbolicLink", linkpath: "dist/index.js" }]],
    ["hardlink", [MANIFEST, { path: "hl", type: "Link", linkpath: "manifest.json" }]],
    ["character device", [MANIFEST, { path: "null", type: "CharacterDevice", devmaj: 1, devmin: 3 }]],
    ["block device", [MANIFEST, { path: "sda", type: "BlockDevice", devmaj: 8, devmin: 0 }]],
    ["FIFO", [MANIFEST, { path: "pipe", type: "FIFO" }]],
    ["duplicate path", [MANIFEST, { path: "a.js", body: "1" }, { path: "./a.js", body: "2" }]],
    ["file used as a directory", [MANIFEST, { path: "a", body: "1" }, { path: "a/b", body: "2" }]],
    ["file at the root path", [MANIFEST, { path: "./", body: "x" }]],
    ["deep nesting", [MANIFEST, { path: `${"d/".repeat(20)}f.txt`, body: "deep" }]],
  ])("%s → ARCHIVE_UNSAFE", async (_name, entries) => {
    await expectRefused(tgz(entries), "ARCHIVE_UNSAFE");
  });

  it("removes files already written when a later entry is refused", async () => {
    await withTmp(async (tmp) => {
      const src = new PassThrough();
      const pending = safeExtract(src, tmp).catch((e: unknown) => e);
      const files = Array.from({ length: 20 }, (_, i) => ({ path: `dist/f${i}.js`, body: randomBytes(10_000) }));
      src.write(rawTar([MANIFEST, ...files], { end: false }));
      // wait until the good files are on disk, so the refusal has a partial tree to clean up
      let written = 0;
      for (let i = 0; i < 100 && written < 20; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const [temp] = await readdir(tmp);
        written = temp ? (await readdir(join(tmp, temp, "dist")).catch(() => [])).length : 0;
      }
      expect(written).toBe(20);
      src.end(rawTar([{ path: "../late", body: "pwned" }]));
      expect(await pending).toMatchObject({ code: "ARCHIVE_UNSAFE" });
      expect(await readdir(tmp)).toEqual([]);
    });
  });

  it("caps entries, depth and path length", async () => {
    const six = Array.from({ length: 6 }, (_, i) => ({ path: `f${i}`, body: "x" }));
    expect((await expectRefused(tgz(six), "ARCHIVE_UNSAFE", { maxEntries: 5 })).message).toMatch(/more than 5 entries/);
    await expectRefused(tgz([{ path: "a/b/c/d.txt", body: "x" }]), "ARCHIVE_UNSAFE", { maxDepth: 3 });
    await expectRefused(tgz([{ path: `${"p".repeat(200)}.txt`, body: "x" }]), "ARCHIVE_UNSAFE", { maxPathLength: 100 });
  });

  it("caps file and total sizes with SIZE_LIMIT", async () => {
    await expectRefused(tgz([MANIFEST, { path: "big.bin", body: Buffer.alloc(2000) }]), "SIZE_LIMIT", { maxFileBytes: 1000 });
    const two = [MANIFEST, { path: "a.bin", body: Buffer.alloc(800) }, { path: "b.bin", body: Buffer.alloc(800) }];
    await expectRefused(tgz(two), "SIZE_LIMIT", { maxFileBytes: 1000, maxTotalBytes: 1500 });
  });

  it("stops a gzip bomb by decompression ratio, and by declared size", async () => {
    const bomb = tgz([MANIFEST, { path: "zeros.bin", body: Buffer.alloc(50 * 1024 * 1024) }]);
    expect(bomb.length).toBeLessThan(200 * 1024);
    const started = Date.now();
    const err = await expectRefused(bomb, "SIZE_LIMIT", { maxDecompressionRatio: 100 });
    expect(err.message).toMatch(/decompression ratio/);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expectRefused(bomb, "SIZE_LIMIT", { maxTotalBytes: 1024 * 1024 });
    await expectRefused(bomb, "SIZE_LIMIT");
  });

  it("rejects garbage, truncated archives and invalid manifests", async () => {
    await expectRefused(Buffer.from("this is not a tarball at all, not even close".repeat(20)), "ARCHIVE_UNSAFE");
    await expectRefused(gzipSync(Buffer.from("not a tar inside the gzip ".repeat(40))), "ARCHIVE_UNSAFE");
    const truncated = rawTar([MANIFEST, { path: "big.bin", body: Buffer.alloc(4096, 1) }], { end: false }).subarray(0, 2048);
    await expectRefused(gzipSync(truncated), "ARCHIVE_UNSAFE");
    await expectRefused(tgz([{ path: "manifest.json", body: JSON.stringify(validManifest({ id: "BAD" })) }]), "MANIFEST_INVALID");
  });

  it("passes a source stream's ArcadeError through and cleans up", async () => {
    await withTmp(async (tmp) => {
      const src = new PassThrough();
      const pending = safeExtract(src, tmp);
      src.write(tgz([MANIFEST, { path: "a.bin", body: randomBytes(100_000) }]).subarray(0, 1000));
      // fail the source once extraction is under way (its temp dir exists), not after a guessed time
      for (let i = 0; i < 500 && (await readdir(tmp)).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      src.destroy(new ArcadeError("CHECKSUM_MISMATCH", "sha256 differs"));
      await expect(pending).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
      expect(await readdir(tmp)).toEqual([]);
    });
  });
});

describe("safeExtract on a good archive", () => {
  const good: RawEntry[] = [
    { path: "./", type: "Directory", mode: 0o777 },
    MANIFEST,
    { path: "dist/", type: "Directory", mode: 0o777 },
    { path: "dist/index.js", body: "export default 1;\n", mode: 0o666 },
    { path: "bin/run", body: "#!/bin/sh\n", mode: 0o4775 },
    { path: "bin/tool", body: "#!/bin/sh\n", mode: 0o6751 },
    { path: "nested/implicit/dir/file.txt", body: "hello", mode: 0o600 },
    { path: "sticky/", type: "Directory", mode: 0o1777 },
  ];

  it("extracts into a private temp dir with masked modes and reports counts", async () => {
    await withTmp(async (tmp) => {
      const r = await safeExtract(createReadStream(await write(tmp, "p.tgz", tgz(good))), tmp);
      expect(r.dir.startsWith(join(tmp, ".extract-"))).toBe(true);
      expect(r).toMatchObject({ files: 5, bytes: Buffer.byteLength(MANIFEST.body!) + 18 + 10 + 10 + 5 });
      expect(r.manifest?.id).toBe("notify/slack");
      const mode = async (p: string) => (await stat(join(r.dir, p))).mode & 0o7777;
      expect(await mode(".")).toBe(0o700);
      expect(await mode("dist")).toBe(0o755);
      expect(await mode("dist/index.js")).toBe(0o644);
      expect(await mode("bin/run")).toBe(0o755); // setuid cleared, not refused
      expect(await mode("bin/tool")).toBe(0o755);
      expect(await mode("nested/implicit")).toBe(0o755);
      expect(await mode("nested/implicit/dir/file.txt")).toBe(0o644);
      expect(await mode("sticky")).toBe(0o755);
      const st = await stat(join(r.dir, "dist/index.js"));
      expect(st.uid).toBe(process.getuid?.());
      expect(st.mtime.getUTCFullYear()).not.toBe(2001); // archive mtimes are not applied
      expect(await readFile(join(r.dir, "nested/implicit/dir/file.txt"), "utf8")).toBe("hello");
      expect((await readdir(tmp)).sort()).toEqual([r.dir.slice(tmp.length + 1), "p.tgz"].sort());
    });
  });

  it("accepts a plain (uncompressed) stream and archives without a manifest", async () => {
    await withTmp(async (tmp) => {
      const r = await safeExtract(Readable.from([rawTar([{ path: "only.txt", body: "x" }])]), tmp);
      expect(r).toMatchObject({ files: 1, bytes: 1 });
      expect("manifest" in r).toBe(false);
    });
  });

  it("streams large gzip input within the default limits", async () => {
    await withTmp(async (tmp) => {
      const gz = createGzip();
      const chunks: Buffer[] = [];
      gz.on("data", (c: Buffer) => chunks.push(c));
      const done = new Promise((res) => gz.on("end", res));
      const body = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4) body.writeUInt32LE((i * 2654435761) >>> 0, i);
      gz.end(rawTar([MANIFEST, { path: "data.bin", body }]));
      await done;
      const r = await safeExtract(await write(tmp, "big.tgz", Buffer.concat(chunks)), tmp);
      expect((await stat(join(r.dir, "data.bin"))).size).toBe(body.length);
    });
  });
});

async function write(dir: string, name: string, bytes: Buffer): Promise<string> {
  await writeFile(join(dir, name), bytes);
  return join(dir, name);
}
