// Builds tarballs byte by byte, so tests can produce archives that no well-behaved packer would.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header, Pax, type types } from "tar";

export interface RawEntry {
  path: string;
  type?: types.EntryTypeName;
  mode?: number;
  body?: Buffer | string;
  /** Declared size when it should differ from the body (e.g. truncated archives). */
  size?: number;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
}

export function rawTar(entries: RawEntry[], { end = true } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? "File";
    const body = Buffer.from(e.body ?? "");
    const size = e.size ?? (type === "File" ? body.length : 0);
    const h = new Header({
      path: e.path,
      type,
      mode: e.mode ?? (type === "Directory" ? 0o755 : 0o644),
      size,
      mtime: new Date("2001-02-03T04:05:06Z"),
      uid: 12345,
      gid: 12345,
      linkpath: e.linkpath,
      devmaj: e.devmaj ?? 0,
      devmin: e.devmin ?? 0,
    });
    if (h.encode()) blocks.push(new Pax({ path: e.path, size, linkpath: e.linkpath }).encode());
    blocks.push(h.block!);
    if (body.length > 0) blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  if (end) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export const tgz = (entries: RawEntry[]): Buffer => gzipSync(rawTar(entries));

export const validManifest = (over: Record<string, unknown> = {}) => ({
  schemaVersion: 1,
  id: "notify/slack",
  version: "1.2.0",
  entry: "dist/index.js",
  runtime: "node",
  stages: ["after", "on_failure"],
  permissions: { network: true, env: ["SLACK_TOKEN"] },
  description: "Posts the job result to Slack",
  ...over,
});

export async function withTmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "arcade-signing-test-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
