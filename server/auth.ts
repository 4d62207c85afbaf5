// Who is calling. Agents present the session token that Register gave them; admins present
// the admin token. Identity always comes from the token, never from a request field.
// (Enrollment tokens, per-agent secrets, roles and mTLS replace this with the identity issue.)
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Metadata } from "@grpc/grpc-js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import type { Db } from "./db/client.js";

export const sha256Hex = (s: string): string => createHash("sha256").update(s).digest("hex");

export function newToken(): string {
  return randomBytes(32).toString("base64url");
}

export function bearerToken(md: Metadata): string | undefined {
  const v = md.get("authorization")[0];
  if (typeof v !== "string") return undefined;
  const m = /^Bearer ([A-Za-z0-9_-]{16,256})$/.exec(v);
  return m?.[1];
}

/**
 * The admin token lives in <data_dir>/admin.token (0600), created at first start. The CLI reads
 * it from there, from --token or from ARCADE_ADMIN_TOKEN.
 */
export function ensureAdminToken(dataDir: string): { token: string; file: string } {
  const file = path.join(dataDir, "admin.token");
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try {
    return { token: fs.readFileSync(file, "utf8").trim(), file };
  } catch {
    const token = newToken();
    // "wx": if another process created it meanwhile, fail rather than overwrite its token.
    fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: "wx" });
    return { token, file };
  }
}

export function checkAdmin(md: Metadata, adminToken: string): void {
  const got = bearerToken(md);
  const a = Buffer.from(sha256Hex(got ?? ""));
  const b = Buffer.from(sha256Hex(adminToken));
  if (!got || !timingSafeEqual(a, b)) {
    throw new ArcadeError(
      ErrorCode.UNAUTHENTICATED,
      "missing or wrong admin token: pass --token, set ARCADE_ADMIN_TOKEN, or use --data-dir pointing at the server's data directory",
    );
  }
}

export async function createAgentSession(db: Db, agentId: string, ttlSeconds: number): Promise<string> {
  const token = newToken();
  await db.agentSession.create({
    data: { tokenHash: sha256Hex(token), agentId, expiresAt: new Date(Date.now() + ttlSeconds * 1000) },
  });
  return token;
}

/** The agent id bound to the call's session token. */
export async function authenticateAgent(db: Db, md: Metadata): Promise<string> {
  const token = bearerToken(md);
  if (!token) throw new ArcadeError(ErrorCode.UNAUTHENTICATED, "no session token: call Register first");
  const session = await db.agentSession.findUnique({ where: { tokenHash: sha256Hex(token) } });
  if (!session || session.expiresAt.getTime() < Date.now()) {
    throw new ArcadeError(ErrorCode.UNAUTHENTICATED, "session token unknown or expired: register again");
  }
  return session.agentId;
}
