import { randomBytes } from "node:crypto";
import * as openpgp from "openpgp";
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, type ErrorCode as Code } from "../../signing/errors.js";
import { describeKey, generateSigningKey, readPublicKeys, readSecretKey, signDetached, verifyDetached } from "../../signing/openpgp.js";
import { seeded, testSeed } from "../helpers/random.js";

// Key lifecycles are built on a fixed timeline: keys are created at T0 and verification happens at
// T0+10d unless a test says otherwise, so expiry and revocation dates are exact.
const T0 = new Date("2024-03-01T00:00:00Z");
const day = (n: number) => new Date(T0.getTime() + n * 86_400_000);
const NOW = day(10);
const STATEMENT = new TextEncoder().encode(
  JSON.stringify({ id: "acme/deploy", version: "1.2.3", sha256: "ab".repeat(32), size: 123456, created: "2024-03-02T00:00:00Z" }),
);
const USER = { name: "Acme Releases", email: "releases@acme.example" };
const { keyCompromised, keySuperseded } = openpgp.enums.reasonForRevocation;

type KeyPair = { privateKey: openpgp.PrivateKey; publicKey: openpgp.PublicKey; revocationCertificate: string };
const keypair = (o: { subkeys?: openpgp.SubkeyOptions[]; passphrase?: string; userIDs?: openpgp.UserID[] } = {}): Promise<KeyPair> =>
  openpgp.generateKey({ userIDs: [USER], date: T0, subkeys: [], format: "object", ...o });

const sign = (key: openpgp.PrivateKey, date: Date, data = STATEMENT) =>
  signDetached(data, key, { armor: false, date }) as Promise<Uint8Array>;

async function rejects(p: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toMatchObject({ name: "ArcadeError", code });
  if (message) expect((err as Error).message).toMatch(message);
}

// openpgp.verify() as a second opinion: our step-by-step verifier must agree with it.
async function openpgpAccepts(data: Uint8Array, sig: Uint8Array, keys: openpgp.PublicKey[], date: Date): Promise<boolean> {
  try {
    const res = await openpgp.verify({
      message: await openpgp.createMessage({ binary: data }),
      signature: await openpgp.readSignature({ binarySignature: sig }),
      verificationKeys: keys,
      date,
      format: "binary",
    });
    await Promise.all(res.signatures.map((s) => s.verified));
    return res.signatures.length > 0;
  } catch {
    return false;
  }
}

let alice: KeyPair;
let bob: KeyPair;
beforeAll(async () => {
  [alice, bob] = await Promise.all([keypair(), keypair({ userIDs: [{ name: "Bob", email: "bob@example.com" }] })]);
});

