// `arcade plugin inspect`: what a tarball and its release files say about themselves; nothing
// is verified. Its own module so it loads no signing code (openpgp only to name the issuers of
// a signature that is there).
import { sha256File } from "../signing/digest.js";
import { errorMessageOf } from "../signing/errors.js";
import { pluginKey } from "../signing/manifest.js";
import { readManifestFromTarball } from "../signing/pack.js";
import { parseStatement } from "../signing/statement.js";
import { printJson, printable } from "./output.js";
import { readReleaseFiles } from "../signing/release-files.js";
import { requireFile } from "./files.js";

export async function inspectCommand(tgz: string, o: { json?: boolean } = {}): Promise<void> {
  await requireFile("<tarball>", tgz);
  const { sha256, size } = await sha256File(tgz);
  const manifest = await readManifestFromTarball(tgz);
  const release = await readReleaseFiles(tgz).catch(() => undefined);
  let statement: { plugin: string; publishedAt: string; matches: boolean } | { error: string } | undefined;
  if (release) {
    try {
      const st = parseStatement(release.statement);
      statement = { plugin: pluginKey(st.id, st.version), publishedAt: st.publishedAt, matches: st.sha256 === sha256 && st.size === size };
    } catch (e) {
      statement = { error: errorMessageOf(e) };
    }
  }
  const openpgp = await Promise.all((release?.openpgp ?? []).map(async (sig) => ({ keyIds: await issuersOf(sig) })));
  const sigstore = (release?.sigstore ?? []).map((b) => ({ hint: sigstoreHint(b) }));
  if (o.json) {
    printJson({ file: tgz, sha256, size, manifest, signed: release !== undefined, statement, openpgp, sigstore, verified: false });
    return;
  }
  const lines = [`${tgz}\n  sha256    ${sha256}\n  size      ${size} bytes`];
  lines.push(`  manifest  ${JSON.stringify(manifest, null, 2).replace(/\n/g, "\n            ")}`);
  if (!release) lines.push("  release   none: unsigned (sign with `arcade plugin sign`)");
  else if (statement && "error" in statement) lines.push(`  statement unreadable: ${statement.error}`);
  else if (statement)
    lines.push(
      `  statement ${statement.plugin} published ${statement.publishedAt}, ${statement.matches ? "matches these bytes" : "DOES NOT match these bytes"} (unverified)`,
    );
  for (const s of openpgp)
    lines.push(
      `  openpgp   signature by key ${s.keyIds.join(", ") || "(unparseable signature)"} (unverified; run \`arcade plugin verify --keyring ...\`)`,
    );
  for (const s of sigstore) lines.push(`  sigstore  bundle for key hint ${s.hint ?? "?"} (unverified)`);
  // The tarball is untrusted input: its manifest text reaches the terminal neutralised.
  console.log(printable(lines.join("\n")));
}

async function issuersOf(sig: Uint8Array): Promise<string[]> {
  try {
    const { readSignature } = await import("openpgp");
    const text = Buffer.from(sig).toString("utf8");
    const s = text.startsWith("-----BEGIN PGP SIGNATURE")
      ? await readSignature({ armoredSignature: text })
      : await readSignature({ binarySignature: sig });
    return s.getSigningKeyIDs().map((k) => k.toHex().toUpperCase());
  } catch {
    return [];
  }
}

function sigstoreHint(bundle: string): string | undefined {
  try {
    return (JSON.parse(bundle) as { verificationMaterial?: { publicKey?: { hint?: string } } }).verificationMaterial?.publicKey?.hint;
  } catch {
    return undefined;
  }
}
