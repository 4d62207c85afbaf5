// Drives the real gpg CLI for interop tests, each in a throwaway GNUPGHOME so nothing touches the
// user's keyring and no gpg-agent outlives its test.

import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type GpgResult = { code: number; stdout: Buffer; stderr: string };
export type GpgStatus = { code: string; args: string[] };

// Unattended: no tty, no pinentry, and keys generated without a passphrase.
const BATCH = ["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""];

function run(file: string, args: string[], input: string | Uint8Array | undefined, home: string | undefined): Promise<GpgResult> {
  return new Promise((resolve, reject) => {
    const env = home ? { ...process.env, GNUPGHOME: home } : process.env;
    const child = execFile(file, args, { env, encoding: "buffer", timeout: 60_000 }, (err, stdout, stderr) => {
      // A non-zero exit is an answer (BADSIG exits 1), not a failure of the harness.
      if (err && typeof err.code !== "number") reject(err);
      else resolve({ code: typeof err?.code === "number" ? err.code : 0, stdout, stderr: stderr.toString("utf8") });
    });
    child.stdin?.end(input);
  });
}

export function runGpg(args: string[], input?: string | Uint8Array, home?: string): Promise<GpgResult> {
  return run("gpg", [...BATCH, ...args], input, home);
}

/** `[GNUPG:] CODE arg arg...` lines from --status-fd output; other lines are ignored. */
export function parseGpgStatus(text: string): GpgStatus[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith("[GNUPG:] "))
    .map((line) => {
      const [code = "", ...args] = line.slice("[GNUPG:] ".length).trimEnd().split(" ");
      return { code, args };
    });
}

/** gpg's version line, or undefined when gpg is not on PATH. */
export async function gpgVersion(): Promise<string | undefined> {
  try {
    const { code, stdout } = await run("gpg", ["--version"], undefined, undefined);
    return code === 0 ? stdout.toString("utf8").split("\n")[0] : undefined;
  } catch {
    return undefined;
  }
}

export async function withGnupgHome<T>(fn: (home: string) => Promise<T>): Promise<T> {
  // Short path under /tmp: gpg-agent's socket lives in GNUPGHOME and unix socket paths are limited to ~108 bytes.
  const home = await mkdtemp(join(tmpdir(), "gpg-"));
  await chmod(home, 0o700);
  try {
    return await fn(home);
  } finally {
    await run("gpgconf", ["--kill", "all"], undefined, home).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
  }
}