describe("sign and verify", () => {
  it("round-trips armored and binary signatures made with a generated key", async () => {
    const gen = await generateSigningKey({ ...USER });
    const key = await readSecretKey(gen.privateKeyArmored);
    const keyring = await readPublicKeys(gen.publicKeyArmored, "test keyring");

    const armored = await signDetached(STATEMENT, key);
    expect(typeof armored).toBe("string");
    expect(armored).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
    const binary = await signDetached(STATEMENT, key, { armor: false });
    expect(binary).toBeInstanceOf(Uint8Array);

    for (const sig of [armored, binary, new TextEncoder().encode(armored as string)]) {
      const signer = await verifyDetached(STATEMENT, sig, keyring);
      expect(signer).toMatchObject({
        fingerprint: gen.fingerprint,
        signingKeyId: gen.fingerprint.slice(-16),
        userIds: ["Acme Releases <releases@acme.example>"],
      });
      expect(Math.abs(signer.signedAt.getTime() - Date.now())).toBeLessThan(60_000);
    }
  });

  it("reports the primary fingerprint when a signing subkey signed", async () => {
    const k = await keypair({ subkeys: [{ sign: true }] });
    const signer = await verifyDetached(STATEMENT, await sign(k.privateKey, day(1)), [k.publicKey], { now: NOW });
    const subkeyId = k.publicKey.subkeys[0]!.getKeyID().toHex().toUpperCase();
    expect(signer.fingerprint).toBe(k.publicKey.getFingerprint().toUpperCase());
    expect(signer.signingKeyId).toBe(subkeyId);
    expect(signer.signingKeyId).not.toBe(k.publicKey.getKeyID().toHex().toUpperCase());
  });

  it("refuses tampered data", async () => {
    const sig = await sign(alice.privateKey, day(1));
    const flipped = STATEMENT.slice();
    flipped[10]! ^= 1;
    for (const data of [flipped, Buffer.concat([STATEMENT, Buffer.from(" ")]), STATEMENT.subarray(1)]) {
      await rejects(verifyDetached(data, sig, [alice.publicKey], { now: NOW }), ErrorCode.SIGNATURE_INVALID, /Signed digest did not match/);
    }
  });

  it("refuses a signer that is not in the keyring, naming its key id", async () => {
    const sig = await sign(alice.privateKey, day(1));
    const fpr = alice.publicKey.getFingerprint().toUpperCase();
    await rejects(verifyDetached(STATEMENT, sig, [bob.publicKey], { now: NOW }), ErrorCode.KEY_UNKNOWN, new RegExp(fpr));
    await rejects(verifyDetached(STATEMENT, sig, [], { now: NOW }), ErrorCode.KEY_UNKNOWN, /not in the trusted keyring/);
  });

  it("requires every signature packet to verify when there are several", async () => {
    const both = Buffer.concat([await sign(alice.privateKey, day(1)), await sign(bob.privateKey, day(1))]);
    const signer = await verifyDetached(STATEMENT, both, [alice.publicKey, bob.publicKey], { now: NOW });
    expect(signer.fingerprint).toBe(alice.publicKey.getFingerprint().toUpperCase());
    await rejects(verifyDetached(STATEMENT, both, [alice.publicKey], { now: NOW }), ErrorCode.KEY_UNKNOWN);
    const otherData = Buffer.concat([await sign(alice.privateKey, day(1)), await sign(bob.privateKey, day(1), new Uint8Array([1]))]);
    await rejects(verifyDetached(STATEMENT, otherData, [alice.publicKey, bob.publicKey], { now: NOW }), ErrorCode.SIGNATURE_INVALID);
  });
});

