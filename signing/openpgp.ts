// OpenPGP detached signatures over release statements, made and checked with openpgp.js so that
// publishers can equally sign with gpg 2.2. Verification is a chain of small checks (parse → find
// key → signature time → digest → key state) so each failure gets its error code from the step
// that failed rather than from openpgp.js's wording, which shifts between releases (the only
// wording still read is "revoked" vs "expired"). The steps are those openpgp.verify() takes for a
// detached signature; a test checks that both reach the same verdicts.

import * as openpgp from "openpgp";
import { ArcadeError, ErrorCode, errorMessageOf } from "./errors.js";

export type OpenPgpSigner = { fingerprint: string; signingKeyId: string; userIds: string[]; signedAt: Date };
export type PublicKeyInfo = { fingerprint: string; userIds: string[]; created: Date; expires?: Date; revoked: boolean };

// Signer and verifier clocks drift: a signature a few minutes ahead of us is skew, not a lie.
const CLOCK_SKEW_MS = 5 * 60_000;
const ARMOR_START = /^\s*-----BEGIN PGP /;
const ARMOR_BEGIN = /-----BEGIN PGP /g;
const PUBLIC_BLOCK = /-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----/g;
const DOCUMENT_SIGS = new Set<openpgp.enums.signature | null>([openpgp.enums.signature.binary, openpgp.enums.signature.text]);

const PRIVATE_KEY_IN_KEYRING =
  "contains a PRIVATE key: a trust store must only hold public keys (anyone who can read it could sign as the publisher); " +
  "replace it with the output of gpg --export --armor KEYID and rotate the exposed key";

type SigningKey = openpgp.PublicKey | openpgp.Subkey;
type SignOptions = { armor?: boolean; date?: Date };
type NewKeyOptions = { name: string; email: string; passphrase?: string; expires?: Date };
type NewKey = { privateKeyArmored: string; publicKeyArmored: string; fingerprint: string };

const upper = (s: string) => s.toUpperCase();
const iso = (d: Date) => d.toISOString();
const asText = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
const isBlank = (s: string) => /^[ \t\r\n]*$/.test(s);

export async function readPublicKeys(input: string | Uint8Array, source = "keyring"): Promise<openpgp.PublicKey[]> {
  // Every binary OpenPGP packet starts with bit 7 set; anything else is armored text, possibly with
  // comments between blocks.
  const text = typeof input === "string" ? input : (input[0] ?? 0) & 0x80 ? undefined : asText(input);
  const invalid = (why: string, cause?: unknown) => new ArcadeError(ErrorCode.KEYRING_INVALID, `${source}: ${why}`, { source }, { cause });
  if (text !== undefined ? isBlank(text) : input.length === 0)
    throw invalid("keyring is empty: add the publishers' public keys (gpg --export --armor KEYID)");
  if (text?.includes("-----BEGIN PGP PRIVATE KEY BLOCK-----")) throw invalid(PRIVATE_KEY_IN_KEYRING);
  let keys: openpgp.Key[];
  try {
    if (text === undefined) {
      keys = await openpgp.readKeys({ binaryKeys: input as Uint8Array });
    } else {
      // openpgp.readKeys() reads only the first armored block and silently drops the rest, so a
      // keyring of concatenated exports is split here; any other or unterminated block is refused.
      const blocks = text.match(PUBLIC_BLOCK) ?? [];
      if (blocks.length === 0 || blocks.length !== (text.match(ARMOR_BEGIN) ?? []).length) {
        throw new Error("expected only complete PUBLIC KEY BLOCKs");
      }
      keys = (await Promise.all(blocks.map((armoredKeys) => openpgp.readKeys({ armoredKeys })))).flat();
    }
  } catch (e) {
    throw invalid(`not a readable OpenPGP keyring (${errorMessageOf(e)}): export public keys with gpg --export --armor KEYID`, e);
  }
  if (keys.some((k) => k.isPrivate())) throw invalid(PRIVATE_KEY_IN_KEYRING);
  // Concatenated exports may hold the same key twice, e.g. an old copy and one carrying its
  // revocation; verifying against the first copy alone would ignore that revocation.
  const merged = new Map<string, openpgp.PublicKey>();
  for (const key of keys as openpgp.PublicKey[]) {
    const previous = merged.get(key.getFingerprint());
    merged.set(key.getFingerprint(), previous ? await previous.update(key) : key);
  }
  return [...merged.values()];
}

