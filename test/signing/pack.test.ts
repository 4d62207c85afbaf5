import { chmod, mkdir, readdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Header } from "tar";
import { describe, expect, it } from "vitest";
import { sha256File } from "../../signing/digest.js";
import { safeExtract } from "../../signing/extract.js";
import { packPlugin, readManifestFromTarball } from "../../signing/pack.js";
import { tgz, validManifest, withTmp } from "./tar-helpers.js";

async function makePlugin(dir: string): Promise<void> {
  await mkdir(join(dir, "dist/lib"), { recursive: true });
  await mkdir(join(dir, "node_modules/.cache/x"), { recursive: true });
  await mkdir(join(dir, ".git"), { recursive: true });
  await writeFile(join(dir, "manifest.json"), JSON.stringify(validManifest()));
  await writeFile(join(dir, "dist/index.js"), "export default async () => {}\n");
  await writeFile(join(dir, "dist/lib/@scoped.js"), "x".repeat(70_000));
  await writeFile(join(dir, "bin.sh"), "#!/bin/sh\n", { mode: 0o700 });
  await writeFile(join(dir, "aaa.txt"), "first by name, but manifest.json still leads\n");
  await writeFile(join(dir, ".env"), "SECRET=1\n");
  await writeFile(join(dir, ".git/config"), "[core]\n");
  await writeFile(join(dir, "node_modules/.cache/x/blob"), "cache\n");
}

/** Entry names in archive order, read straight from the ustar headers. */
function entryNames(tgzBytes: Buffer): string[] {
  const tar = gunzipSync(tgzBytes);
  const names: string[] = [];
  for (let off = 0; off + 512 <= tar.length;) {
    const h = new Header(tar, off);
    if (h.nullBlock) break;
    names.push(`${h.path}:${(h.mode ?? 0).toString(8)}:${h.uid}:${h.mtime?.toISOString()}`);
    off += 512 + Math.ceil((h.size ?? 0) / 512) * 512;
  }
  return names;
}

describe("packPlugin", () => {
  it("is reproducible across mtimes and group/other mode bits", async () => {
    await withTmp(async (tmp) => {
      const src = join(tmp, "src");
      await makePlugin(src);
      const a = await packPlugin(src, join(tmp, "a.tgz"));
      const b = await packPlugin(src, join(tmp, "b.tgz"));
      const later = new Date("2030-01-01T00:00:00Z");
      for (const f of ["manifest.json", "dist/index.js", "dist", "aaa.txt"]) await utimes(join(src, f), later, later);
      await chmod(join(src, "aaa.txt"), 0o600);
      await chmod(join(src, "bin.sh"), 0o775);
      const c = await packPlugin(src, join(tmp, "c.tgz"));
      expect(b.sha256).toBe(a.sha256);
      expect(c.sha256).toBe(a.sha256);
      expect(await sha256File(join(tmp, "c.tgz"))).toEqual({ sha256: a.sha256, size: a.size });
      expect(a.manifest.id).toBe("notify/slack");
      // nothing but the outputs: the temp files were renamed away
      expect((await readdir(tmp)).sort()).toEqual(["a.tgz", "b.tgz", "c.tgz", "src"]);
    });
  });

  it("puts manifest.json first, sorts the rest, normalizes modes and skips excluded files", async () => {
    await withTmp(async (tmp) => {
      await makePlugin(tmp);
      const out = join(tmp, "plugin.tgz");
      await packPlugin(tmp, out);
      // packing again into the package dir must not swallow the previous output
      await packPlugin(tmp, out);
      const bytes = await readFile(out);
      expect(bytes[9]).toBe(0xff); // gzip OS byte: "unknown", not the build host's
      expect(entryNames(bytes)).toEqual([
        "manifest.json:644:0:2000-01-01T00:00:00.000Z",
        "aaa.txt:644:0:2000-01-01T00:00:00.000Z",
        "bin.sh:755:0:2000-01-01T00:00:00.000Z",
        "dist/:755:0:2000-01-01T00:00:00.000Z",
        "dist/index.js:644:0:2000-01-01T00:00:00.000Z",
        "dist/lib/:755:0:2000-01-01T00:00:00.000Z",
        "dist/lib/@scoped.js:644:0:2000-01-01T00:00:00.000Z",
        "node_modules/:755:0:2000-01-01T00:00:00.000Z",
      ]);
    });
  });

  it("round-trips through safeExtract", async () => {
    await withTmp(async (tmp) => {
      await makePlugin(join(tmp, "src"));
      await mkdir(join(tmp, "dest"));
      await packPlugin(join(tmp, "src"), join(tmp, "p.tgz"));
      const r = await safeExtract(join(tmp, "p.tgz"), join(tmp, "dest"));
      expect(r.manifest?.id).toBe("notify/slack");
      expect(r.files).toBe(5);
      expect(await readFile(join(r.dir, "dist/lib/@scoped.js"), "utf8")).toBe("x".repeat(70_000));
    });
  });

  it("refuses symlinks inside the package and leaves no output", async () => {
    await withTmp(async (tmp) => {
      await makePlugin(join(tmp, "src"));
      await symlink("/etc/passwd", join(tmp, "src/dist/passwd"));
      await expect(packPlugin(join(tmp, "src"), join(tmp, "p.tgz"))).rejects.toMatchObject({ code: "ARCHIVE_UNSAFE" });
      expect(await readdir(tmp)).toEqual(["src"]);
    });
  });

  it("requires a valid manifest whose entry exists", async () => {
    await withTmp(async (tmp) => {
      await mkdir(join(tmp, "src"));
      await expect(packPlugin(join(tmp, "src"), join(tmp, "p.tgz"))).rejects.toMatchObject({ code: "MANIFEST_MISSING" });
      await writeFile(join(tmp, "src/manifest.json"), JSON.stringify(validManifest({ runtime: "python" })));
      await expect(packPlugin(join(tmp, "src"), join(tmp, "p.tgz"))).rejects.toMatchObject({ code: "MANIFEST_INVALID" });
      await writeFile(join(tmp, "src/manifest.json"), JSON.stringify(validManifest()));
      await expect(packPlugin(join(tmp, "src"), join(tmp, "p.tgz"))).rejects.toThrow(/entry: dist\/index\.js is not a file/);
      expect(await readdir(tmp)).toEqual(["src"]);
    });
  });
});

