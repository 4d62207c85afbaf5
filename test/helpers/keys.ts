// One publisher identity per test process: an OpenPGP key and a keyed Sigstore key pair, with
// the public halves written where servers and agents read their trust from.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { PrivateKey } from "openpgp";
import { generateSigningKey, readSecretKey } from "../../signing/openpgp.js";
import { generateSigstoreKeyPair } from "../../signing/sigstore.js";

export type Publisher = {
  dir: string;
  keyring: string;
  secretKeyFile: string;
  secretKey: PrivateKey;
  fingerprint: string;
  sigstore: { hint: string; privateKeyPem: string; publicKeyFile: string; privateKeyFile: string };
};

const cache = new Map<string, Promise<Publisher>>();

/** A publisher by name (created once per test process); different names are different keys. */
export function publisher(name = "test-publisher"): Promise<Publisher> {
  let p = cache.get(name);
  if (!p) {
    p = create(name);
    cache.set(name, p);
  }
  return p;
}

async function create(name: string): Promise<Publisher> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `arcade-keys-${name}-`));
  const k = await generateSigningKey({ name, email: `${name}@arcade.invalid` });
  const keyring = path.join(dir, "publishers.asc");
  const secretKeyFile = path.join(dir, "publisher.secret.asc");
  fs.writeFileSync(keyring, k.publicKeyArmored);
  fs.writeFileSync(secretKeyFile, k.privateKeyArmored, { mode: 0o600 });
  const s = generateSigstoreKeyPair();
  const publicKeyFile = path.join(dir, "sigstore.pub.pem");
  const privateKeyFile = path.join(dir, "sigstore.key.pem");
  fs.writeFileSync(publicKeyFile, s.publicKeyPem);
  fs.writeFileSync(privateKeyFile, s.privateKeyPem, { mode: 0o600 });
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    keyring,
    secretKeyFile,
    secretKey: await readSecretKey(k.privateKeyArmored),
    fingerprint: k.fingerprint,
    sigstore: { hint: `${name}-sigstore`, privateKeyPem: s.privateKeyPem, publicKeyFile, privateKeyFile },
  };
}
