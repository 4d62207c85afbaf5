// `arcade agent create|revoke|list|rotate`, `arcade acl grant|revoke|list|check`,
// `arcade admin token create` and `arcade audit query`: the operator's, security team's and
// auditor's commands over AdminService.
// Loaded on every command to build the help tree: actions import what they use when they run.
import type { Command } from "commander";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { ADMIN_ROLES, AUDIT_OUTCOMES, allAuditActions } from "../signing/vocabulary.js";
import type { ConnectOptions } from "./admin-client.js";
import { printJson, printable } from "./output.js";

type WithConnection = (c: Command) => Command;

function parseLabelFlag(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (s ?? "").split(",").filter(Boolean)) {
    const i = pair.indexOf("=");
    if (i < 1) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--labels ${s}: expected k=v,k2=v2`);
    out[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return out;
}

const iso = (ms: number) => (ms ? new Date(ms).toISOString() : "-");

async function adminClient(o: ConnectOptions) {
  const { connectAdmin, call } = await import("./admin-client.js");
  return { ...connectAdmin(o), call };
}

/** An enumerated filter's value, checked here so a typo is an error, not an empty result. */
export function checkOneOf(flag: string, value: string | undefined, valid: readonly string[]): void {
  if (value !== undefined && !valid.includes(value))
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${flag} ${value}: not a valid value; valid values: ${valid.join(", ")}`);
}

function agentState(a: { revokedAtMs: number; enrolledAtMs: number }): string {
  return a.revokedAtMs ? "revoked" : a.enrolledAtMs ? "enrolled" : "awaiting enrollment";
}