describe("readManifestFromTarball", () => {
  it("reads the manifest of a packed plugin", async () => {
    await withTmp(async (tmp) => {
      await makePlugin(join(tmp, "src"));
      await packPlugin(join(tmp, "src"), join(tmp, "p.tgz"));
      const m = await readManifestFromTarball(join(tmp, "p.tgz"));
      expect(m).toMatchObject({ id: "notify/slack", version: "1.2.0", permissions: { network: true, env: ["SLACK_TOKEN"], paths: [] } });
    });
  });

  it.each([
    ["MANIFEST_MISSING", [{ path: "index.js", body: "x" }]],
    ["MANIFEST_MISSING", [{ path: "sub/manifest.json", body: JSON.stringify(validManifest()) }]],
    ["MANIFEST_INVALID", [{ path: "manifest.json", body: "{not json" }]],
    ["MANIFEST_INVALID", [{ path: "manifest.json", body: JSON.stringify(validManifest({ extra: true })) }]],
    ["MANIFEST_INVALID", [{ path: "manifest.json", body: " ".repeat(65 * 1024) }]],
    [
      "ARCHIVE_UNSAFE",
      [
        { path: "manifest.json", body: JSON.stringify(validManifest()) },
        { path: "./manifest.json", body: "{}" },
      ],
    ],
    [
      "ARCHIVE_UNSAFE",
      [
        { path: "manifest.json", body: JSON.stringify(validManifest()) },
        { path: "x", type: "SymbolicLink" as const, linkpath: "/" },
      ],
    ],
  ])("reports %s", async (code, entries) => {
    await withTmp(async (tmp) => {
      await writeFile(join(tmp, "p.tgz"), tgz(entries));
      await expect(readManifestFromTarball(join(tmp, "p.tgz"))).rejects.toMatchObject({ code });
    });
  });

  it("accepts ./manifest.json and reports garbage as ARCHIVE_UNSAFE", async () => {
    await withTmp(async (tmp) => {
      await writeFile(join(tmp, "p.tgz"), tgz([{ path: "./manifest.json", body: JSON.stringify(validManifest()) }]));
      expect((await readManifestFromTarball(join(tmp, "p.tgz"))).id).toBe("notify/slack");
      await writeFile(join(tmp, "junk.tgz"), "definitely not a tarball");
      await expect(readManifestFromTarball(join(tmp, "junk.tgz"))).rejects.toMatchObject({ code: "ARCHIVE_UNSAFE" });
    });
  });
});
