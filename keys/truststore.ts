// The verifier's own trust store, loaded from files named in its configuration: a plain file of
// armored OpenPGP public keys, and keyed Sigstore public keys with their hints. (The signed,
// versioned keyring document with rotation and revocation replaces these files in its own issue.)
import fsp from "node:fs/promises";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";
import { readPublicKeys } from "../signing/openpgp.js";
import type { TrustStore } from "../signing/release.js";
import { readSigstorePublicKey } from "../signing/sigstore.js";

export type TrustFiles = { keyring?: string; sigstoreKeys?: { hint: string; key: string }[] };

export async function loadTrustStore(t: TrustFiles): Promise<TrustStore> {
  const store: TrustStore = { openpgp: [], sigstore: [] };
  if (t.keyring) store.openpgp = await readPublicKeys(await readKeyFile(t.keyring), t.keyring);
  for (const k of t.sigstoreKeys ?? [])
    store.sigstore.push(readSigstorePublicKey((await readKeyFile(k.key)).toString("utf8"), k.hint, k.key));
  if (store.openpgp.length === 0 && store.sigstore.length === 0) {
    throw new ArcadeError(
      ErrorCode.KEYRING_INVALID,
      "no trusted keys configured: set trust.keyring (OpenPGP public keys) and/or trust.sigstore_keys",
    );
  }
  return store;
}

async function readKeyFile(file: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    throw new ArcadeError(ErrorCode.KEYRING_INVALID, `cannot read trusted key file ${file}: ${errorMessageOf(e)}`);
  }
}
