// Files named on the command line: a missing or unreadable one is the user's to fix, so the
// error names the flag (INVALID_ARGUMENT), never INTERNAL.
import fsp from "node:fs/promises";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";

export async function readFlagFile(flag: string, file: string): Promise<string> {
  try {
    return await fsp.readFile(file, "utf8");
  } catch (e) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${flag} ${file}: ${why(e)}`);
  }
}

/** Fails naming `what` when `file` is not a readable file. */
export async function requireFile(what: string, file: string): Promise<void> {
  const st = await fsp.stat(file).catch((e: unknown) => e as Error);
  if (st instanceof Error) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${what} ${file}: ${why(st)}`);
  if (!st.isFile()) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${what} ${file}: not a file`);
}

function why(e: unknown): string {
  return (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : errorMessageOf(e);
}