export async function readSecretKey(armored: string, passphrase?: string, source = "signing key"): Promise<openpgp.PrivateKey> {
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey: armored });
  } catch (e) {
    const why = `${source} is not an armored OpenPGP private key (${errorMessageOf(e)}): export it with gpg --export-secret-keys --armor KEYID`;
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, why, { source }, { cause: e });
  }
  if (!key.isDecrypted()) {
    if (passphrase === undefined) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${source}: key is passphrase-protected: pass --passphrase-file`, { source });
    }
    try {
      key = await openpgp.decryptKey({ privateKey: key, passphrase });
    } catch (e) {
      const why = `${source}: cannot decrypt the key (${errorMessageOf(e)}): check the passphrase file`;
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, why, { source }, { cause: e });
    }
  }
  // Fail at load time, not after hashing a release, when the key cannot sign today.
  await key.getSigningKey().catch((e: unknown) => {
    throw keyStateError(e, key, new Date(), ErrorCode.INVALID_ARGUMENT);
  });
  return key;
}

export async function signDetached(data: Uint8Array, key: openpgp.PrivateKey, opts: SignOptions = {}): Promise<string | Uint8Array> {
  const message = await openpgp.createMessage({ binary: data });
  const base = { message, signingKeys: key, detached: true, date: opts.date };
  try {
    return opts.armor === false ? await openpgp.sign({ ...base, format: "binary" }) : await openpgp.sign(base);
  } catch (e) {
    throw keyStateError(e, key, opts.date ?? new Date(), ErrorCode.INVALID_ARGUMENT);
  }
}

export async function verifyDetached(
  data: Uint8Array,
  signature: string | Uint8Array,
  keys: openpgp.PublicKey[],
  opts: { now?: Date } = {},
): Promise<OpenPgpSigner> {
  const now = opts.now ?? new Date();
  const signers: OpenPgpSigner[] = [];
  // A detached signature may carry several signature packets; every one must hold, so nobody can
  // smuggle a bad one in next to a good one.
  for (const packet of await parseSignature(signature)) {
    const { key, signingKey } = findIssuerKey(packet, keys);
    const signedAt = checkSignatureTime(packet, now);
    // openpgp.js re-checks the creation time against this date; skew was already allowed for above.
    await verifyDigest(data, packet, signingKey, new Date(Math.max(now.getTime(), signedAt.getTime())));
    await checkKeyState(key, signingKey, signedAt);
    const fingerprint = upper(key.getFingerprint());
    signers.push({ fingerprint, signingKeyId: upper(signingKey.getKeyID().toHex()), userIds: key.getUserIDs(), signedAt });
  }
  return signers[0]!;
}

async function parseSignature(signature: string | Uint8Array): Promise<openpgp.SignaturePacket[]> {
  const text = typeof signature === "string" ? signature : asText(signature);
  if (isBlank(text)) throw new ArcadeError(ErrorCode.SIGNATURE_MISSING, "signature is empty: publish the release's .sig file with it");
  const invalid = (why: string, cause?: unknown) =>
    new ArcadeError(ErrorCode.SIGNATURE_INVALID, `${why}: download the signature again or ask the publisher to re-sign`, {}, { cause });
  const armored = ARMOR_START.test(text);
  // Like readKeys(), readSignature() ignores every armored block after the first.
  if (armored && (text.match(ARMOR_BEGIN) ?? []).length > 1) throw invalid("signature file holds more than one armored block");
  let packets: openpgp.SignaturePacket[];
  try {
    const parsed = armored
      ? await openpgp.readSignature({ armoredSignature: text })
      : await openpgp.readSignature({ binarySignature: signature as Uint8Array });
    packets = [...parsed.packets];
  } catch (e) {
    throw invalid(`signature is not a readable OpenPGP signature, or is truncated (${errorMessageOf(e)})`, e);
  }
  // openpgp.js skips unknown packets and keeps malformed ones as "unparseable": about 1% of random
  // byte strings parse into zero packets, and openpgp.verify() then reports no signatures, not an error.
  if (packets.length === 0 || !packets.every((p) => p instanceof openpgp.SignaturePacket && DOCUMENT_SIGS.has(p.signatureType))) {
    throw invalid("signature file holds no document signature, or other packets besides");
  }
  return packets;
}

function findIssuerKey(packet: openpgp.SignaturePacket, keys: openpgp.PublicKey[]): { key: openpgp.PublicKey; signingKey: SigningKey } {
  const fingerprint = packet.issuerFingerprint ? Buffer.from(packet.issuerFingerprint).toString("hex") : undefined;
  for (const key of keys) {
    // Exact match: openpgp's own getKeys(id) lets a wildcard (all-zero) issuer match any key.
    const signingKey = key
      .getKeys()
      .find((k) => k.getKeyID().equals(packet.issuerKeyID) && (!fingerprint || k.getFingerprint() === fingerprint));
    if (signingKey) return { key, signingKey };
  }
  const issuer = upper(fingerprint ?? packet.issuerKeyID.toHex());
  throw new ArcadeError(
    ErrorCode.KEY_UNKNOWN,
    `signature was made by key ${issuer}, which is not in the trusted keyring: add the publisher's public key if you trust it`,
    { issuer },
  );
}

