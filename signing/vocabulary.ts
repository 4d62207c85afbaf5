// Enumerated values that both the server and the CLI need: audit actions and outcomes, admin
// roles. They live here (not in server/) so `arcade audit query --action ...` can check a
// filter before it asks the server, without importing the server. No dependencies: the CLI
// loads this on its fast path.

export const AUDIT_OUTCOMES = ["allowed", "denied", "succeeded", "failed"] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Every fixed action the server records (server/grpc/*, server/jobs.ts). */
export const AUDIT_ACTIONS = [
  "acl.grant",
  "acl.revoke",
  "agent.create",
  "agent.credential.rotate",
  "agent.enroll",
  "agent.revoke",
  "auth.admin",
  "auth.agent",
  "job.complete",
  "job.dispatch",
  // a pending job no agent took within jobs.pending_timeout
  "job.expire",
  "job.submit",
  "plugin.download",
  "plugin.publish",
  "token.create",
] as const;

/** AdminService RPCs: a call refused for lack of permission is recorded as `rpc.<Name>`. */
export const ADMIN_RPCS = [
  "CheckAcl",
  "CreateAdminToken",
  "CreateAgent",
  "GetJob",
  "GrantAcl",
  "ListAcl",
  "ListAgents",
  "ListPlugins",
  "PublishPlugin",
  "QueryAudit",
  "RevokeAcl",
  "RevokeAgent",
  "SubmitJob",
] as const;

export type AdminRpc = (typeof ADMIN_RPCS)[number];
export type AuditAction = (typeof AUDIT_ACTIONS)[number] | `rpc.${AdminRpc}`;

export function allAuditActions(): string[] {
  return [...AUDIT_ACTIONS, ...ADMIN_RPCS.map((r) => `rpc.${r}`)];
}

export const ADMIN_ROLES = ["admin", "publisher", "security", "operator", "auditor"] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];
