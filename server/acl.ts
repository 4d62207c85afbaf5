// Which agents may use which plugins. Access is denied unless some grant allows it, and every
// comparison is on exact strings or whole `/`-separated segments: patterns are never turned into
// regexes or globs, so there is no prefix, case or Unicode trick that widens a grant. Grants read
// back from storage are re-checked while matching and a malformed one matches nothing, so a bad
// row fails closed instead of throwing in the middle of job dispatch.

import semver from "semver";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { isValidPluginId, isValidVersion } from "../signing/manifest.js";

export type Subject = { kind: "agent"; agentId: string } | { kind: "labels"; selector: Record<string, string> };
export type Grant = { id?: string; subject: Subject; pluginPattern: string; versionRange?: string };
export type AgentIdentity = { agentId: string; labels: Record<string, string> };
export type PluginRef = { id: string; version: string };

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// Keys are lowercase only (rejected, not folded) so "OS=linux" can never be read two ways;
// values are case-sensitive because they are compared verbatim with what the agent reports.
const LABEL_KEY = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const LABEL_VALUE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MAX_RANGE_LENGTH = 256;

const quote = (s: unknown) => JSON.stringify(String(s).slice(0, 200));
const invalid = (message: string) => new ArcadeError(ErrorCode.INVALID_ARGUMENT, message);

type Pattern = { kind: "all" } | { kind: "namespace"; namespace: string } | { kind: "exact"; id: string };

function classify(p: string): Pattern | undefined {
  if (p === "*") return { kind: "all" };
  if (p.endsWith("/*")) {
    const namespace = p.slice(0, -2);
    // Borrowing a placeholder name keeps namespace rules identical to the manifest's.
    return isValidPluginId(`${namespace}/x`) ? { kind: "namespace", namespace } : undefined;
  }
  return isValidPluginId(p) ? { kind: "exact", id: p } : undefined;
}

export function parsePluginPattern(p: string): string {
  if (typeof p !== "string" || classify(p) === undefined) {
    throw invalid(
      `invalid plugin pattern ${quote(p)}: expected an exact plugin id like notify/slack, a whole namespace like notify/*, ` +
        `or * for every plugin (lowercase letters, digits, ".", "_", "-"; no other wildcards, no "..", no spaces)`,
    );
  }
  return p;
}

/**
 * Returns semver's canonical comparator form ("^1" becomes ">=1.0.0 <2.0.0-0"), so equivalent
 * spellings are stored alike and what is stored is exactly what is enforced. An empty string is
 * refused (omit the range to mean "any version"), and so is a range no version can satisfy: a grant
 * that can never allow anything is a typo like ">=2 <1", and a silent deny is hard to diagnose.
 */
export function parseVersionRange(r: string): string {
  const hint = 'expected a semver range such as "^1.2.0", "~1.2", ">=1.2.0 <2" or "1.2.3"';
  if (typeof r !== "string" || r.trim() === "" || r.length > MAX_RANGE_LENGTH) throw invalid(`invalid version range ${quote(r)}: ${hint}`);
  const normal = semver.validRange(r);
  if (normal === null) throw invalid(`invalid version range ${quote(r)}: ${hint}`);
  if (semver.minVersion(normal) === null) throw invalid(`version range ${quote(r)} matches no version at all`);
  return normal;
}

/** "k=v,k2=v2" with optional spaces around pairs; at least one pair, no duplicate keys. */
export function parseLabels(s: string): Record<string, string> {
  if (typeof s !== "string" || s.trim() === "") throw invalid("empty label selector: expected key=value pairs like os=linux,arch=amd64");
  const out: Record<string, string> = {};
  for (const pair of s.split(",")) {
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair.trim() : pair.slice(0, eq).trim();
    const value = eq < 0 ? "" : pair.slice(eq + 1).trim();
    if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
      throw invalid(
        `invalid label ${quote(pair)} in ${quote(s)}: expected key=value with a lowercase key ` +
          `([a-z0-9._-], up to 63) and a value of [A-Za-z0-9._-] (1 to 63), both starting with a letter or digit`,
      );
    }
    if (Object.hasOwn(out, key)) throw invalid(`duplicate label key ${quote(key)} in ${quote(s)}`);
    out[key] = value;
  }
  return out;
}

