import { createHash, generateKeyPairSync, sign } from "node:crypto";
import dns from "node:dns";
import net from "node:net";
import {
  BUNDLE_V03_MEDIA_TYPE,
  bundleFromJSON,
  bundleToJSON,
  isBundleWithDsseEnvelope,
  isBundleWithPublicKey,
  toDSSEBundle,
  toMessageSignatureBundle,
} from "@sigstore/bundle";
import { dsse } from "@sigstore/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import {
  IN_TOTO_STATEMENT_V1,
  RELEASE_PREDICATE_TYPE,
  createReleaseBundle,
  generateSigstoreKeyPair,
  readSigstorePublicKey,
  verifyReleaseBundle,
  type SigstoreKey,
} from "../../signing/sigstore.js";

const IN_TOTO = "application/vnd.in-toto+json";
const HINT = "acme-2026-01";
const SHA = createHash("sha256").update("tarball").digest("hex");
const STATEMENT = {
  id: "acme/lint",
  version: "1.2.3",
  sha256: SHA,
  size: 4096,
  manifestDigest: createHash("sha256").update("manifest").digest("hex"),
  publishedAt: "2026-01-02T03:04:05.000Z",
};
const SUBJECT = `${STATEMENT.id}@${STATEMENT.version}`;

const pair = generateSigstoreKeyPair();
const other = generateSigstoreKeyPair();
const keys: SigstoreKey[] = [readSigstorePublicKey(pair.publicKeyPem, HINT)];

function release(overrides: { hint?: string; privateKeyPem?: string } = {}): string {
  return createReleaseBundle({
    predicate: STATEMENT,
    subjectName: SUBJECT,
    sha256: SHA,
    privateKeyPem: pair.privateKeyPem,
    hint: HINT,
    ...overrides,
  });
}

/** A correctly signed keyed DSSE bundle around arbitrary payload bytes, built with Sigstore's own helpers. */
function signedBundle(payload: Buffer | object, o: { privateKeyPem?: string; payloadType?: string } = {}): string {
  const artifact = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
  const payloadType = o.payloadType ?? IN_TOTO;
  const signature = sign("sha256", dsse.preAuthEncoding(payloadType, artifact), o.privateKeyPem ?? pair.privateKeyPem);
  return JSON.stringify(
    bundleToJSON(toDSSEBundle({ artifact, artifactType: payloadType, signature, keyHint: HINT, certificateChain: false })),
  );
}

function statement(changes: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    _type: IN_TOTO_STATEMENT_V1,
    subject: [{ name: SUBJECT, digest: { sha256: SHA } }],
    predicateType: RELEASE_PREDICATE_TYPE,
    predicate: STATEMENT,
    ...changes,
  };
}

/** The parts of a serialized bundle the tests rewrite. */
type BundleJson = {
  mediaType: string;
  verificationMaterial: {
    publicKey?: { hint?: string };
    tlogEntries?: unknown[];
    timestampVerificationData?: unknown;
    [k: string]: unknown;
  };
  dsseEnvelope: { payload: string; payloadType: string; signatures: { sig: string; keyid: string }[] };
};

function edit(json: string, change: (b: BundleJson) => void): string {
  const b = JSON.parse(json) as BundleJson;
  change(b);
  return JSON.stringify(b);
}

function failure(fn: () => unknown): ArcadeError {
  try {
    fn();
  } catch (e) {
    // Anything but our own error type means a library exception escaped.
    expect(e).toBeInstanceOf(ArcadeError);
    return e as ArcadeError;
  }
  throw new Error("expected an ArcadeError, nothing was thrown");
}