describe("malformed signatures", () => {
  it("treats an empty signature as missing", async () => {
    for (const sig of ["", " \n", new Uint8Array(0), new TextEncoder().encode("\r\n")]) {
      await rejects(verifyDetached(STATEMENT, sig, [alice.publicKey]), ErrorCode.SIGNATURE_MISSING);
    }
  });

  it("refuses truncated armored and binary signatures", async () => {
    const armored = (await signDetached(STATEMENT, alice.privateKey, { date: day(1) })) as string;
    const lines = armored.split("\n");
    await rejects(
      verifyDetached(STATEMENT, armored.slice(0, armored.length / 2), [alice.publicKey]),
      ErrorCode.SIGNATURE_INVALID,
      /Misformed armored text/,
    );
    const missingBody = [...lines.slice(0, 3), ...lines.slice(-3)].join("\n");
    await rejects(verifyDetached(STATEMENT, missingBody, [alice.publicKey]), ErrorCode.SIGNATURE_INVALID, /Unexpected end of packet/);

    const binary = await sign(alice.privateKey, day(1));
    for (const cut of [1, 2, 20, binary.length - 20, binary.length - 1]) {
      await rejects(verifyDetached(STATEMENT, binary.subarray(0, cut), [alice.publicKey]), ErrorCode.SIGNATURE_INVALID);
    }
  });

  it("refuses random bytes, including those openpgp.js parses into zero signatures", async () => {
    // A marker packet and an unknown-tag packet: openpgp.readSignature() accepts both and
    // openpgp.verify() then returns an empty signature list instead of an error.
    for (const hex of ["ca03504750", "fd0100"]) {
      const bytes = Buffer.from(hex, "hex");
      expect(
        (
          await openpgp.verify({
            message: await openpgp.createMessage({ binary: STATEMENT }),
            signature: await openpgp.readSignature({ binarySignature: bytes }),
            verificationKeys: [alice.publicKey],
          })
        ).signatures,
      ).toEqual([]);
      await rejects(verifyDetached(STATEMENT, bytes, [alice.publicKey]), ErrorCode.SIGNATURE_INVALID, /no document signature/);
    }
    const good = await sign(alice.privateKey, day(1));
    await rejects(
      verifyDetached(STATEMENT, Buffer.concat([good, Buffer.from("fd0100", "hex")]), [alice.publicKey], { now: NOW }),
      ErrorCode.SIGNATURE_INVALID,
    );
    await rejects(verifyDetached(STATEMENT, Buffer.from("fd0100", "hex"), [alice.publicKey]), ErrorCode.SIGNATURE_INVALID);
    await rejects(
      verifyDetached(STATEMENT, Buffer.from([0x01, 0x02]), [alice.publicKey]),
      ErrorCode.SIGNATURE_INVALID,
      /Error during parsing/,
    );
    const rng = seeded(testSeed("openpgp: random signature bytes"));
    for (let i = 0; i < 300; i++) {
      const bytes = rng.bytes(1 + (i % 200));
      // garbage that happens to be all whitespace is an empty signature: missing, not invalid
      const blank = /^[ \t\r\n]*$/.test(bytes.toString("latin1"));
      await rejects(verifyDetached(STATEMENT, bytes, [alice.publicKey]), blank ? ErrorCode.SIGNATURE_MISSING : ErrorCode.SIGNATURE_INVALID);
    }
  });

  it("refuses things that are not detached document signatures", async () => {
    const selfCert = new openpgp.PacketList<openpgp.AnyPacket>();
    selfCert.push(alice.publicKey.users[0]!.selfCertifications[0]!);
    await rejects(verifyDetached(STATEMENT, selfCert.write(), [alice.publicKey]), ErrorCode.SIGNATURE_INVALID, /no document signature/);
    await rejects(verifyDetached(STATEMENT, alice.publicKey.write(), [alice.publicKey]), ErrorCode.SIGNATURE_INVALID, /Packet not allowed/);
    await rejects(
      verifyDetached(STATEMENT, alice.publicKey.armor(), [alice.publicKey]),
      ErrorCode.SIGNATURE_INVALID,
      /not of type signature/,
    );
    const armored = (await signDetached(STATEMENT, alice.privateKey, { date: day(1) })) as string;
    await rejects(
      verifyDetached(STATEMENT, armored + armored, [alice.publicKey], { now: NOW }),
      ErrorCode.SIGNATURE_INVALID,
      /more than one armored block/,
    );
  });

  it("refuses signatures from the future beyond five minutes of clock skew", async () => {
    const later = await sign(alice.privateKey, new Date(NOW.getTime() + 60 * 60_000));
    await rejects(verifyDetached(STATEMENT, later, [alice.publicKey], { now: NOW }), ErrorCode.SIGNATURE_INVALID, /in the future/);
    const skewed = await sign(alice.privateKey, new Date(NOW.getTime() + 2 * 60_000));
    await expect(verifyDetached(STATEMENT, skewed, [alice.publicKey], { now: NOW })).resolves.toMatchObject({
      signedAt: new Date(NOW.getTime() + 120_000),
    });
  });
});