export function registerAdminCommands(program: Command, agent: Command, withConnection: WithConnection): void {
  withConnection(
    agent
      .command("create <id>")
      .description("create an agent and print its one-time enrollment token")
      .option("--labels <k=v,...>", "labels ACL selectors can match, e.g. os=linux,zone=eu")
      .option("--ttl <seconds>", "enrollment token lifetime (default: the server's server.enrollment_ttl)")
      .option("--json", "print JSON"),
  ).action(async (id: string, o: ConnectOptions & { labels?: string; ttl?: string; json?: boolean }) => {
    const { client, md, call } = await adminClient(o);
    const r = await call(
      client.createAgent,
      client,
      { agentId: id, labels: parseLabelFlag(o.labels), tokenTtlSeconds: Number(o.ttl ?? 0) },
      md,
    );
    client.close();
    if (o.json) return printJson(r);
    console.log(r.enrollmentToken);
    console.error(
      `agent ${r.agentId} created; the token above enrolls it once, until ${iso(r.expiresAtMs)}: put it in the agent's enrollment_token_file`,
    );
  });
  withConnection(agent.command("revoke <id>").description("revoke an agent: its credential stops working on its next call")).action(
    async (id: string, o: ConnectOptions) => {
      const { client, md, call } = await adminClient(o);
      await call(client.revokeAgent, client, { agentId: id }, md);
      console.log(`agent ${id} revoked`);
      client.close();
    },
  );
  withConnection(agent.command("list").description("list agents, their labels and state").option("--json", "print JSON")).action(
    async (o: ConnectOptions & { json?: boolean }) => {
      const { client, md, call } = await adminClient(o);
      const r = await call(client.listAgents, client, {}, md).finally(() => client.close());
      if (o.json) return printJson(r.agents.map((a) => ({ ...a, state: agentState(a) })));
      for (const a of r.agents) {
        const state = agentState(a);
        const labels =
          Object.entries(a.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(",") || "-";
        console.log(printable(`${a.agentId.padEnd(24)} ${state.padEnd(20)} labels ${labels}  last seen ${iso(a.lastSeenAtMs)}`));
      }
    },
  );
  agent
    .command("rotate")
    .description("replace this agent's credential (the old one stops working at once)")
    .option("-c, --config <file>", "agent config (YAML)")
    .action(async (o: { config?: string }) => {
      const { loadAgentConfig } = await import("../agent/config.js");
      const { readCredential, writeCredential } = await import("../agent/credential.js");
      const { AgentServiceClient } = await import("../proto/gen/arcade/v1/agent.js");
      const { CLIENT_OPTIONS, bearer, call, channelCredentials } = await import("../proto/rpc.js");
      const cfg = loadAgentConfig(o.config);
      const current = readCredential(cfg.credentialFile);
      if (!current) throw new ArcadeError(ErrorCode.CONFIG_INVALID, `no credential in ${cfg.credentialFile}: the agent is not enrolled`);
      const client = new AgentServiceClient(cfg.server, channelCredentials(cfg.tls), CLIENT_OPTIONS);
      const r = await call(client.rotateCredential, client, {}, bearer(current));
      await writeCredential(cfg.credentialFile, r.credential);
      console.log(`credential rotated; new credential written to ${cfg.credentialFile}`);
      client.close();
    });

  agent
    .command("doctor")
    .description("show which isolation layers plugins get on this machine, and how to enable the missing ones")
    .option("--json", "print the detected layers as JSON")
    .action(async (o: { json?: boolean }) => {
      if (o.json) {
        const { detectSandbox } = await import("../agent/sandbox/detect.js");
        return printJson(await detectSandbox());
      }
      const { runDoctor } = await import("../agent/doctor.js");
      console.log(await runDoctor());
    });
  agent
    .command("verify-cache")
    .description("re-verify every installed plugin (files and signatures); failures are quarantined; exit 1 if any")
    .option("-c, --config <file>", "agent config (YAML)")
    .option("--json", "print the report as JSON")
    .action(async (o: { config?: string; json?: boolean }) => {
      const { loadAgentConfig } = await import("../agent/config.js");
      const { PluginCache } = await import("../agent/cache.js");
      const { verifyCache } = await import("../agent/verify-cache.js");
      const { loadTrustStore } = await import("../keys/truststore.js");
      const { createLogger } = await import("./log.js");
      const cfg = loadAgentConfig(o.config);
      const log = createLogger("arcade-agent", { toStderr: o.json === true });
      const cache = await PluginCache.open(cfg.pluginsDir, cfg.cacheSizeBytes, log);
      const r = await verifyCache(cache, await loadTrustStore(cfg.trust), log);
      if (o.json) printJson(r);
      else {
        console.log(`checked ${r.checked}, ok ${r.ok}, quarantined ${r.quarantined.length}`);
        for (const q of r.quarantined) console.log(printable(`  quarantined ${q.plugin}: ${q.code}: ${q.message}`));
      }
      if (r.quarantined.length > 0) process.exitCode = 1;
    });

  const acl = program.command("acl").description("which agents may use which plugins (deny by default)");
  withConnection(
    acl
      .command("grant <subject> <plugin-pattern>")
      .description("grant agent:<id> or labels:k=v,... the plugins matching an exact id, namespace/* or *")
      .option("--versions <range>", "semver range, e.g. '>=1.2.0 <2'")
      .option("--json", "print JSON"),
  ).action(async (subject: string, pattern: string, o: ConnectOptions & { versions?: string; json?: boolean }) => {
    const { client, md, call } = await adminClient(o);
    const r = await call(client.grantAcl, client, { subject, pluginPattern: pattern, versionRange: o.versions ?? "" }, md).finally(() =>
      client.close(),
    );
    if (o.json) printJson(r);
    else console.log(r.grantId);
  });
  withConnection(acl.command("revoke <grant-id>").description("remove a grant")).action(async (id: string, o: ConnectOptions) => {
    const { client, md, call } = await adminClient(o);
    await call(client.revokeAcl, client, { grantId: id }, md);
    console.log(`grant ${id} revoked`);
    client.close();
  });
  withConnection(acl.command("list").description("list grants").option("--json", "print JSON")).action(
    async (o: ConnectOptions & { json?: boolean }) => {
      const { client, md, call } = await adminClient(o);
      const r = await call(client.listAcl, client, {}, md).finally(() => client.close());
      if (o.json) return printJson(r.grants);
      for (const g of r.grants)
        console.log(
          printable(
            `${g.grantId}  ${g.subject.padEnd(28)} ${g.pluginPattern.padEnd(24)} ${g.versionRange || "any version"}  by ${g.createdBy}`,
          ),
        );
    },
  );
  withConnection(
    acl
      .command("check <agent-id> <plugin@version>")
      .description("would this agent be allowed this plugin? exit 1 if not")
      .option("--json", "print JSON"),
  ).action(async (agentId: string, ref: string, o: ConnectOptions & { json?: boolean }) => {
    const { parsePluginRef } = await import("../signing/manifest.js");
    const { id, version } = parsePluginRef(ref);
    const { client, md, call } = await adminClient(o);
    const r = await call(client.checkAcl, client, { agentId, pluginId: id, version }, md).finally(() => client.close());
    if (o.json) printJson(r);
    else console.log(printable(`${r.allowed ? "ALLOWED" : "DENIED"}: ${r.reason}`));
    if (!r.allowed) process.exitCode = 1;
  });

  const admin = program.command("admin").description("admin tokens and their roles");
  withConnection(
    admin
      .command("token")
      .description("admin tokens: one per person or pipeline, each with a role")
      .command("create")
      .description("create an admin token with a role: admin, publisher, security, operator, auditor")
      .requiredOption("--name <name>", "who or what holds it, e.g. ci-publisher")
      .requiredOption("--role <role>", ADMIN_ROLES.join(" | "))
      .option("--json", "print JSON"),
  ).action(async (o: ConnectOptions & { name: string; role: string; json?: boolean }) => {
    checkOneOf("--role", o.role, ADMIN_ROLES);
    const { client, md, call } = await adminClient(o);
    const r = await call(client.createAdminToken, client, { name: o.name, role: o.role }, md).finally(() => client.close());
    if (o.json) printJson({ name: o.name, role: o.role, ...r });
    else console.log(r.token);
  });

  const audit = program.command("audit").description("the audit trail");
  withConnection(
    audit
      .command("query")
      .description("list audit events, oldest first")
      .option("--action <action>", "e.g. plugin.download, acl.grant, auth.agent (an unknown action lists the valid ones)")
      .option("--actor <actor>", "e.g. agent:build-7 or admin:ci-publisher")
      .option("--outcome <outcome>", AUDIT_OUTCOMES.join(" | "))
      .option("--since <iso-time>", "only events at or after this time")
      .option("--limit <n>", "most recent N events", "100")
      .option("--json", "JSON lines"),
  ).action(
    async (o: ConnectOptions & { action?: string; actor?: string; outcome?: string; since?: string; limit: string; json?: boolean }) => {
      checkOneOf("--outcome", o.outcome, AUDIT_OUTCOMES);
      checkOneOf("--action", o.action, allAuditActions());
      const sinceMs = o.since ? Date.parse(o.since) : 0;
      if (Number.isNaN(sinceMs)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--since ${o.since}: not a date`);
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--limit ${o.limit}: expected a whole number above 0`);
      const { client, md, call } = await adminClient(o);
      const r = await call(
        client.queryAudit,
        client,
        { action: o.action ?? "", actor: o.actor ?? "", outcome: o.outcome ?? "", sinceMs, limit },
        md,
      ).finally(() => client.close());
      for (const e of r.events) {
        if (o.json) printJson(e);
        else
          console.log(
            printable(
              `${String(e.seq).padStart(6)} ${iso(e.timeMs)} ${e.actor.padEnd(24)} ${e.action.padEnd(22)} ${e.outcome.padEnd(9)} ${e.subject} ${e.reason ? `(${e.reason})` : ""} ${e.source}`,
            ),
          );
      }
    },
  );
}
