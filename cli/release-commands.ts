// `arcade plugin init|sign|verify|inspect` and `arcade keys generate`: the publisher's side of
// signing and the verifier's view of a release, with a verdict a person can read.
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { loadTrustStore, type TrustFiles } from "../keys/truststore.js";
import { sha256File } from "../signing/digest.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { isValidPluginId, pluginKey } from "../signing/manifest.js";
import { generateSigningKey, readSecretKey } from "../signing/openpgp.js";
import { readManifestFromTarball } from "../signing/pack.js";
import { readReleaseFiles, signRelease, verifyRelease, type ReleaseSigner } from "../signing/release.js";
import { generateSigstoreKeyPair } from "../signing/sigstore.js";
import { checkManifestMatchesStatement, checkStatementMatches } from "../signing/statement.js";
import { packPlugin } from "../signing/pack.js";
import { readFlagFile, requireFile } from "./files.js";
import { printJson } from "./output.js";

export async function packCommand(dir: string, o: { out?: string }): Promise<void> {
  const text = await readFlagFile("<dir>", path.join(dir, "manifest.json"));
  let manifest: { id?: string; version?: string };
  try {
    manifest = JSON.parse(text) as typeof manifest;
  } catch (e) {
    throw new ArcadeError(ErrorCode.MANIFEST_INVALID, `${path.join(dir, "manifest.json")}: not JSON: ${errorMessageOf(e)}`);
  }
  const out = o.out ?? `${String(manifest.id).replace("/", "-")}-${manifest.version}.tgz`;
  const r = await packPlugin(dir, out);
  console.log(`${out}\n  ${r.manifest.id}@${r.manifest.version}  sha256 ${r.sha256}  ${r.size} bytes`);
}

export type SignFlags = { key?: string; passphraseFile?: string; sigstoreKey?: string; sigstoreHint?: string };

export async function signCommand(tgz: string, o: SignFlags): Promise<void> {
  if (!o.key && !o.sigstoreKey)
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "nothing to sign with: pass --key <OpenPGP secret key> and/or --sigstore-key <PEM>");
  if (o.sigstoreKey && !o.sigstoreHint)
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "--sigstore-key needs --sigstore-hint (the name verifiers know the key by)");
  const passphrase = o.passphraseFile ? (await readFlagFile("--passphrase-file", o.passphraseFile)).trimEnd() : undefined;
  const keyText = o.key ? await readFlagFile("--key", o.key) : undefined;
  const sigstorePem = o.sigstoreKey ? await readFlagFile("--sigstore-key", o.sigstoreKey) : undefined;
  await requireFile("<tarball>", tgz);
  const manifest = await readManifestFromTarball(tgz);
  const { sha256, size } = await sha256File(tgz);
  const openpgpKey = keyText !== undefined ? await readSecretKey(keyText, passphrase, o.key) : undefined;
  const sigstore = sigstorePem !== undefined ? { privateKeyPem: sigstorePem, hint: o.sigstoreHint! } : undefined;
  const { statement, files } = await signRelease(tgz, { manifest, sha256, size }, { openpgpKey, sigstore });
  console.log(`signed ${pluginKey(statement.id, statement.version)}  sha256 ${statement.sha256}  ${statement.size} bytes`);
  for (const f of files) console.log(`  wrote ${f}`);
}

export type TrustFlags = { keyring?: string; sigstoreKey?: string[] };

