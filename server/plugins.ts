// Publishing: an upload is hashed while it is written, checked against what the publisher
// declared and against the manifest inside it, and only then becomes an immutable version.
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { isSha256Hex } from "../signing/digest.js";
import { isValidPluginId, isValidVersion, pluginKey } from "../signing/manifest.js";
import { readManifestFromTarball } from "../signing/pack.js";
import type { BlobWriter } from "./blobstore.js";
import type { Db } from "./db/client.js";

export type PublishHeader = { pluginId: string; version: string; sha256: string; size: number };
export type PublishedRef = { pluginId: string; version: string; sha256: string; size: number };

export type PublishLimits = { maxPluginBytes: number; requireChecksum: boolean };

/** Step 1: the header alone, before any byte is accepted. */
export function checkPublishHeader(h: PublishHeader, limits: PublishLimits): void {
  if (!isValidPluginId(h.pluginId)) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `invalid plugin id ${JSON.stringify(h.pluginId)}: expected lowercase namespace/name`);
  }
  if (!isValidVersion(h.version)) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `invalid version ${JSON.stringify(h.version)}: expected semver such as 1.2.3`);
  }
  if (h.sha256 === "" && limits.requireChecksum) {
    throw new ArcadeError(
      ErrorCode.CHECKSUM_MISSING,
      "a SHA-256 checksum is required (plugin.require_checksum = true); the CLI computes it for you",
    );
  }
  if (h.sha256 !== "" && !isSha256Hex(h.sha256)) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "sha256 must be 64 lowercase hex characters");
  }
  if (h.size > limits.maxPluginBytes) {
    throw new ArcadeError(
      ErrorCode.SIZE_LIMIT,
      `plugin is ${h.size} bytes; the server's max_plugin_size is ${limits.maxPluginBytes} bytes`,
    );
  }
}

/** Step 2, after the last chunk: the bytes are what was declared. */
export function checkUploadedBytes(h: PublishHeader, w: BlobWriter): string {
  if (h.size !== 0 && w.size !== h.size) {
    throw new ArcadeError(
      ErrorCode.SIZE_MISMATCH,
      `declared ${h.size} bytes but received ${w.size}: the upload was cut short or the file changed`,
    );
  }
  const actual = w.digest();
  if (h.sha256 !== "" && actual !== h.sha256) {
    throw new ArcadeError(ErrorCode.CHECKSUM_MISMATCH, `declared sha256 ${h.sha256} but the uploaded bytes hash to ${actual}`, {
      declared: h.sha256,
      actual,
    });
  }
  return actual;
}

/** Step 3: the package names itself as the version being published (no mix-and-match). */
export async function checkInnerManifest(h: PublishHeader, w: BlobWriter): Promise<void> {
  const m = await readManifestFromTarball(w.tempPath);
  if (m.id !== h.pluginId || m.version !== h.version) {
    throw new ArcadeError(
      ErrorCode.MANIFEST_MISMATCH,
      `the tarball's manifest says ${pluginKey(m.id, m.version)} but it is being published as ${pluginKey(h.pluginId, h.version)}`,
    );
  }
}

/** Step 4: store the blob and record the version; an existing version must have the same bytes. */
export async function recordVersion(
  db: Db,
  h: PublishHeader,
  w: BlobWriter,
  sha256: string,
): Promise<{ ref: PublishedRef; created: boolean }> {
  const ref = { pluginId: h.pluginId, version: h.version, sha256, size: w.size };
  const existing = await db.plugin.findUnique({ where: { pluginId_version: { pluginId: h.pluginId, version: h.version } } });
  if (existing) {
    await w.abort();
    if (existing.sha256 !== sha256) throw immutable(h, existing.sha256);
    return { ref, created: false };
  }
  const key = await w.commit();
  try {
    await db.plugin.create({ data: { pluginId: h.pluginId, version: h.version, sha256, size: w.size, storageKey: key } });
  } catch (e) {
    // Lost a race with a concurrent publish of the same version: judge against the winner.
    const winner = await db.plugin.findUnique({ where: { pluginId_version: { pluginId: h.pluginId, version: h.version } } });
    if (!winner) throw e;
    if (winner.sha256 !== sha256) throw immutable(h, winner.sha256);
    return { ref, created: false };
  }
  return { ref, created: true };
}

function immutable(h: PublishHeader, stored: string): ArcadeError {
  return new ArcadeError(
    ErrorCode.VERSION_IMMUTABLE,
    `${pluginKey(h.pluginId, h.version)} is already published with sha256 ${stored}; versions are immutable: publish a new version`,
  );
}

export async function findPublished(db: Db, pluginId: string, version: string) {
  const p = await db.plugin.findUnique({ where: { pluginId_version: { pluginId, version } } });
  if (!p || p.yankedAt) throw new ArcadeError(ErrorCode.PLUGIN_NOT_FOUND, `${pluginKey(pluginId, version)} is not published`);
  return p;
}
