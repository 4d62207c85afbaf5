// Who is calling, derived only from credentials, never from request fields.
//   - Admin tokens carry a role; each admin RPC names the permission it needs.
//   - Agents enroll once with a one-time token and then present their long-lived credential.
// Secrets are random 256-bit values; only their SHA-256 is stored (a slow hash adds nothing
// for secrets that cannot be guessed).
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Metadata } from "@grpc/grpc-js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { ADMIN_ROLES, type AdminRole } from "../signing/vocabulary.js";
import type { Db } from "./db/client.js";

export const sha256Hex = (s: string): string => createHash("sha256").update(s).digest("hex");

export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

export function bearerToken(md: Metadata): string | undefined {
  const v = md.get("authorization")[0];
  if (typeof v !== "string") return undefined;
  return /^Bearer ([A-Za-z0-9_-]{16,256})$/.exec(v)?.[1];
}

export function enrollmentToken(md: Metadata): string | undefined {
  const v = md.get("x-arcade-enrollment-token")[0];
  return typeof v === "string" && /^[A-Za-z0-9_-]{16,256}$/.test(v) ? v : undefined;
}

// --- admin ---------------------------------------------------------------------------------

export const ROLES = ADMIN_ROLES;
export type Role = AdminRole;

export const PERMISSIONS = {
  "plugin.publish": ["admin", "publisher"],
  "plugin.read": ["admin", "publisher", "security", "operator", "auditor"],
  "job.submit": ["admin", "operator"],
  "job.read": ["admin", "operator", "auditor"],
  "agent.manage": ["admin", "operator"],
  "agent.read": ["admin", "operator", "auditor"],
  "acl.manage": ["admin", "operator"],
  "acl.read": ["admin", "operator", "auditor", "security"],
  "audit.read": ["admin", "auditor", "security"],
  "token.manage": ["admin"],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

export type AdminIdentity = { name: string; role: Role };

/**
 * The bootstrap admin token lives in <data_dir>/admin.token (0600), created at first start and
 * registered with role admin. Use it to create narrower tokens (`arcade admin token create`).
 */
export async function ensureBootstrapAdmin(db: Db, dataDir: string): Promise<string> {
  const file = path.join(dataDir, "admin.token");
  let token: string;
  try {
    token = fs.readFileSync(file, "utf8").trim();
  } catch {
    token = newSecret("arc_admin");
    // "wx": if another process created it meanwhile, fail rather than overwrite its token.
    fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: "wx" });
  }
  const tokenHash = sha256Hex(token);
  const existing = await db.adminToken.findUnique({ where: { tokenHash } });
  if (!existing) await db.adminToken.create({ data: { tokenHash, name: "bootstrap", role: "admin", createdBy: "server" } });
  return file;
}

export async function authenticateAdmin(db: Db, md: Metadata): Promise<AdminIdentity> {
  const token = bearerToken(md);
  const row = token ? await db.adminToken.findUnique({ where: { tokenHash: sha256Hex(token) } }) : null;
  if (!row || row.revokedAt) {
    throw new ArcadeError(
      ErrorCode.UNAUTHENTICATED,
      "missing, unknown or revoked admin token: pass --token, set ARCADE_ADMIN_TOKEN, or point --data-dir at the server's data directory",
    );
  }
  await db.adminToken.update({ where: { tokenHash: row.tokenHash }, data: { lastUsedAt: new Date() } });
  return { name: row.name, role: row.role as Role };
}

export function authorize(who: AdminIdentity, permission: Permission): void {
  if (!(PERMISSIONS[permission] as readonly string[]).includes(who.role)) {
    throw new ArcadeError(
      ErrorCode.PERMISSION_DENIED,
      `token "${who.name}" has role ${who.role}, which lacks the permission ${permission} (held by: ${PERMISSIONS[permission].join(", ")})`,
      { permission },
    );
  }
}

export async function createAdminToken(db: Db, name: string, role: string, createdBy: string): Promise<string> {
  if (!(ROLES as readonly string[]).includes(role))
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `role must be one of ${ROLES.join(", ")}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$/.test(name))
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "token name: 1-64 letters, digits, spaces, . _ @ -");
  const token = newSecret("arc_admin");
  await db.adminToken.create({ data: { tokenHash: sha256Hex(token), name, role, createdBy } });
  return token;
}

// --- agents --------------------------------------------------------------------------------

export type AgentIdentity = { agentId: string; labels: Record<string, string>; credentialHash: string };

export async function createEnrollmentToken(db: Db, agentId: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
  const token = newSecret("arc_enroll");
  const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
  await db.enrollmentToken.create({ data: { tokenHash: sha256Hex(token), agentId, expiresAt } });
  return { token, expiresAt };
}

/** First Register: the one-time token names the agent; it is spent and a credential issued. */
export async function enroll(db: Db, agentId: string, token: string): Promise<string> {
  const row = await db.enrollmentToken.findUnique({ where: { tokenHash: sha256Hex(token) }, include: { agent: true } });
  const refuse = (why: string) =>
    new ArcadeError(ErrorCode.UNAUTHENTICATED, `enrollment refused: ${why}; ask an operator for a new token (arcade agent create)`);
  if (!row) throw refuse("unknown enrollment token");
  if (row.agentId !== agentId) throw refuse(`the token was issued for another agent, not ${agentId}`);
  if (row.usedAt) throw refuse("the token was already used");
  if (row.expiresAt.getTime() < Date.now()) throw refuse("the token has expired");
  if (row.agent.revokedAt) throw refuse(`agent ${agentId} is revoked`);
  // Spend the token atomically: of two racing enrollments only one wins.
  const spent = await db.enrollmentToken.updateMany({ where: { tokenHash: row.tokenHash, usedAt: null }, data: { usedAt: new Date() } });
  if (spent.count !== 1) throw refuse("the token was already used");
  const secret = newSecret("arc_agent");
  await db.agentCredential.create({ data: { secretHash: sha256Hex(secret), agentId } });
  await db.agent.update({ where: { id: agentId }, data: { enrolledAt: row.agent.enrolledAt ?? new Date() } });
  return secret;
}

export async function authenticateAgent(db: Db, md: Metadata): Promise<AgentIdentity> {
  const secret = bearerToken(md);
  if (!secret) throw new ArcadeError(ErrorCode.UNAUTHENTICATED, "no agent credential: enroll the agent with its enrollment token first");
  const row = await db.agentCredential.findUnique({ where: { secretHash: sha256Hex(secret) }, include: { agent: true } });
  if (!row || row.revokedAt) throw new ArcadeError(ErrorCode.UNAUTHENTICATED, "agent credential unknown or revoked");
  if (row.agent.revokedAt) throw new ArcadeError(ErrorCode.UNAUTHENTICATED, `agent ${row.agentId} is revoked`);
  return { agentId: row.agentId, labels: JSON.parse(row.agent.labels) as Record<string, string>, credentialHash: row.secretHash };
}

export async function rotateCredential(db: Db, who: AgentIdentity): Promise<string> {
  const secret = newSecret("arc_agent");
  await db.$transaction([
    db.agentCredential.create({ data: { secretHash: sha256Hex(secret), agentId: who.agentId } }),
    db.agentCredential.update({ where: { secretHash: who.credentialHash }, data: { revokedAt: new Date() } }),
  ]);
  return secret;
}
