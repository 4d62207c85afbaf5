// The release statement and the verification sequence over it: every refusal has its code.
import { describe, expect, it } from "vitest";
import { parseManifest } from "../../signing/manifest.js";
import { signDetached } from "../../signing/openpgp.js";
import { verifyRelease, type Release, type TrustStore } from "../../signing/release.js";
import { createReleaseBundle, readSigstorePublicKey } from "../../signing/sigstore.js";
import {
  buildStatement,
  canonicalJson,
  checkManifestMatchesStatement,
  checkStatementMatches,
  parseStatement,
  type ReleaseStatement,
} from "../../signing/statement.js";
import { loadTrustStore } from "../../keys/truststore.js";
import { publisher } from "../helpers/keys.js";

const manifest = parseManifest({
  schemaVersion: 1,
  id: "notify/slack",
  version: "1.2.0",
  entry: "index.mjs",
  runtime: "node",
  stages: ["on_failure"],
  permissions: { network: true },
  description: "posts to Slack",
});
const SHA = "ab".repeat(32);
const built = () => buildStatement({ manifest, sha256: SHA, size: 1234, publishedAt: new Date("2026-11-29T00:00:00Z") });

async function trust(): Promise<TrustStore> {
  const p = await publisher();
  return loadTrustStore({ keyring: p.keyring, sigstoreKeys: [{ hint: p.sigstore.hint, key: p.sigstore.publicKeyFile }] });
}

async function signed(bytes: Uint8Array = built().bytes, st: ReleaseStatement = built().statement): Promise<Release> {
  const p = await publisher();
  const asc = (await signDetached(bytes, p.secretKey)) as string;
  const bundle = createReleaseBundle({
    predicate: st,
    subjectName: `${st.id}@${st.version}`,
    sha256: st.sha256,
    privateKeyPem: p.sigstore.privateKeyPem,
    hint: p.sigstore.hint,
  });
  return { statement: bytes, openpgp: [Buffer.from(asc)], sigstore: [bundle] };
}

const code = async (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: { code?: string }) => e.code,
  );

describe("release statement", () => {
  it("is canonical JSON that parses back to itself", () => {
    const { statement, bytes } = built();
    const text = Buffer.from(bytes).toString();
    expect(text).toBe(canonicalJson(statement));
    expect(text).not.toMatch(/\s/);
    expect(parseStatement(bytes)).toEqual(statement);
  });

  it.each([
    ["empty", ""],
    ["not JSON", "{nope"],
    ["pretty-printed", JSON.stringify(JSON.parse(Buffer.from(built().bytes).toString()), null, 1)],
    ["keys out of order", JSON.stringify(Object.fromEntries(Object.entries(built().statement).reverse()))],
    ["an unknown field", canonicalJson({ ...built().statement, extra: 1 })],
    ["a bad digest", canonicalJson({ ...built().statement, sha256: "XYZ" })],
    ["a bad id", canonicalJson({ ...built().statement, id: "Notify/Slack" })],
    ["a bad version", canonicalJson({ ...built().statement, version: "v1.2" })],
    ["a negative size", canonicalJson({ ...built().statement, size: -1 })],
    ["another document type", canonicalJson({ ...built().statement, _type: "https://example.com/x" })],
    ["oversized", canonicalJson({ ...built().statement, id: "a".repeat(5000) })],
  ])("refuses %s with STATEMENT_INVALID", (_what, text) => {
    expect(() => parseStatement(Buffer.from(text))).toThrow(expect.objectContaining({ code: "STATEMENT_INVALID" }));
  });

  it("names the mismatch: id or version, digest, size", () => {
    const st = built().statement;
    expect(() => checkStatementMatches(st, { id: "notify/slack-evil" })).toThrow(expect.objectContaining({ code: "MANIFEST_MISMATCH" }));
    expect(() => checkStatementMatches(st, { version: "1.2.1" })).toThrow(expect.objectContaining({ code: "MANIFEST_MISMATCH" }));
    expect(() => checkStatementMatches(st, { sha256: "cd".repeat(32) })).toThrow(expect.objectContaining({ code: "CHECKSUM_MISMATCH" }));
    expect(() => checkStatementMatches(st, { size: 1 })).toThrow(expect.objectContaining({ code: "SIZE_MISMATCH" }));
    expect(() => checkStatementMatches(st, { id: "notify/slack", version: "1.2.0", sha256: SHA, size: 1234 })).not.toThrow();
  });

  it("binds the manifest's meaning: a changed permission is a different manifest", () => {
    const st = built().statement;
    expect(() => checkManifestMatchesStatement(manifest, st)).not.toThrow();
    const widened = parseManifest({ ...manifest, permissions: { ...manifest.permissions, env: ["AWS_SECRET_ACCESS_KEY"] } });
    expect(() => checkManifestMatchesStatement(widened, st)).toThrow(expect.objectContaining({ code: "MANIFEST_MISMATCH" }));
    expect(() => checkManifestMatchesStatement(undefined, st)).toThrow(expect.objectContaining({ code: "MANIFEST_MISSING" }));
  });
});

