// The release statement: the small document a publisher signs instead of the tarball. It binds
// the plugin's id and version to the tarball's bytes (sha256, size) and to its manifest, so a
// validly signed tarball cannot be served under another name or version (mix-and-match), and a
// key rotation only needs a new signature over a few hundred bytes, never a re-upload.
//
// The signed bytes are canonical JSON (sorted keys, no whitespace): a verifier refuses any other
// encoding, so one statement has exactly one byte form and a signature covers what is parsed.
import { createHash } from "node:crypto";
import { z } from "zod";
import { ArcadeError, ErrorCode } from "./errors.js";
import { isValidPluginId, isValidVersion, pluginKey, type PluginManifest } from "./manifest.js";

export const STATEMENT_TYPE = "https://arcade.dev/release-statement/v1";
export const MAX_STATEMENT_BYTES = 4096;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters");

const Schema = z.strictObject({
  _type: z.literal(STATEMENT_TYPE),
  id: z.string().refine(isValidPluginId, "must be a lowercase namespace/name plugin id"),
  version: z.string().refine(isValidVersion, "must be a semantic version such as 1.2.3"),
  sha256: sha256Hex,
  size: z.number().int().nonnegative(),
  manifestDigest: sha256Hex,
  publishedAt: z.iso.datetime(),
});

export type ReleaseStatement = z.output<typeof Schema>;

/** JSON with object keys sorted at every level and no insignificant whitespace. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** Digest of a manifest's meaning (after defaults), so whitespace or key order inside the file do not matter. */
export function manifestDigest(m: PluginManifest): string {
  return createHash("sha256").update(canonicalJson(m)).digest("hex");
}

export function buildStatement(o: { manifest: PluginManifest; sha256: string; size: number; publishedAt?: Date }): {
  statement: ReleaseStatement;
  bytes: Uint8Array;
} {
  const statement: ReleaseStatement = {
    _type: STATEMENT_TYPE,
    id: o.manifest.id,
    version: o.manifest.version,
    sha256: o.sha256,
    size: o.size,
    manifestDigest: manifestDigest(o.manifest),
    publishedAt: (o.publishedAt ?? new Date()).toISOString(),
  };
  return { statement, bytes: Buffer.from(canonicalJson(statement)) };
}

/** Parses statement bytes; call only on bytes whose signature has been verified. */
export function parseStatement(bytes: Uint8Array): ReleaseStatement {
  if (bytes.length === 0) throw invalid("the release statement is empty");
  if (bytes.length > MAX_STATEMENT_BYTES) throw invalid(`the release statement is larger than ${MAX_STATEMENT_BYTES} bytes`);
  const text = Buffer.from(bytes).toString("utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalid("the release statement is not JSON");
  }
  const r = Schema.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0]!;
    throw invalid(`the release statement's ${first.path.join(".") || "root"} ${first.message}`);
  }
  if (canonicalJson(r.data) !== text) throw invalid("the release statement is not in canonical form (sorted keys, no whitespace)");
  return r.data;
}

export type ExpectedRelease = { id?: string; version?: string; sha256?: string; size?: number };

/** The statement describes exactly the plugin expected: same name, same bytes. */
export function checkStatementMatches(st: ReleaseStatement, want: ExpectedRelease, what = "the plugin"): void {
  if ((want.id !== undefined && st.id !== want.id) || (want.version !== undefined && st.version !== want.version)) {
    throw new ArcadeError(
      ErrorCode.MANIFEST_MISMATCH,
      `the signed release statement is for ${pluginKey(st.id, st.version)}, not ${pluginKey(want.id ?? st.id, want.version ?? st.version)}`,
    );
  }
  if (want.sha256 !== undefined && st.sha256 !== want.sha256) {
    throw new ArcadeError(ErrorCode.CHECKSUM_MISMATCH, `${what} has sha256 ${want.sha256} but the signed statement says ${st.sha256}`);
  }
  if (want.size !== undefined && st.size !== want.size) {
    throw new ArcadeError(ErrorCode.SIZE_MISMATCH, `${what} is ${want.size} bytes but the signed statement says ${st.size}`);
  }
}

/** After extraction: the package's own manifest is the one the publisher signed. */
export function checkManifestMatchesStatement(m: PluginManifest | undefined, st: ReleaseStatement): void {
  if (!m)
    throw new ArcadeError(ErrorCode.MANIFEST_MISSING, `${pluginKey(st.id, st.version)}: the package has no manifest.json at its root`);
  if (m.id !== st.id || m.version !== st.version) {
    throw new ArcadeError(
      ErrorCode.MANIFEST_MISMATCH,
      `the package's manifest says ${pluginKey(m.id, m.version)} but its signed statement is for ${pluginKey(st.id, st.version)}`,
    );
  }
  if (manifestDigest(m) !== st.manifestDigest) {
    throw new ArcadeError(
      ErrorCode.MANIFEST_MISMATCH,
      `${pluginKey(st.id, st.version)}: the package's manifest differs from the one the publisher signed`,
    );
  }
}

function invalid(msg: string): ArcadeError {
  return new ArcadeError(ErrorCode.STATEMENT_INVALID, msg);
}