function checkSignatureTime(packet: openpgp.SignaturePacket, now: Date): Date {
  const created = packet.created;
  if (!created || created.getTime() > now.getTime() + CLOCK_SKEW_MS) {
    const when = created ? `is dated ${iso(created)}, in the future (now ${iso(now)})` : "has no creation time";
    throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, `signature ${when}: check the signer's and this machine's clocks`);
  }
  return created;
}

async function verifyDigest(data: Uint8Array, packet: openpgp.SignaturePacket, signingKey: SigningKey, at: Date): Promise<void> {
  const literal = (await openpgp.createMessage({ binary: data })).packets.findPacket(openpgp.enums.packet.literalData)!;
  try {
    await packet.verify(signingKey.keyPacket, packet.signatureType!, literal, at, true);
  } catch (e) {
    const why = `signature does not verify (${errorMessageOf(e)}): the data was modified, or the signature is for another file`;
    throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, why, {}, { cause: e });
  }
}

// Expiry and soft revocation (superseded, retired) are judged at the signature's creation time, so
// releases signed before a planned rotation keep verifying; hard revocations apply to every signature.
async function checkKeyState(key: openpgp.PublicKey, signingKey: SigningKey, signedAt: Date): Promise<void> {
  if (signingKey.getCreationTime() > signedAt) {
    throw new ArcadeError(ErrorCode.SIGNATURE_INVALID, `signature dated ${iso(signedAt)} predates its key: it is forged or backdated`);
  }
  await key.getSigningKey(signingKey.getKeyID(), signedAt).catch((e: unknown) => {
    throw keyStateError(e, key, signedAt, ErrorCode.SIGNATURE_INVALID);
  });
}

function keyStateError(e: unknown, key: openpgp.Key, at: Date, otherwise: ErrorCode): ArcadeError {
  const m = errorMessageOf(e);
  const fingerprint = upper(key.getFingerprint());
  const [code, why] = /\brevoked\b/i.test(m)
    ? [ErrorCode.KEY_REVOKED, `is revoked as of ${iso(at)} (${m}): sign with a current key`]
    : /\bexpired\b/i.test(m)
      ? [ErrorCode.KEY_EXPIRED, `was expired at ${iso(at)} (${m}): extend its expiry (gpg --quick-set-expire) or use a current key`]
      : [otherwise, `cannot sign at ${iso(at)} (${m})`];
  return new ArcadeError(code, `key ${fingerprint} ${why}`, { fingerprint }, { cause: e });
}

export async function describeKey(key: openpgp.PublicKey | openpgp.PrivateKey): Promise<PublicKeyInfo> {
  // null when the key is revoked or has no valid self-signature: no meaningful expiry then.
  const expires = await key.getExpirationTime();
  return {
    fingerprint: upper(key.getFingerprint()),
    userIds: key.getUserIDs(),
    created: key.getCreationTime(),
    ...(expires instanceof Date ? { expires } : {}),
    revoked: await key.isRevoked(),
  };
}

export async function generateSigningKey(o: NewKeyOptions): Promise<NewKey> {
  const date = new Date();
  const keyExpirationTime = o.expires ? Math.floor((o.expires.getTime() - date.getTime()) / 1000) : undefined;
  if (keyExpirationTime !== undefined && keyExpirationTime <= 0) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `key expiry ${iso(o.expires!)} is not in the future`);
  }
  try {
    // v4 EdDSA-legacy: gpg 2.2 cannot use RFC 9580 Ed25519 or v6 keys. No encryption subkey: this
    // key only signs releases, and secret material nobody uses is only a liability.
    const { privateKey, publicKey } = await openpgp.generateKey({
      type: "ecc",
      curve: "ed25519Legacy",
      userIDs: [{ name: o.name, email: o.email }],
      passphrase: o.passphrase || undefined,
      keyExpirationTime,
      date,
      subkeys: [],
      format: "object",
    });
    return { privateKeyArmored: privateKey.armor(), publicKeyArmored: publicKey.armor(), fingerprint: upper(publicKey.getFingerprint()) };
  } catch (e) {
    const why = `cannot generate a key for "${o.name} <${o.email}>" (${errorMessageOf(e)}): check the name and email address`;
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, why, {}, { cause: e });
  }
}