describe("verifyRelease", () => {
  it("accepts OpenPGP and Sigstore signatures by trusted keys and reports both signers", async () => {
    const r = await verifyRelease(await signed(), await trust());
    expect(r.statement).toEqual(built().statement);
    expect(r.signers.map((s) => s.kind).sort()).toEqual(["openpgp", "sigstore"]);
  });

  it("refuses a release without a statement or without signatures (SIGNATURE_MISSING)", async () => {
    const r = await signed();
    expect(await code(verifyRelease({ ...r, openpgp: [], sigstore: [] }, await trust()))).toBe("SIGNATURE_MISSING");
    expect(await code(verifyRelease({ ...r, statement: new Uint8Array() }, await trust()))).toBe("SIGNATURE_MISSING");
  });

  it("refuses a tampered statement (SIGNATURE_INVALID)", async () => {
    const r = await signed();
    const tampered = Buffer.from(Buffer.from(r.statement).toString().replace('"size":1234', '"size":1235'));
    expect(await code(verifyRelease({ ...r, statement: tampered, sigstore: [] }, await trust()))).toBe("SIGNATURE_INVALID");
  });

  it("refuses a truncated OpenPGP signature (SIGNATURE_INVALID)", async () => {
    const r = await signed();
    const cut = Buffer.from(r.openpgp[0]!).subarray(0, 120);
    expect(await code(verifyRelease({ ...r, openpgp: [cut], sigstore: [] }, await trust()))).toBe("SIGNATURE_INVALID");
  });

  it("refuses signatures only by keys it does not trust (KEY_UNKNOWN)", async () => {
    const stranger = await publisher("stranger");
    const bytes = built().bytes;
    const asc = (await signDetached(bytes, stranger.secretKey)) as string;
    expect(await code(verifyRelease({ statement: bytes, openpgp: [Buffer.from(asc)], sigstore: [] }, await trust()))).toBe("KEY_UNKNOWN");
    const otherTrust = await loadTrustStore({ keyring: stranger.keyring });
    expect(await code(verifyRelease({ ...(await signed()), sigstore: [] }, otherTrust))).toBe("KEY_UNKNOWN");
  });

  it("accepts a release also signed by an unknown key, as long as one trusted key signed it", async () => {
    const stranger = await publisher("stranger");
    const r = await signed();
    const extra = Buffer.from((await signDetached(r.statement, stranger.secretKey)) as string);
    const v = await verifyRelease({ ...r, openpgp: [extra, ...r.openpgp], sigstore: [] }, await trust());
    expect(v.signers).toHaveLength(1);
  });

  it("fails closed when any signature is bad, even next to a good one", async () => {
    const r = await signed();
    const bundle = JSON.parse(r.sigstore[0]!) as { dsseEnvelope: { signatures: { sig: string }[] } };
    const sig = Buffer.from(bundle.dsseEnvelope.signatures[0]!.sig, "base64");
    sig[sig.length - 1]! ^= 1;
    bundle.dsseEnvelope.signatures[0]!.sig = sig.toString("base64");
    expect(await code(verifyRelease({ ...r, sigstore: [JSON.stringify(bundle)] }, await trust()))).toBe("SIGNATURE_INVALID");
  });

  it("refuses a Sigstore bundle that validly signs a different statement (SIGNATURE_INVALID)", async () => {
    const p = await publisher();
    const other = buildStatement({ manifest, sha256: "cd".repeat(32), size: 1234 }).statement;
    const bundle = createReleaseBundle({
      predicate: other,
      subjectName: "notify/slack@1.2.0",
      sha256: other.sha256,
      privateKeyPem: p.sigstore.privateKeyPem,
      hint: p.sigstore.hint,
    });
    const r = await signed();
    expect(await code(verifyRelease({ ...r, sigstore: [bundle] }, await trust()))).toBe("SIGNATURE_INVALID");
    expect(await code(verifyRelease({ statement: r.statement, openpgp: [], sigstore: [bundle] }, await trust()))).toBe("SIGNATURE_INVALID");
  });

  it("refuses a validly signed statement that is not canonical (STATEMENT_INVALID)", async () => {
    const pretty = Buffer.from(JSON.stringify(built().statement, null, 2));
    const p = await publisher();
    const asc = (await signDetached(pretty, p.secretKey)) as string;
    expect(await code(verifyRelease({ statement: pretty, openpgp: [Buffer.from(asc)], sigstore: [] }, await trust()))).toBe(
      "STATEMENT_INVALID",
    );
  });

  it("never trusts a key the release brings along", async () => {
    // A Sigstore bundle names its key by hint only; a hint the verifier lacks is unknown.
    const stranger = await publisher("stranger");
    const st = built().statement;
    const bundle = createReleaseBundle({
      predicate: st,
      subjectName: "notify/slack@1.2.0",
      sha256: SHA,
      privateKeyPem: stranger.sigstore.privateKeyPem,
      hint: (await publisher()).sigstore.hint,
    });
    expect(await code(verifyRelease({ statement: built().bytes, openpgp: [], sigstore: [bundle] }, await trust()))).toBe(
      "SIGNATURE_INVALID",
    );
    expect(() => readSigstorePublicKey(stranger.sigstore.privateKeyPem, "x")).toThrow(expect.objectContaining({ code: "KEYRING_INVALID" }));
  });
});
