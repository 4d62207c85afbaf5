// Publishing: an upload is hashed while it is written, checked against what the publisher
// declared and against the manifest inside it, and only then becomes an immutable version.
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { isSha256Hex } from "../signing/digest.js";
import { isValidPluginId, isValidVersion, pluginKey } from "../signing/manifest.js";
import { readManifestFromTarball } from "../signing/pack.js";
import type { Release as WireRelease } from "../proto/gen/arcade/v1/plugin.js";
import { describeSigner, verifyRelease, type Release, type TrustStore, type VerifiedRelease } from "../signing/release.js";
import { checkManifestMatchesStatement, checkStatementMatches } from "../signing/statement.js";
import type { BlobWriter } from "./blobstore.js";
import type { Db } from "./db/client.js";

export type PublishHeader = { pluginId: string; version: string; sha256: string; size: number; release?: WireRelease | undefined };
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

/**
 * Step 2, still before any byte is accepted: the release is signed by a publisher key this
 * server trusts, and its statement names this id@version (and the declared digest and size).
 */
export async function verifyPublishRelease(
  h: PublishHeader,
  trust: TrustStore,
  allowUnsigned: boolean,
): Promise<VerifiedRelease | undefined> {
  const r = h.release;
  if (!r || (r.statement.length === 0 && r.openpgpSignatures.length === 0 && r.sigstoreBundles.length === 0)) {
    if (allowUnsigned) return undefined;
    throw new ArcadeError(
      ErrorCode.SIGNATURE_MISSING,
      `${pluginKey(h.pluginId, h.version)} is not signed: run \`arcade plugin sign\` and publish again`,
    );
  }
  const verified = await verifyRelease(fromWireRelease(r), trust);
  checkStatementMatches(
    verified.statement,
    { id: h.pluginId, version: h.version, sha256: h.sha256 || undefined, size: h.size || undefined },
    "the upload",
  );
  return verified;
}

/** Step 3, after the last chunk: the bytes are what was declared. */
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

/** Step 4: the package names itself as the version being published (no mix-and-match). */
export async function checkInnerManifest(h: PublishHeader, w: BlobWriter, verified: VerifiedRelease | undefined): Promise<void> {
  if (verified) checkStatementMatches(verified.statement, { sha256: w.digest(), size: w.size }, "the upload");
  const m = await readManifestFromTarball(w.tempPath);
  if (verified) checkManifestMatchesStatement(m, verified.statement);
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
  verified: VerifiedRelease | undefined,
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
    await db.plugin.create({
      data: {
        pluginId: h.pluginId,
        version: h.version,
        sha256,
        size: w.size,
        storageKey: key,
        ...(verified && h.release ? releaseColumns(h.release, verified) : {}),
      },
    });
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

function releaseColumns(r: WireRelease, v: VerifiedRelease) {
  return {
    statement: Buffer.from(r.statement).toString("base64"),
    openpgpSignatures: JSON.stringify(r.openpgpSignatures.map((b) => Buffer.from(b).toString("base64"))),
    sigstoreBundles: JSON.stringify(r.sigstoreBundles),
    signers: JSON.stringify(v.signers.map(describeSigner)),
  };
}

/** The release as stored at publish time, for agents to verify themselves. */
export function storedRelease(p: { statement: string; openpgpSignatures: string; sigstoreBundles: string }): WireRelease {
  return {
    statement: Buffer.from(p.statement, "base64"),
    openpgpSignatures: (JSON.parse(p.openpgpSignatures) as string[]).map((b) => Buffer.from(b, "base64")),
    sigstoreBundles: JSON.parse(p.sigstoreBundles) as string[],
  };
}

function fromWireRelease(r: WireRelease): Release {
  return { statement: r.statement, openpgp: r.openpgpSignatures, sigstore: r.sigstoreBundles };
}
