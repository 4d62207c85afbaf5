// The files of a release beside its tarball: <tgz>.statement.json and its signatures. Reading
// them needs no crypto; signing/release.ts verifies them.
import fsp from "node:fs/promises";
import { ArcadeError, ErrorCode } from "./errors.js";

export type Release = {
  /** Canonical statement bytes, exactly as signed. */
  statement: Uint8Array;
  /** Detached OpenPGP signatures over `statement`, armored or binary. */
  openpgp: Uint8Array[];
  /** Keyed Sigstore bundles (JSON) whose DSSE payload carries the statement as its predicate. */
  sigstore: string[];
};

export function releaseFiles(tgz: string): { statement: string; asc: string; sig: string; sigstore: string } {
  return {
    statement: `${tgz}.statement.json`,
    asc: `${tgz}.statement.json.asc`,
    sig: `${tgz}.statement.json.sig`,
    sigstore: `${tgz}.sigstore.json`,
  };
}

/** Reads <tgz>.statement.json and whichever signatures sit beside it (.asc, .sig, .sigstore.json). */
export async function readReleaseFiles(tgz: string): Promise<Release> {
  const f = releaseFiles(tgz);
  const read = (p: string) => fsp.readFile(p).catch(() => undefined);
  const statement = await read(f.statement);
  if (!statement)
    throw new ArcadeError(
      ErrorCode.SIGNATURE_MISSING,
      `${f.statement} not found: sign the plugin with \`arcade plugin sign ${tgz} --key <secret key>\``,
    );
  const [asc, sig, bundle] = await Promise.all([read(f.asc), read(f.sig), read(f.sigstore)]);
  return {
    statement,
    openpgp: [asc, sig].filter((x) => x !== undefined),
    sigstore: bundle ? [bundle.toString("utf8")] : [],
  };
}
