// Keyed Sigstore bundles for release statements, verified fully offline: no Fulcio certificate,
// no Rekor entry, no timestamp authority, just a publisher key named by a hint.
// The bundle is a DSSE envelope around an in-toto statement whose subject carries the tarball's
// SHA-256, so verifying never needs the tarball itself (a messageSignature bundle would); the
// caller compares the streamed digest of the download with `subject.sha256`.

import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { bundleFromJSON, isBundleWithDsseEnvelope, ValidationError, type Bundle, type BundleWithDsseEnvelope } from "@sigstore/bundle";
import { TrustedRoot } from "@sigstore/protobuf-specs";
import { toSignedEntity, toTrustMaterial, VerificationError, Verifier } from "@sigstore/verify";
import { isSha256Hex } from "./digest.js";
import { ArcadeError, ErrorCode, errorMessageOf } from "./errors.js";

export const IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1";
export const RELEASE_PREDICATE_TYPE = "https://arcade.dev/release-statement/v1";

export type SigstoreKey = { hint: string; publicKey: KeyObject };
export type SigstoreVerified = { hint: string; subject: { name: string; sha256: string }; predicate: unknown };

const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
const BUNDLE_V03_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json";
// A release statement bundle is about 1 KiB; refuse to parse megabytes of attacker JSON.
const MAX_BUNDLE_BYTES = 1 << 20;

// Nothing to trust but the publisher key: no CAs, logs or TSAs, so nothing is ever fetched.
const EMPTY_TRUSTED_ROOT = TrustedRoot.fromJSON({
  mediaType: "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
});

export function readSigstorePublicKey(pem: string, hint: string, source = `Sigstore key "${hint}"`): SigstoreKey {
  const bad = (why: string) => new ArcadeError(ErrorCode.KEYRING_INVALID, `${source}: ${why}`, { source, hint });
  const hintProblem = checkHint(hint);
  if (hintProblem) throw bad(hintProblem);
  // createPublicKey() happily derives a public key from a private one; a keyring holding private
  // key material is a leak to report, not something to paper over.
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) throw bad("is a private key; configure the publisher's public key instead");
  // Only SPKI: a certificate would carry validity and identity that this verifier ignores.
  if (!/^-----BEGIN PUBLIC KEY-----\r?$/m.test(pem)) throw bad('expected a PEM "PUBLIC KEY" (SPKI) block');
  const publicKey = orThrow(
    () => createPublicKey({ key: pem, format: "pem" }),
    (e) => bad(`unreadable public key (${errorMessageOf(e)})`),
  );
  const keyProblem = checkP256(publicKey, "public");
  if (keyProblem) throw bad(keyProblem);
  return { hint, publicKey };
}

export function generateSigstoreKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", {
    namedCurve: "P-256",
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

type ReleaseBundleInput = { predicate: object; subjectName: string; sha256: string; privateKeyPem: string; hint: string };

export function createReleaseBundle(o: ReleaseBundleInput): string {
  const invalid = (why: string) => new ArcadeError(ErrorCode.INVALID_ARGUMENT, `cannot create release bundle: ${why}`);
  if (!isSha256Hex(o.sha256)) throw invalid("sha256 must be 64 lowercase hex characters");
  if (o.subjectName === "") throw invalid("subject name is empty");
  if (!isPlainObject(o.predicate)) throw invalid("predicate must be a JSON object");
  const hintProblem = checkHint(o.hint);
  if (hintProblem) throw invalid(hintProblem);
  const privateKey = orThrow(
    () => createPrivateKey(o.privateKeyPem),
    (e) => new ArcadeError(ErrorCode.KEYRING_INVALID, `unreadable Sigstore signing key (${errorMessageOf(e)})`, { hint: o.hint }),
  );
  const keyProblem = checkP256(privateKey, "private");
  if (keyProblem) throw new ArcadeError(ErrorCode.KEYRING_INVALID, `Sigstore signing key ${keyProblem}`, { hint: o.hint });

  const statement = {
    _type: IN_TOTO_STATEMENT_V1,
    subject: [{ name: o.subjectName, digest: { sha256: o.sha256 } }],
    predicateType: RELEASE_PREDICATE_TYPE,
    predicate: o.predicate,
  };
  const payload = Buffer.from(JSON.stringify(statement), "utf8");
  const sig = sign("sha256", preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload), privateKey);
  const bundle = {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: o.hint }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: {
      payload: payload.toString("base64"),
      payloadType: IN_TOTO_PAYLOAD_TYPE,
      signatures: [{ sig: sig.toString("base64"), keyid: "" }],
    },
  };
  return `${JSON.stringify(bundle, null, 2)}\n`;
}

