// Grants as stored in the database, read per decision so every server replica sees a change at
// once, and the checks FetchJob, DownloadPlugin and SubmitJob make with them.
import { randomUUID } from "node:crypto";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { pluginKey } from "../signing/manifest.js";
import {
  couldAnyAgentUse,
  formatSubject,
  isAllowed,
  parsePluginPattern,
  parseSubject,
  parseVersionRange,
  type AgentIdentity,
  type Grant,
} from "./acl.js";
import type { Db } from "./db/client.js";

export type PluginUse = { id: string; version: string };

export class AclStore {
  constructor(private readonly db: Db) {}

  async grants(): Promise<Grant[]> {
    const rows = await this.db.aclGrant.findMany({ orderBy: { createdAt: "asc" } });
    const grants: Grant[] = [];
    for (const r of rows) {
      // A row this code cannot read grants nothing (fail closed) and must not break every decision.
      try {
        grants.push({
          id: r.id,
          subject: parseSubject(r.subject),
          pluginPattern: r.pluginPattern,
          versionRange: r.versionRange ?? undefined,
        });
      } catch {
        continue;
      }
    }
    return grants;
  }

  /** Validates and stores a grant; returns its id. */
  async grant(o: {
    subject: string;
    pluginPattern: string;
    versionRange?: string;
    createdBy: string;
  }): Promise<{ id: string; subject: string }> {
    const subject = formatSubject(parseSubject(o.subject));
    const pluginPattern = parsePluginPattern(o.pluginPattern);
    const versionRange = o.versionRange ? parseVersionRange(o.versionRange) : null;
    const id = randomUUID();
    await this.db.aclGrant.create({ data: { id, subject, pluginPattern, versionRange, createdBy: o.createdBy } });
    return { id, subject };
  }

  async revoke(id: string): Promise<void> {
    const r = await this.db.aclGrant.deleteMany({ where: { id } });
    if (r.count === 0) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `no ACL grant ${id}`);
  }

  async agentsNow(): Promise<AgentIdentity[]> {
    const rows = await this.db.agent.findMany({ where: { revokedAt: null }, select: { id: true, labels: true } });
    return rows.map((a) => ({ agentId: a.id, labels: JSON.parse(a.labels) as Record<string, string> }));
  }
}

export async function checkPluginAllowed(acl: AclStore, who: AgentIdentity, plugin: PluginUse): Promise<void> {
  const d = isAllowed(await acl.grants(), who, plugin);
  if (!d.allowed)
    throw new ArcadeError(ErrorCode.ACL_DENIED, `agent ${who.agentId} may not use ${pluginKey(plugin.id, plugin.version)}: ${d.reason}`);
}

/** All of a job's plugins allowed for this agent? Returns the first refusal's reason. */
export function jobAllowed(
  grants: Grant[],
  who: AgentIdentity,
  plugins: PluginUse[],
): { allowed: true } | { allowed: false; reason: string } {
  for (const p of plugins) {
    const d = isAllowed(grants, who, p);
    if (!d.allowed) return { allowed: false, reason: `${pluginKey(p.id, p.version)}: ${d.reason}` };
  }
  return { allowed: true };
}

/**
 * At submit time: refuse a job no agent could ever be handed as things stand (a targeted agent
 * not granted every plugin, or no agent at all granted them), instead of letting it wait forever.
 */
export async function checkJobDispatchable(acl: AclStore, targetAgentId: string, plugins: PluginUse[]): Promise<void> {
  // A job for an agent that does not exist (a typo) or was revoked could never run: refuse it
  // now, plugins or not, rather than let it wait for jobs.pending_timeout.
  const agents = targetAgentId || plugins.length > 0 ? await acl.agentsNow() : [];
  const target = targetAgentId ? agents.find((a) => a.agentId === targetAgentId) : undefined;
  if (targetAgentId && !target)
    throw new ArcadeError(
      ErrorCode.AGENT_NOT_FOUND,
      `there is no active agent ${JSON.stringify(targetAgentId)} (unknown or revoked): check the id with \`arcade agent list\`, or create it with \`arcade agent create\``,
    );
  if (plugins.length === 0) return;
  const grants = await acl.grants();
  if (target) {
    const d = jobAllowed(grants, target, plugins);
    if (!d.allowed)
      throw new ArcadeError(
        ErrorCode.ACL_DENIED,
        `agent ${targetAgentId} could never run this job: ${d.reason}; grant it first (arcade acl grant)`,
      );
    return;
  }
  if (!couldAnyAgentUse(grants, agents, plugins)) {
    throw new ArcadeError(ErrorCode.ACL_DENIED, "no agent is granted every plugin this job uses; grant them first (arcade acl grant)");
  }
}