describe("key lifecycle", () => {
  it("a hard revocation (keyCompromised) voids every signature, old ones included", async () => {
    const k = await keypair();
    const old = await sign(k.privateKey, day(1));
    const { publicKey: revoked } = await openpgp.revokeKey({
      key: k.privateKey,
      reasonForRevocation: { flag: keyCompromised },
      date: day(3),
      format: "object",
    });
    await rejects(verifyDetached(STATEMENT, old, [revoked], { now: NOW }), ErrorCode.KEY_REVOKED, /Primary key is revoked/);
    // generateKey()'s own revocation certificate is hard too.
    const { publicKey: viaCert } = await openpgp.revokeKey({
      key: k.publicKey,
      revocationCertificate: k.revocationCertificate,
      format: "object",
    });
    await rejects(verifyDetached(STATEMENT, old, [viaCert], { now: NOW }), ErrorCode.KEY_REVOKED);
  });

  it("a soft revocation (keySuperseded) keeps earlier signatures valid and refuses later ones", async () => {
    const k = await keypair();
    const before = await sign(k.privateKey, day(1));
    const after = await sign(k.privateKey, day(4));
    const { publicKey: retired } = await openpgp.revokeKey({
      key: k.privateKey,
      reasonForRevocation: { flag: keySuperseded },
      date: day(3),
      format: "object",
    });
    await expect(verifyDetached(STATEMENT, before, [retired], { now: NOW })).resolves.toMatchObject({ signedAt: day(1) });
    await rejects(verifyDetached(STATEMENT, after, [retired], { now: NOW }), ErrorCode.KEY_REVOKED, /Primary key is revoked/);
  });

  it("refuses a signature made after the key expired, and accepts one made before", async () => {
    const k = await keypair();
    const early = await sign(k.privateKey, day(1));
    const late = await sign(k.privateKey, day(6));
    // Same key material with a 5-day expiry: openpgp.js itself refuses to sign past expiry, so the
    // late signature is made by the copy without one.
    const expiring = await openpgp.reformatKey({
      privateKey: k.privateKey,
      userIDs: [USER],
      keyExpirationTime: 5 * 86_400,
      date: T0,
      format: "object",
    });
    await expect(verifyDetached(STATEMENT, early, [expiring.publicKey], { now: NOW })).resolves.toBeDefined();
    await rejects(verifyDetached(STATEMENT, late, [expiring.publicKey], { now: NOW }), ErrorCode.KEY_EXPIRED, /Primary key is expired/);
    await rejects(signDetached(STATEMENT, expiring.privateKey, { date: day(6) }), ErrorCode.KEY_EXPIRED);
  });

  it("a hard-revoked signing subkey is refused while the primary stays valid", async () => {
    const k = await keypair({ subkeys: [{ sign: true }] });
    const sig = await sign(k.privateKey, day(1));
    k.privateKey.subkeys[0] = await k.privateKey.subkeys[0]!.revoke(
      k.privateKey.keyPacket as openpgp.SecretKeyPacket,
      { flag: keyCompromised },
      day(2),
    );
    const keyring = await readPublicKeys(k.privateKey.toPublic().armor());
    await rejects(verifyDetached(STATEMENT, sig, keyring, { now: NOW }), ErrorCode.KEY_REVOKED, /Subkey is revoked/);
    expect(await describeKey(keyring[0]!)).toMatchObject({ revoked: false });
  });

  it("agrees with openpgp.verify() on every lifecycle case", async () => {
    const k = await keypair();
    const sigs = { d1: await sign(k.privateKey, day(1)), d4: await sign(k.privateKey, day(4)), d6: await sign(k.privateKey, day(6)) };
    const soft = (
      await openpgp.revokeKey({ key: k.privateKey, reasonForRevocation: { flag: keySuperseded }, date: day(3), format: "object" })
    ).publicKey;
    const hard = (
      await openpgp.revokeKey({ key: k.privateKey, reasonForRevocation: { flag: keyCompromised }, date: day(3), format: "object" })
    ).publicKey;
    const exp = (
      await openpgp.reformatKey({ privateKey: k.privateKey, userIDs: [USER], keyExpirationTime: 5 * 86_400, date: T0, format: "object" })
    ).publicKey;
    for (const key of [k.publicKey, soft, hard, exp, bob.publicKey]) {
      for (const sig of Object.values(sigs)) {
        for (const data of [STATEMENT, STATEMENT.subarray(1)]) {
          const ours = await verifyDetached(data, sig, [key], { now: NOW }).then(
            () => true,
            () => false,
          );
          expect(ours).toBe(await openpgpAccepts(data, sig, [key], NOW));
        }
      }
    }
  });
});