export function verifyReleaseBundle(bundleJson: string | Uint8Array, keys: SigstoreKey[]): SigstoreVerified {
  const bundle = parseBundle(bundleJson);
  const envelope = inTotoEnvelope(bundle);
  const hint = keyHint(bundle);
  const key = findKey(keys, hint);
  verifySignature(bundle, key);
  return { hint, ...parseReleaseStatement(envelope.payload) };
}

function parseBundle(input: string | Uint8Array): Bundle {
  const invalid = (why: string, cause?: unknown) =>
    new ArcadeError(ErrorCode.SIGNATURE_INVALID, `Sigstore bundle is malformed: ${why}`, {}, { cause });
  const size = typeof input === "string" ? Buffer.byteLength(input) : input.byteLength;
  if (size > MAX_BUNDLE_BYTES) throw invalid(`${size} bytes, more than the ${MAX_BUNDLE_BYTES} allowed`);
  if (Buffer.from(input).toString().trim() === "") throw new ArcadeError(ErrorCode.SIGNATURE_MISSING, "Sigstore bundle is empty");
  const json = orThrow(
    () => parseJson(input),
    (e) => invalid("not UTF-8 JSON", e),
  );
  return orThrow(
    () => bundleFromJSON(json),
    (e) => invalid(e instanceof ValidationError ? `${e.message}: ${e.fields.join(", ")}` : errorMessageOf(e), e),
  );
}

function inTotoEnvelope(bundle: Bundle): BundleWithDsseEnvelope["content"]["dsseEnvelope"] {
  if (!isBundleWithDsseEnvelope(bundle)) {
    throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, "Sigstore bundle holds a messageSignature, not a DSSE in-toto statement");
  }
  // Not echoed: it is attacker text and would land in logs.
  if (bundle.content.dsseEnvelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, `DSSE payload type is not ${IN_TOTO_PAYLOAD_TYPE}`);
  }
  return bundle.content.dsseEnvelope;
}

function keyHint(bundle: Bundle): string {
  const material = bundle.verificationMaterial.content;
  // Certificate (keyless) bundles would need Fulcio and Rekor roots; no keyring entry could make
  // one verify, so this is a bad signature rather than an unknown key.
  if (material.$case !== "publicKey") {
    throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, `Sigstore bundle names its signer by certificate; only keyed bundles are accepted`);
  }
  // A hint no keyring could hold is unknown, and is not repeated into messages and logs.
  if (checkHint(material.publicKey.hint)) throw new ArcadeError(ErrorCode.KEY_UNKNOWN, "Sigstore bundle has an invalid key hint");
  return material.publicKey.hint;
}

function findKey(keys: SigstoreKey[], hint: string): SigstoreKey {
  const found = keys.filter((k) => k.hint === hint);
  if (found.length === 0) throw new ArcadeError(ErrorCode.KEY_UNKNOWN, `no trusted Sigstore key has hint "${hint}"`, { hint });
  // Two keys under one hint make "which key signed this" unanswerable in logs and revocation.
  if (found.length > 1) throw new ArcadeError(ErrorCode.KEYRING_INVALID, `trusted Sigstore keys share hint "${hint}"`, { hint });
  const key = found[0]!;
  const problem = checkP256(key.publicKey, "public");
  if (problem) throw new ArcadeError(ErrorCode.KEYRING_INVALID, `trusted Sigstore key "${hint}" ${problem}`, { hint });
  return key;
}

function verifySignature(bundle: Bundle, key: SigstoreKey): void {
  // The key is already chosen by hint. With zero timestamps the library never asks validFor(), so
  // expiry and rotation are the keyring's job: drop a retired hint from it.
  const trust = toTrustMaterial(EMPTY_TRUSTED_ROOT, () => ({ publicKey: key.publicKey, validFor: () => true }));
  try {
    new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundle));
  } catch (e) {
    throw fromSigstoreError(e, key.hint);
  }
}