/** "agent:<id>", "labels:k=v,..." or a bare agent id (":" never occurs in one, so this is unambiguous). */
export function parseSubject(s: string): Subject {
  if (typeof s === "string" && s.startsWith("labels:")) return { kind: "labels", selector: parseLabels(s.slice("labels:".length)) };
  const agentId = typeof s === "string" && s.startsWith("agent:") ? s.slice("agent:".length) : s;
  if (typeof agentId !== "string" || !AGENT_ID.test(agentId)) {
    throw invalid(`invalid subject ${quote(s)}: expected agent:<agent-id>, labels:key=value[,key=value...] or a bare agent id`);
  }
  return { kind: "agent", agentId };
}

export function formatSubject(s: Subject): string {
  if (s.kind === "agent") return `agent:${s.agentId}`;
  const keys = Object.keys(s.selector).sort();
  return `labels:${keys.map((k) => `${k}=${s.selector[k]}`).join(",")}`;
}

export function grantApplies(g: Grant, agent: AgentIdentity): boolean {
  const s = g.subject;
  if (s.kind === "agent") return AGENT_ID.test(s.agentId) && s.agentId === agent.agentId;
  if (s.kind !== "labels") return false;
  // An empty selector would match every agent; such a grant can only come from a bad row.
  const pairs = Object.entries(s.selector);
  return pairs.length > 0 && pairs.every(([k, v]) => Object.hasOwn(agent.labels, k) && agent.labels[k] === v);
}

function coversPlugin(pattern: string, id: string): boolean {
  const p = classify(pattern);
  if (p === undefined || !isValidPluginId(id)) return false;
  if (p.kind === "all") return true;
  if (p.kind === "namespace") return id.slice(0, id.indexOf("/")) === p.namespace;
  return id === p.id;
}

// Prereleases only match a range that names a prerelease of the same major.minor.patch (semver's
// default): ">=1.2.0 <2" does not hand out 1.5.0-beta or 2.0.0-rc.1 to agents pinned to releases.
function coversVersion(range: string | undefined, version: string): boolean {
  if (!isValidVersion(version)) return false;
  if (range === undefined) return true;
  return range.trim() !== "" && semver.satisfies(version, range, { includePrerelease: false });
}

export function grantAllows(g: Grant, agent: AgentIdentity, plugin: PluginRef): boolean {
  return grantApplies(g, agent) && coversPlugin(g.pluginPattern, plugin.id) && coversVersion(g.versionRange, plugin.version);
}

function describeGrant(g: Grant): string {
  if (g.id !== undefined) return `grant ${g.id}`;
  return `grant ${formatSubject(g.subject)} ${g.pluginPattern}${g.versionRange === undefined ? "" : ` (${g.versionRange})`}`;
}

export function isAllowed(grants: Grant[], agent: AgentIdentity, plugin: PluginRef): { allowed: boolean; grant?: Grant; reason: string } {
  const ref = `${plugin.id}@${plugin.version}`;
  if (!isValidPluginId(plugin.id) || !isValidVersion(plugin.version)) {
    return { allowed: false, reason: `invalid plugin reference ${quote(ref)} is never allowed` };
  }
  const applicable = grants.filter((g) => grantApplies(g, agent));
  const grant = applicable.find((g) => grantAllows(g, agent, plugin));
  if (grant !== undefined) return { allowed: true, grant, reason: `${describeGrant(grant)} allows agent ${agent.agentId} to use ${ref}` };
  const denied = `no grant for agent ${agent.agentId} covers ${ref}`;
  if (applicable.length === 0) return { allowed: false, reason: `${denied} (no grant applies to this agent; access is denied by default)` };
  if (applicable.some((g) => coversPlugin(g.pluginPattern, plugin.id))) {
    return { allowed: false, reason: `${denied} (grants for ${plugin.id} exclude version ${plugin.version})` };
  }
  return { allowed: false, reason: denied };
}

/**
 * Whether some single agent may use every one of `plugins`, i.e. whether a job needing all of them
 * can ever be dispatched. Holding each plugin on a different agent does not count. With no plugins
 * the answer is whether there is any agent at all.
 */
export function couldAnyAgentUse(grants: Grant[], agents: AgentIdentity[], plugins: PluginRef[]): boolean {
  return agents.some((a) => plugins.every((p) => isAllowed(grants, a, p).allowed));
}
