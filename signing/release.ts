// A release: the statement bytes plus the signatures over them. Verification reads as its
// sequence of checks — signatures present → each signature verified against the verifier's
// own trust store → statement parsed (only now: its bytes are authentic) → Sigstore payloads
// bind the same statement. The caller then checks the statement against what it expects
// (checkStatementMatches) and, after extraction, against the package (checkManifestMatchesStatement).
import fsp from "node:fs/promises";
import type { PrivateKey, PublicKey } from "openpgp";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "./errors.js";
import { signDetached, verifyDetached } from "./openpgp.js";
import { createReleaseBundle, verifyReleaseBundle, type SigstoreKey, type SigstoreVerified } from "./sigstore.js";
import { buildStatement, canonicalJson, parseStatement, type ReleaseStatement } from "./statement.js";
import type { PluginManifest } from "./manifest.js";
import { pluginKey } from "./manifest.js";
import { releaseFiles, type Release } from "./release-files.js";

// Where a release lives beside its tarball, and reading it: in release-files.ts (no crypto, so
// commands that only read release files load no signing libraries).
export { readReleaseFiles, releaseFiles, type Release } from "./release-files.js";

/** The keys a verifier trusts: always its own, never keys that came with the release. */
export type TrustStore = { openpgp: PublicKey[]; sigstore: SigstoreKey[] };

export type ReleaseSigner =
  { kind: "openpgp"; fingerprint: string; userIds: string[]; signedAt: Date } | { kind: "sigstore"; hint: string };

export type VerifiedRelease = { statement: ReleaseStatement; signers: ReleaseSigner[] };

/** One line per signer for logs and listings: "openpgp:<fingerprint> <user id>" or "sigstore:<hint>". */
export function describeSigner(s: ReleaseSigner): string {
  return s.kind === "openpgp" ? `openpgp:${s.fingerprint}${s.userIds[0] ? ` ${s.userIds[0]}` : ""}` : `sigstore:${s.hint}`;
}

export async function verifyRelease(r: Release, trust: TrustStore): Promise<VerifiedRelease> {
  requireSignatures(r);
  const signers: ReleaseSigner[] = [];
  const unknown: ArcadeError[] = [];
  const bundles: SigstoreVerified[] = [];
  for (const sig of r.openpgp) {
    await collect(unknown, async () => {
      const s = await verifyDetached(r.statement, sig, trust.openpgp);
      signers.push({ kind: "openpgp", fingerprint: s.fingerprint, userIds: s.userIds, signedAt: s.signedAt });
    });
  }
  for (const bundle of r.sigstore) {
    await collect(unknown, async () => {
      const v = verifyReleaseBundle(bundle, trust.sigstore);
      bundles.push(v);
      signers.push({ kind: "sigstore", hint: v.hint });
    });
  }
  requireTrustedSigner(signers, unknown);
  const statement = parseStatement(r.statement);
  checkSigstoreBindings(bundles, statement);
  return { statement, signers };
}

/** Step 1: an unsigned release is refused, whatever else is right about it. */
function requireSignatures(r: Release): void {
  if (r.statement.length === 0)
    throw new ArcadeError(ErrorCode.SIGNATURE_MISSING, "the release has no signed statement: sign it with `arcade plugin sign`");
  if (r.openpgp.length + r.sigstore.length === 0) {
    throw new ArcadeError(ErrorCode.SIGNATURE_MISSING, "the release statement carries no signature: sign it with `arcade plugin sign`");
  }
}

/**
 * Step 2, per signature. A signature by a key this verifier does not know is set aside (a release
 * may be signed for several audiences); any other failure — a bad digest, a revoked or expired
 * key — fails the whole release: fail closed.
 */
async function collect(unknown: ArcadeError[], verify: () => Promise<void>): Promise<void> {
  try {
    await verify();
  } catch (e) {
    if (errorCodeOf(e) === ErrorCode.KEY_UNKNOWN) unknown.push(e as ArcadeError);
    else if (e instanceof ArcadeError) throw e;
    else throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, `signature check failed: ${errorMessageOf(e)}`);
  }
}

/** Step 3: at least one signature by a key in the verifier's own trust store. */
function requireTrustedSigner(signers: ReleaseSigner[], unknown: ArcadeError[]): void {
  if (signers.length > 0) return;
  throw new ArcadeError(
    ErrorCode.KEY_UNKNOWN,
    `no signature on this release is by a trusted key (${unknown.map((e) => e.message).join("; ")}); add the publisher's public key to the keyring if you trust it`,
  );
}

/** Step 4: a Sigstore bundle must sign this very statement and tarball, not another one. */
function checkSigstoreBindings(bundles: SigstoreVerified[], st: ReleaseStatement): void {
  for (const b of bundles) {
    const sameSubject = b.subject.sha256 === st.sha256 && b.subject.name === pluginKey(st.id, st.version);
    if (!sameSubject || canonicalJson(b.predicate) !== canonicalJson(st)) {
      throw new ArcadeError(
        ErrorCode.SIGNATURE_INVALID,
        `a Sigstore bundle signs a different statement than the one shipped with ${pluginKey(st.id, st.version)}`,
      );
    }
  }
}

// --- files beside a tarball ------------------------------------------------------------------

export type SignOptions = { openpgpKey?: PrivateKey; sigstore?: { privateKeyPem: string; hint: string }; publishedAt?: Date };

/** Writes the statement for a packed tarball and the requested signatures beside it. */
export async function signRelease(
  tgz: string,
  packed: { manifest: PluginManifest; sha256: string; size: number },
  o: SignOptions,
): Promise<{ statement: ReleaseStatement; files: string[] }> {
  if (!o.openpgpKey && !o.sigstore) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "give --key (OpenPGP) and/or --sigstore-key");
  const { statement, bytes } = buildStatement({ ...packed, publishedAt: o.publishedAt });
  const f = releaseFiles(tgz);
  const files = [f.statement];
  await fsp.writeFile(f.statement, bytes);
  // Signatures of an earlier statement would no longer match: never leave them beside a new one.
  await Promise.all([f.asc, f.sig, f.sigstore].map((p) => fsp.rm(p, { force: true })));
  if (o.openpgpKey) {
    await fsp.writeFile(f.asc, (await signDetached(bytes, o.openpgpKey)) as string);
    files.push(f.asc);
  }
  if (o.sigstore) {
    const bundle = createReleaseBundle({
      predicate: statement,
      subjectName: pluginKey(statement.id, statement.version),
      sha256: statement.sha256,
      privateKeyPem: o.sigstore.privateKeyPem,
      hint: o.sigstore.hint,
    });
    await fsp.writeFile(f.sigstore, bundle);
    files.push(f.sigstore);
  }
  return { statement, files };
}