describe("keyrings", () => {
  it("reads several concatenated armored blocks (openpgp.readKeys keeps only the first) and binary keyrings", async () => {
    const armored = `# trusted publishers\n${alice.publicKey.armor()}\n# bob\n${bob.publicKey.armor()}`;
    expect(await openpgp.readKeys({ armoredKeys: armored })).toHaveLength(1);
    const fprs = [alice.publicKey.getFingerprint(), bob.publicKey.getFingerprint()];
    for (const input of [armored, new TextEncoder().encode(armored), Buffer.concat([alice.publicKey.write(), bob.publicKey.write()])]) {
      expect((await readPublicKeys(input)).map((k) => k.getFingerprint())).toEqual(fprs);
    }
  });

  it("merges copies of one key so a revocation in either copy counts", async () => {
    const k = await keypair();
    const sig = await sign(k.privateKey, day(1));
    const { publicKey: revoked } = await openpgp.revokeKey({
      key: k.privateKey,
      reasonForRevocation: { flag: keyCompromised },
      date: day(3),
      format: "object",
    });
    for (const text of [k.publicKey.armor() + revoked.armor(), revoked.armor() + k.publicKey.armor()]) {
      const keyring = await readPublicKeys(text);
      expect(keyring).toHaveLength(1);
      await rejects(verifyDetached(STATEMENT, sig, keyring, { now: NOW }), ErrorCode.KEY_REVOKED);
    }
  });

  it("refuses a keyring holding a private key, armored or binary", async () => {
    for (const input of [alice.privateKey.armor(), alice.privateKey.write(), `${bob.publicKey.armor()}\n${alice.privateKey.armor()}`]) {
      await rejects(
        readPublicKeys(input, "/etc/arcade/keyring.asc"),
        ErrorCode.KEYRING_INVALID,
        /keyring\.asc: contains a PRIVATE key: a trust store must only hold public keys/,
      );
    }
  });

  it("refuses empty, garbage, truncated and non-key keyrings, naming the source", async () => {
    const truncated = alice.publicKey.armor().slice(0, 200);
    const sig = (await signDetached(STATEMENT, alice.privateKey, { date: day(1) })) as string;
    const cases: [string | Uint8Array, RegExp][] = [
      ["", /is empty/],
      [new Uint8Array(0), /is empty/],
      ["hello, keyring", /only complete PUBLIC KEY BLOCKs/],
      [randomBytes(64), /not a readable OpenPGP keyring/],
      [truncated, /only complete PUBLIC KEY BLOCKs/],
      [`${bob.publicKey.armor()}\n${truncated}`, /only complete PUBLIC KEY BLOCKs/],
      [sig, /only complete PUBLIC KEY BLOCKs/],
      [alice.publicKey.armor().replace(/\n[A-Za-z0-9+/]{20}/, "\n!!!!"), /not a readable OpenPGP keyring/],
    ];
    for (const [input, message] of cases) {
      await rejects(readPublicKeys(input, "keys/trusted.asc"), ErrorCode.KEYRING_INVALID, message);
      await rejects(readPublicKeys(input, "keys/trusted.asc"), ErrorCode.KEYRING_INVALID, /^keys\/trusted\.asc: /);
    }
  });
});

