// The agent's long-lived credential, kept in a 0600 file written atomically. The first start
// exchanges a one-time enrollment token for it; every later start reads it back.
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { bearer } from "../proto/rpc.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";

export function readCredential(file: string): string | undefined {
  try {
    const st = fs.statSync(file);
    // A credential others can read is a leaked credential: refuse rather than use it.
    if (st.mode & 0o077)
      throw new ArcadeError(
        ErrorCode.CONFIG_INVALID,
        `${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
      );
    const v = fs.readFileSync(file, "utf8").trim();
    return v || undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

export async function writeCredential(file: string, credential: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await fsp.open(tmp, "w", 0o600);
  try {
    await fh.writeFile(`${credential}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}

/** Metadata for Register: the credential if enrolled, else the one-time enrollment token. */
export function registerMetadata(credential: string | undefined, enrollmentToken: string | undefined, credentialFile: string): Metadata {
  if (credential) return bearer(credential);
  if (!enrollmentToken) {
    throw new ArcadeError(
      ErrorCode.CONFIG_INVALID,
      `agent is not enrolled (no credential in ${credentialFile}): set enrollment_token_file (or ARCADE_AGENT_ENROLLMENT_TOKEN) to the token from \`arcade agent create\``,
    );
  }
  const md = new Metadata();
  md.set("x-arcade-enrollment-token", enrollmentToken);
  return md;
}