export async function trustFromFlags(o: TrustFlags): Promise<TrustFiles> {
  const sigstoreKeys = (o.sigstoreKey ?? []).map((s) => {
    const i = s.indexOf("=");
    if (i < 1) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--sigstore-key ${s}: expected <hint>=<public key PEM file>`);
    return { hint: s.slice(0, i), key: s.slice(i + 1) };
  });
  if (!o.keyring && sigstoreKeys.length === 0)
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      "no trusted keys: pass --keyring <file> (armored OpenPGP public keys) and/or --sigstore-key <hint>=<public key PEM>",
    );
  if (o.keyring) await readFlagFile("--keyring", o.keyring);
  for (const k of sigstoreKeys) await readFlagFile("--sigstore-key", k.key);
  return { keyring: o.keyring, sigstoreKeys };
}

/** The verifier's sequence, as an agent runs it, printed step by step. Returns the exit code. */
export async function verifyCommand(tgz: string, o: TrustFlags & { json?: boolean }): Promise<number> {
  const steps: { step: string; detail: string }[] = [];
  const step = (name: string, detail: string) => {
    steps.push({ step: name, detail });
    if (!o.json) console.log(`  ok  ${name.padEnd(10)} ${detail}`);
  };
  // Flag mistakes are usage errors (error CODE, exit 1), not a verdict on the tarball.
  const trustFiles = await trustFromFlags(o);
  await requireFile("<tarball>", tgz);
  try {
    const trust = await loadTrustStore(trustFiles);
    const { sha256, size } = await sha256File(tgz);
    step("digest", `sha256 ${sha256}, ${size} bytes`);
    const { statement, signers } = await verifyRelease(await readReleaseFiles(tgz), trust);
    for (const s of signers) step("signature", describe(s));
    checkStatementMatches(statement, { sha256, size }, tgz);
    step("statement", `${pluginKey(statement.id, statement.version)} published ${statement.publishedAt}, names these bytes`);
    const manifest = await readManifestFromTarball(tgz);
    checkManifestMatchesStatement(manifest, statement);
    step(
      "manifest",
      `${manifest.id}@${manifest.version}: entry ${manifest.entry}, stages ${manifest.stages.join(", ")}, network ${manifest.permissions.network ? "requested" : "no"}`,
    );
    if (o.json) printJson({ verified: true, plugin: pluginKey(statement.id, statement.version), sha256, size, signers, steps });
    else console.log(`VERIFIED ${pluginKey(statement.id, statement.version)}`);
    return 0;
  } catch (e) {
    if (o.json) printJson({ verified: false, code: errorCodeOf(e), message: errorMessageOf(e), steps });
    else console.log(`REFUSED ${errorCodeOf(e)}: ${errorMessageOf(e)}`);
    return 1;
  }
}

function describe(s: ReleaseSigner): string {
  return s.kind === "openpgp"
    ? `OpenPGP ${s.fingerprint} ${s.userIds.join(", ")} (signed ${s.signedAt.toISOString()})`
    : `Sigstore key ${s.hint}`;
}

export async function generateKeysCommand(o: {
  name: string;
  email: string;
  out: string;
  sigstore?: boolean;
  passphraseFile?: string;
}): Promise<void> {
  await fsp.mkdir(o.out, { recursive: true, mode: 0o700 });
  const passphrase = o.passphraseFile ? (await readFlagFile("--passphrase-file", o.passphraseFile)).trimEnd() : undefined;
  const k = await generateSigningKey({ name: o.name, email: o.email, passphrase });
  const secret = path.join(o.out, "publisher.secret.asc");
  const pub = path.join(o.out, "publisher.asc");
  writeNew(secret, k.privateKeyArmored, 0o600);
  writeNew(pub, k.publicKeyArmored, 0o644);
  console.log(
    `OpenPGP signing key ${k.fingerprint}\n  secret  ${secret} (keep it offline; sign with --key)\n  public  ${pub} (give it to servers and agents as trust.keyring)`,
  );
  if (o.sigstore) {
    const s = generateSigstoreKeyPair();
    writeNew(path.join(o.out, "sigstore.key.pem"), s.privateKeyPem, 0o600);
    writeNew(path.join(o.out, "sigstore.pub.pem"), s.publicKeyPem, 0o644);
    console.log(
      `Sigstore (keyed, ECDSA P-256)\n  secret  ${path.join(o.out, "sigstore.key.pem")}\n  public  ${path.join(o.out, "sigstore.pub.pem")}`,
    );
  }
}

function writeNew(file: string, body: string, mode: number): void {
  // "wx": never overwrite an existing key by accident.
  try {
    fs.writeFileSync(file, body, { mode, flag: "wx" });
  } catch (e) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${file}: ${errorMessageOf(e)} (refusing to overwrite a key file)`);
  }
}

export async function initCommand(dir: string, o: { id: string; version: string }): Promise<void> {
  if (!isValidPluginId(o.id))
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--id ${o.id}: expected a lowercase namespace/name such as notify/slack`);
  if (fs.existsSync(path.join(dir, "manifest.json")))
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${dir} already has a manifest.json`);
  await fsp.mkdir(dir, { recursive: true });
  const manifest = {
    schemaVersion: 1,
    id: o.id,
    version: o.version,
    entry: "index.mjs",
    runtime: "node",
    stages: ["before", "after"],
    permissions: { network: false, env: [], paths: [] },
    description: `${o.id}: describe what this plugin does`,
  };
  await fsp.writeFile(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  await fsp.writeFile(
    path.join(dir, "index.mjs"),
    `// ${o.id}: each exported stage runs in its own process on the agent.
// ctx: { stage, config, job: { id, workspace, status }, plugin: { id, version }, log(message) }
// Return a JSON value (it becomes the step's result) or throw to fail the step.

export async function before(ctx) {
  ctx.log(\`preparing job \${ctx.job.id}\`);
  return { ready: true };
}

export async function after(ctx) {
  return \`job \${ctx.job.id} \${ctx.job.status}\`;
}

// Optional: a quick check of the plugin's own health (the agent's self-test gate, which runs it
// before a plugin is marked usable, arrives with the sandbox work).
export async function selfTest() {
  return "ok";
}
`,
  );
  console.log(
    `created ${dir}/manifest.json and ${dir}/index.mjs\nnext: arcade plugin pack ${dir} && arcade plugin sign <tgz> --key <secret key>`,
  );
}