describe("secret keys", () => {
  it("asks for a passphrase when the key is protected, and signs once given the right one", async () => {
    const { privateKey } = await keypair({ passphrase: "correct horse" });
    const armored = privateKey.armor();
    await rejects(
      readSecretKey(armored, undefined, "release.key"),
      ErrorCode.INVALID_ARGUMENT,
      /key is passphrase-protected: pass --passphrase-file/,
    );
    await rejects(readSecretKey(armored, "wrong", "release.key"), ErrorCode.INVALID_ARGUMENT, /Incorrect key passphrase/);
    const key = await readSecretKey(armored, "correct horse");
    const sig = await signDetached(STATEMENT, key, { date: day(1) });
    await expect(verifyDetached(STATEMENT, sig, [privateKey.toPublic()], { now: NOW })).resolves.toBeDefined();
  });

  it("refuses public keys, garbage, and keys that cannot sign today", async () => {
    await rejects(readSecretKey(alice.publicKey.armor()), ErrorCode.INVALID_ARGUMENT, /not of type private key/);
    await rejects(readSecretKey("nope"), ErrorCode.INVALID_ARGUMENT, /not an armored OpenPGP private key/);
    const expiring = await openpgp.reformatKey({ privateKey: alice.privateKey, userIDs: [USER], keyExpirationTime: 86_400, date: T0 });
    await rejects(readSecretKey(expiring.privateKey), ErrorCode.KEY_EXPIRED, /extend its expiry/);
    const { privateKey: revoked } = await openpgp.revokeKey({
      key: alice.privateKey,
      reasonForRevocation: { flag: keySuperseded },
      date: day(3),
    });
    await rejects(readSecretKey(revoked), ErrorCode.KEY_REVOKED);
  });
});

describe("key generation and description", () => {
  it("generates a gpg-2.2-compatible v4 EdDSA-legacy signing key, optionally protected and expiring", async () => {
    const expires = new Date(Date.now() + 400 * 86_400_000);
    const gen = await generateSigningKey({ ...USER, passphrase: "s3cret", expires });
    await rejects(readSecretKey(gen.privateKeyArmored), ErrorCode.INVALID_ARGUMENT, /passphrase-protected/);
    const key = await readSecretKey(gen.privateKeyArmored, "s3cret");
    expect(key.keyPacket.version).toBe(4);
    expect(key.getAlgorithmInfo()).toEqual({ algorithm: "eddsaLegacy", curve: "ed25519Legacy" });
    expect(key.subkeys).toHaveLength(0);
    const [pub] = await readPublicKeys(gen.publicKeyArmored);
    const info = await describeKey(pub!);
    expect(info).toMatchObject({ fingerprint: gen.fingerprint, userIds: ["Acme Releases <releases@acme.example>"], revoked: false });
    expect(Math.abs(info.expires!.getTime() - expires.getTime())).toBeLessThan(1000);
    expect(gen.fingerprint).toMatch(/^[0-9A-F]{40}$/);
  });

  it("refuses an expiry in the past and a malformed email", async () => {
    await rejects(generateSigningKey({ ...USER, expires: new Date(Date.now() - 1000) }), ErrorCode.INVALID_ARGUMENT, /not in the future/);
    await rejects(generateSigningKey({ name: "X", email: "not an email" }), ErrorCode.INVALID_ARGUMENT, /Invalid user ID format/);
  });

  it("describes creation, absence of expiry and revocation", async () => {
    expect(await describeKey(alice.privateKey)).toEqual({
      fingerprint: alice.publicKey.getFingerprint().toUpperCase(),
      userIds: ["Acme Releases <releases@acme.example>"],
      created: T0,
      revoked: false,
    });
    const { publicKey } = await openpgp.revokeKey({
      key: alice.privateKey,
      reasonForRevocation: { flag: keySuperseded },
      date: day(3),
      format: "object",
    });
    expect(await describeKey(publicKey)).toMatchObject({ revoked: true });
  });
});