describe("sigstore release bundles", () => {
  afterEach(() => vi.restoreAllMocks());

  it("round trip: the subject and predicate come back, from a string or bytes", () => {
    const json = release();
    const expected = { hint: HINT, subject: { name: SUBJECT, sha256: SHA }, predicate: STATEMENT };
    expect(verifyReleaseBundle(json, keys)).toEqual(expected);
    expect(verifyReleaseBundle(new TextEncoder().encode(json), keys)).toEqual(expected);
  });

  it("emits a valid v0.3 keyed DSSE bundle, the same shape @sigstore/bundle builds", () => {
    const json = release();
    const bundle = bundleFromJSON(JSON.parse(json));
    expect(bundle.mediaType).toBe(BUNDLE_V03_MEDIA_TYPE);
    expect(isBundleWithDsseEnvelope(bundle) && isBundleWithPublicKey(bundle)).toBe(true);
    expect(bundle.verificationMaterial.tlogEntries).toEqual([]);

    const ours = JSON.parse(json) as BundleJson;
    const theirs = toDSSEBundle({
      artifact: Buffer.from(ours.dsseEnvelope.payload, "base64"),
      artifactType: IN_TOTO,
      signature: Buffer.from(ours.dsseEnvelope.signatures[0]!.sig, "base64"),
      keyHint: HINT,
      certificateChain: false,
    });
    theirs.content.dsseEnvelope.signatures[0]!.keyid = ""; // DSSE keyid is an unauthenticated hint; we leave it empty
    expect(bundle).toEqual(theirs);
    expect(JSON.parse(Buffer.from(ours.dsseEnvelope.payload, "base64").toString())).toEqual(statement());
  });

  it("rejects a payload changed by one byte", () => {
    const json = edit(release(), (b) => {
      const payload = Buffer.from(b.dsseEnvelope.payload, "base64");
      const at = payload.indexOf("1.2.3");
      payload[at] = "2".charCodeAt(0);
      b.dsseEnvelope.payload = payload.toString("base64");
    });
    const e = failure(() => verifyReleaseBundle(json, keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.message).toMatch(/does not verify/);
  });

  it("rejects a changed signature", () => {
    const json = edit(release(), (b) => {
      const signature = b.dsseEnvelope.signatures[0]!;
      const sig = Buffer.from(signature.sig, "base64");
      sig[sig.length - 5]! ^= 0x01;
      signature.sig = sig.toString("base64");
    });
    expect(failure(() => verifyReleaseBundle(json, keys)).code).toBe(ErrorCode.SIGNATURE_INVALID);
  });

  it("names an unknown hint with KEY_UNKNOWN", () => {
    const e = failure(() => verifyReleaseBundle(release({ hint: "someone-else" }), keys));
    expect(e.code).toBe(ErrorCode.KEY_UNKNOWN);
    expect(e.message).toContain('"someone-else"');
    expect(e.details).toEqual({ hint: "someone-else" });
    expect(failure(() => verifyReleaseBundle(release(), [])).code).toBe(ErrorCode.KEY_UNKNOWN);
  });

  it.each([
    ["empty", ""],
    ["missing", undefined],
    ["a prototype key", "__proto__"],
    ["with a newline", "acme-2026-01\nforged log line"],
    ["too long", "h".repeat(300)],
  ])("answers a bundle key hint that is %s with KEY_UNKNOWN, never echoing odd hints", (_name, hint) => {
    const json = edit(release(), (b) => {
      b.verificationMaterial.publicKey = hint === undefined ? {} : { hint };
    });
    const e = failure(() => verifyReleaseBundle(json, keys));
    expect(e.code).toBe(ErrorCode.KEY_UNKNOWN);
    expect(e.message).not.toMatch(/\n|h{300}/);
  });

  it("rejects the right hint signed by another key", () => {
    const e = failure(() => verifyReleaseBundle(release({ privateKeyPem: other.privateKeyPem }), keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.details).toMatchObject({ hint: HINT, sigstoreCode: "SIGNATURE_ERROR" });
  });

  it("accepts a payload built independently with @sigstore/core's PAE", () => {
    expect(verifyReleaseBundle(signedBundle(statement()), keys).predicate).toEqual(STATEMENT);
  });

  it.each([
    ["a wrong _type", statement({ _type: "https://in-toto.io/Statement/v0.1" })],
    ["a wrong predicateType", statement({ predicateType: "https://slsa.dev/provenance/v1" })],
    [
      "two subjects",
      statement({
        subject: [
          { name: SUBJECT, digest: { sha256: SHA } },
          { name: "x@1", digest: { sha256: SHA } },
        ],
      }),
    ],
    ["no subject", statement({ subject: [] })],
    ["a non-hex digest", statement({ subject: [{ name: SUBJECT, digest: { sha256: "z".repeat(64) } }] })],
    ["an uppercase digest", statement({ subject: [{ name: SUBJECT, digest: { sha256: SHA.toUpperCase() } }] })],
    ["only a sha512 digest", statement({ subject: [{ name: SUBJECT, digest: { sha512: SHA + SHA } }] })],
    ["an unnamed subject", statement({ subject: [{ digest: { sha256: SHA } }] })],
    ["no predicate", statement({ predicate: undefined })],
    ["an array", [statement()]],
    ["bytes that are not JSON", Buffer.from("not json")],
  ])("rejects a correctly signed payload with %s", (_name, payload) => {
    const e = failure(() => verifyReleaseBundle(signedBundle(payload), keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.message).toMatch(/^signed payload is not an Arcade release statement/);
  });

  it("checks the signature before looking at the payload", () => {
    const e = failure(() => verifyReleaseBundle(signedBundle(Buffer.from("not json"), { privateKeyPem: other.privateKeyPem }), keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.message).toMatch(/does not verify/);
  });

  it("rejects a correctly signed DSSE envelope with another payload type", () => {
    const e = failure(() => verifyReleaseBundle(signedBundle(statement(), { payloadType: "application/json" }), keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.message).toMatch(/payload type/);
  });

  it("rejects a messageSignature bundle even when its signature is good", () => {
    const artifact = Buffer.from("tarball");
    const bundle = toMessageSignatureBundle({
      digest: createHash("sha256").update(artifact).digest(),
      signature: sign("sha256", artifact, pair.privateKeyPem),
      keyHint: HINT,
      certificateChain: false,
    });
    const e = failure(() => verifyReleaseBundle(JSON.stringify(bundleToJSON(bundle)), keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.message).toMatch(/DSSE/);
  });

  it.each([
    ["v0.2 with a certificate chain", "application/vnd.dev.sigstore.bundle+json;version=0.2", "x509CertificateChain"],
    ["v0.1 with a certificate chain", "application/vnd.dev.sigstore.bundle+json;version=0.1", "x509CertificateChain"],
    ["v0.3 with a single certificate", BUNDLE_V03_MEDIA_TYPE, "certificate"],
  ])("rejects a keyless bundle (%s) as SIGNATURE_INVALID: no keyring entry could verify it", (_name, mediaType, material) => {
    const certificate = { rawBytes: Buffer.from("not really a certificate").toString("base64") };
    const json = edit(release(), (b) => {
      b.mediaType = mediaType;
      b.verificationMaterial = {
        [material]: material === "certificate" ? certificate : { certificates: [certificate] },
        tlogEntries: [],
        timestampVerificationData: { rfc3161Timestamps: [] },
      };
    });
    const e = failure(() => verifyReleaseBundle(json, keys));
    expect(e.code).toBe(ErrorCode.SIGNATURE_INVALID);
    expect(e.message).toMatch(/certificate/);
  });

  it("maps transparency-log and timestamp material it cannot check to SIGNATURE_INVALID", () => {
    const withTlog = edit(release(), (b) => {
      const body = Buffer.from("{}").toString("base64");
      b.verificationMaterial.tlogEntries = [
        {
          logIndex: "1",
          logId: { keyId: body },
          kindVersion: { kind: "dsse", version: "0.0.1" },
          integratedTime: "1767225600",
          canonicalizedBody: body,
          inclusionProof: { logIndex: "1", rootHash: body, treeSize: "2", hashes: [], checkpoint: { envelope: "x" } },
        },
      ];
    });
    const withTimestamp = edit(release(), (b) => {
      b.verificationMaterial.timestampVerificationData = {
        rfc3161Timestamps: [{ signedTimestamp: Buffer.from("junk").toString("base64") }],
      };
    });
    for (const json of [withTlog, withTimestamp])
      expect(failure(() => verifyReleaseBundle(json, keys)).code).toBe(ErrorCode.SIGNATURE_INVALID);
  });

  it.each([
    ["garbage", "{not json"],
    ["a JSON number", "42"],
    ["null", "null"],
    ["an empty object", "{}"],
    ["a bundle without content", JSON.stringify({ mediaType: BUNDLE_V03_MEDIA_TYPE, verificationMaterial: { publicKey: { hint: HINT } } })],
    ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0x7d])],
    ["more than 1 MiB", `${" ".repeat(1 << 20)}{}`],
  ])("rejects %s as SIGNATURE_INVALID", (_name, input) => {
    expect(failure(() => verifyReleaseBundle(input, keys)).code).toBe(ErrorCode.SIGNATURE_INVALID);
  });

  it.each([
    ["an empty string", ""],
    ["whitespace", " \n"],
    ["empty bytes", new Uint8Array()],
  ])("reports %s as SIGNATURE_MISSING", (_name, input) => {
    expect(failure(() => verifyReleaseBundle(input, keys)).code).toBe(ErrorCode.SIGNATURE_MISSING);
  });

  it("refuses an ambiguous keyring and a key that is not P-256", () => {
    const twice = [...keys, readSigstorePublicKey(other.publicKeyPem, HINT)];
    expect(failure(() => verifyReleaseBundle(release(), twice)).code).toBe(ErrorCode.KEYRING_INVALID);
    const ed = { hint: HINT, publicKey: generateKeyPairSync("ed25519").publicKey };
    expect(failure(() => verifyReleaseBundle(release(), [ed])).code).toBe(ErrorCode.KEYRING_INVALID);
  });

  it("verifies without touching the network", () => {
    const json = release();
    const fetch = vi.spyOn(globalThis, "fetch");
    const connect = vi.spyOn(net.Socket.prototype, "connect");
    const lookup = vi.spyOn(dns, "lookup");
    expect(verifyReleaseBundle(json, keys).hint).toBe(HINT);
    failure(() => verifyReleaseBundle(release({ privateKeyPem: other.privateKeyPem }), keys));
    expect(fetch).not.toHaveBeenCalled();
    expect(connect).not.toHaveBeenCalled();
    expect(lookup).not.toHaveBeenCalled();
  });
});

describe("sigstore keys", () => {
  it("generates P-256 PKCS8 / SPKI PEM pairs", () => {
    const { privateKeyPem, publicKeyPem } = generateSigstoreKeyPair();
    expect(privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect(readSigstorePublicKey(publicKeyPem, "k").publicKey.asymmetricKeyDetails).toEqual({ namedCurve: "prime256v1" });
  });

  it.each([
    ["a PKCS8 private key", pair.privateKeyPem, /private key/],
    [
      "a SEC1 private key",
      generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "sec1", format: "pem" }),
      /private key/,
    ],
    ["an RSA public key", generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" }), /P-256/],
    ["a P-384 public key", generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ type: "spki", format: "pem" }), /P-256/],
    ["garbage", "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n", /unreadable/],
    ["text without PEM", "hello", /PUBLIC KEY/],
  ])("readSigstorePublicKey refuses %s with KEYRING_INVALID naming the source", (_name, pem, why) => {
    const e = failure(() => readSigstorePublicKey(String(pem), HINT, "keys/acme.pub"));
    expect(e.code).toBe(ErrorCode.KEYRING_INVALID);
    expect(e.message).toMatch(/^keys\/acme\.pub: /);
    expect(e.message).toMatch(why);
  });

  it("readSigstorePublicKey refuses an empty hint or one with control characters", () => {
    for (const hint of ["", "a\nb"])
      expect(failure(() => readSigstorePublicKey(pair.publicKeyPem, hint)).code).toBe(ErrorCode.KEYRING_INVALID);
  });

  it("createReleaseBundle refuses bad input and keys that are not P-256 private keys", () => {
    const base = { predicate: STATEMENT, subjectName: SUBJECT, sha256: SHA, privateKeyPem: pair.privateKeyPem, hint: HINT };
    expect(failure(() => createReleaseBundle({ ...base, sha256: "abc" })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(failure(() => createReleaseBundle({ ...base, subjectName: "" })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(failure(() => createReleaseBundle({ ...base, predicate: [] })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(failure(() => createReleaseBundle({ ...base, hint: "" })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    expect(failure(() => createReleaseBundle({ ...base, privateKeyPem: rsa })).code).toBe(ErrorCode.KEYRING_INVALID);
    expect(failure(() => createReleaseBundle({ ...base, privateKeyPem: pair.publicKeyPem })).code).toBe(ErrorCode.KEYRING_INVALID);
    expect(failure(() => createReleaseBundle({ ...base, privateKeyPem: "garbage" })).code).toBe(ErrorCode.KEYRING_INVALID);
  });
});