// Their errors never escape: callers, logs and metrics match on our codes only.
function fromSigstoreError(e: unknown, hint: string): ArcadeError {
  if (e instanceof VerificationError) {
    const details = { hint, sigstoreCode: e.code };
    if (e.code === "SIGNATURE_ERROR") {
      return new ArcadeError(ErrorCode.SIGNATURE_INVALID, `Sigstore signature does not verify with key "${hint}"`, details, { cause: e });
    }
    if (e.code === "PUBLIC_KEY_ERROR") {
      return new ArcadeError(ErrorCode.KEY_UNKNOWN, `Sigstore key "${hint}" was refused: ${e.message}`, details, { cause: e });
    }
    // TLOG_*, TIMESTAMP_ERROR, CERTIFICATE_ERROR: material an offline verifier has no roots for.
    return new ArcadeError(ErrorCode.SIGNATURE_INVALID, `Sigstore bundle rejected (${e.code}): ${e.message}`, details, { cause: e });
  }
  // Hostile bundles can make the library's ASN.1 and certificate parsers throw plain errors.
  return new ArcadeError(ErrorCode.SIGNATURE_INVALID, `Sigstore bundle unverifiable: ${errorMessageOf(e)}`, { hint }, { cause: e });
}

// Runs only on bytes whose signature verified: unsigned input never reaches JSON.parse.
function parseReleaseStatement(payload: Buffer): Omit<SigstoreVerified, "hint"> {
  const notRelease = (why: string) =>
    new ArcadeError(ErrorCode.SIGNATURE_INVALID, `signed payload is not an Arcade release statement: ${why}`);
  const s = orThrow(
    () => parseJson(payload),
    () => notRelease("not UTF-8 JSON"),
  );
  if (!isPlainObject(s)) throw notRelease("not a JSON object");
  if (s["_type"] !== IN_TOTO_STATEMENT_V1) throw notRelease(`_type is not ${IN_TOTO_STATEMENT_V1}`);
  if (s["predicateType"] !== RELEASE_PREDICATE_TYPE) throw notRelease(`predicateType is not ${RELEASE_PREDICATE_TYPE}`);
  const subjects = s["subject"];
  if (!Array.isArray(subjects) || subjects.length !== 1) throw notRelease("expected exactly one subject");
  const subject: unknown = subjects[0];
  if (!isPlainObject(subject) || typeof subject["name"] !== "string" || subject["name"] === "") throw notRelease("subject has no name");
  const digest = subject["digest"];
  if (!isPlainObject(digest) || !isSha256Hex(digest["sha256"])) throw notRelease("subject sha256 is not 64 lowercase hex characters");
  if (!isPlainObject(s["predicate"])) throw notRelease("predicate is not a JSON object");
  return { subject: { name: subject["name"], sha256: digest["sha256"] }, predicate: s["predicate"] };
}

// DSSE pre-authentication encoding; lengths are byte counts, not string lengths.
function preAuthEncoding(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

// Strict UTF-8: a lenient decode would turn bad bytes into U+FFFD and parse them anyway.
function parseJson(input: string | Uint8Array): unknown {
  return JSON.parse(typeof input === "string" ? input : new TextDecoder("utf-8", { fatal: true }).decode(input));
}

function orThrow<T>(fn: () => T, fail: (e: unknown) => Error): T {
  try {
    return fn();
  } catch (e) {
    throw fail(e);
  }
}

function checkHint(hint: string): string | undefined {
  // The hint lands in error messages and logs; control characters there would forge lines.
  const ok = typeof hint === "string" && hint !== "" && hint.length <= 256 && !/\p{Cc}/u.test(hint);
  return ok ? undefined : "key hint must be 1-256 characters without control characters";
}

function checkP256(key: KeyObject, type: "public" | "private"): string | undefined {
  if (key.type !== type) return `is a ${key.type} key, expected a ${type} key`;
  const kind = [key.asymmetricKeyType, key.asymmetricKeyDetails?.namedCurve].filter(Boolean).join(" ");
  return kind === "ec prime256v1" ? undefined : `is ${kind || "not an asymmetric key"}, expected ECDSA P-256`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
