// `arcade agent create|revoke|list|rotate`, `arcade acl grant|revoke|list|check`,
// `arcade admin token create` and `arcade audit query`: the operator's, security team's and
// auditor's commands over AdminService.
import type { Command } from "commander";
import { PluginCache } from "../agent/cache.js";
import { loadAgentConfig } from "../agent/config.js";
import { runDoctor } from "../agent/doctor.js";
import { verifyCache } from "../agent/verify-cache.js";
import { loadTrustStore } from "../keys/truststore.js";
import { createLogger } from "./log.js";
import { readCredential, writeCredential } from "../agent/credential.js";
import { AgentServiceClient } from "../proto/gen/arcade/v1/agent.js";
import { CLIENT_OPTIONS, bearer, call, channelCredentials } from "../proto/rpc.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { parsePluginRef } from "../signing/manifest.js";
import { connectAdmin, type ConnectOptions } from "./admin-client.js";

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

export function registerAdminCommands(program: Command, agent: Command, withConnection: WithConnection): void {
  withConnection(
    agent
      .command("create <id>")
      .description("create an agent and print its one-time enrollment token")
      .option("--labels <k=v,...>", "labels ACL selectors can match, e.g. os=linux,zone=eu")
      .option("--ttl <seconds>", "enrollment token lifetime (default: the server's server.enrollment_ttl)"),
  ).action(async (id: string, o: ConnectOptions & { labels?: string; ttl?: string }) => {
    const { client, md } = connectAdmin(o);
    const r = await call(
      client.createAgent,
      client,
      { agentId: id, labels: parseLabelFlag(o.labels), tokenTtlSeconds: Number(o.ttl ?? 0) },
      md,
    );
    console.log(r.enrollmentToken);
    console.error(
      `agent ${r.agentId} created; the token above enrolls it once, until ${iso(r.expiresAtMs)}: put it in the agent's enrollment_token_file`,
    );
    client.close();
  });
  withConnection(agent.command("revoke <id>").description("revoke an agent: its credential stops working on its next call")).action(
    async (id: string, o: ConnectOptions) => {
      const { client, md } = connectAdmin(o);
      await call(client.revokeAgent, client, { agentId: id }, md);
      console.log(`agent ${id} revoked`);
      client.close();
    },
  );
  withConnection(agent.command("list").description("list agents, their labels and state")).action(async (o: ConnectOptions) => {
    const { client, md } = connectAdmin(o);
    const r = await call(client.listAgents, client, {}, md);
    for (const a of r.agents) {
      const state = a.revokedAtMs ? "revoked" : a.enrolledAtMs ? "enrolled" : "awaiting enrollment";
      const labels =
        Object.entries(a.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(",") || "-";
      console.log(`${a.agentId.padEnd(24)} ${state.padEnd(20)} labels ${labels}  last seen ${iso(a.lastSeenAtMs)}`);
    }
    client.close();
  });
  agent
    .command("rotate")
    .description("replace this agent's credential (the old one stops working at once)")
    .option("-c, --config <file>", "agent config (YAML)")
    .action(async (o: { config?: string }) => {
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
    .action(async () => {
      console.log(await runDoctor());
    });
  agent
    .command("verify-cache")
    .description("re-verify every installed plugin (files and signatures); failures are quarantined; exit 1 if any")
    .option("-c, --config <file>", "agent config (YAML)")
    .action(async (o: { config?: string }) => {
      const cfg = loadAgentConfig(o.config);
      const log = createLogger("arcade-agent");
      const cache = await PluginCache.open(cfg.pluginsDir, cfg.cacheSizeBytes, log);
      const r = await verifyCache(cache, await loadTrustStore(cfg.trust), log);
      console.log(`checked ${r.checked}, ok ${r.ok}, quarantined ${r.quarantined.length}`);
      for (const q of r.quarantined) console.log(`  quarantined ${q.plugin}: ${q.code}: ${q.message}`);
      if (r.quarantined.length > 0) process.exitCode = 1;
    });

  const acl = program.command("acl").description("which agents may use which plugins (deny by default)");
  withConnection(
    acl
      .command("grant <subject> <plugin-pattern>")
      .description("grant agent:<id> or labels:k=v,... the plugins matching an exact id, namespace/* or *")
      .option("--versions <range>", "semver range, e.g. '>=1.2.0 <2'"),
  ).action(async (subject: string, pattern: string, o: ConnectOptions & { versions?: string }) => {
    const { client, md } = connectAdmin(o);
    const r = await call(client.grantAcl, client, { subject, pluginPattern: pattern, versionRange: o.versions ?? "" }, md);
    console.log(r.grantId);
    client.close();
  });
  withConnection(acl.command("revoke <grant-id>").description("remove a grant")).action(async (id: string, o: ConnectOptions) => {
    const { client, md } = connectAdmin(o);
    await call(client.revokeAcl, client, { grantId: id }, md);
    console.log(`grant ${id} revoked`);
    client.close();
  });
  withConnection(acl.command("list").description("list grants")).action(async (o: ConnectOptions) => {
    const { client, md } = connectAdmin(o);
    const r = await call(client.listAcl, client, {}, md);
    for (const g of r.grants)
      console.log(
        `${g.grantId}  ${g.subject.padEnd(28)} ${g.pluginPattern.padEnd(24)} ${g.versionRange || "any version"}  by ${g.createdBy}`,
      );
    client.close();
  });
  withConnection(
    acl.command("check <agent-id> <plugin@version>").description("would this agent be allowed this plugin? exit 1 if not"),
  ).action(async (agentId: string, ref: string, o: ConnectOptions) => {
    const { id, version } = parsePluginRef(ref);
    const { client, md } = connectAdmin(o);
    const r = await call(client.checkAcl, client, { agentId, pluginId: id, version }, md);
    console.log(`${r.allowed ? "ALLOWED" : "DENIED"}: ${r.reason}`);
    if (!r.allowed) process.exitCode = 1;
    client.close();
  });

  const admin = program.command("admin").description("admin tokens");
  withConnection(
    admin
      .command("token")
      .command("create")
      .description("create an admin token with a role: admin, publisher, security, operator, auditor")
      .requiredOption("--name <name>", "who or what holds it, e.g. ci-publisher")
      .requiredOption("--role <role>", "admin | publisher | security | operator | auditor"),
  ).action(async (o: ConnectOptions & { name: string; role: string }) => {
    const { client, md } = connectAdmin(o);
    const r = await call(client.createAdminToken, client, { name: o.name, role: o.role }, md);
    console.log(r.token);
    client.close();
  });

  const audit = program.command("audit").description("the audit trail");
  withConnection(
    audit
      .command("query")
      .description("list audit events, oldest first")
      .option("--action <action>", "e.g. plugin.download, acl.grant, auth.agent")
      .option("--actor <actor>", "e.g. agent:build-7 or admin:ci-publisher")
      .option("--outcome <outcome>", "allowed | denied | succeeded | failed")
      .option("--since <iso-time>", "only events at or after this time")
      .option("--limit <n>", "most recent N events", "100")
      .option("--json", "JSON lines"),
  ).action(
    async (o: ConnectOptions & { action?: string; actor?: string; outcome?: string; since?: string; limit: string; json?: boolean }) => {
      const { client, md } = connectAdmin(o);
      const sinceMs = o.since ? Date.parse(o.since) : 0;
      if (Number.isNaN(sinceMs)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--since ${o.since}: not a date`);
      const r = await call(
        client.queryAudit,
        client,
        { action: o.action ?? "", actor: o.actor ?? "", outcome: o.outcome ?? "", sinceMs, limit: Number(o.limit) },
        md,
      );
      for (const e of r.events) {
        if (o.json) console.log(JSON.stringify({ ...e, details: JSON.parse(e.detailsJson) as unknown, detailsJson: undefined }));
        else
          console.log(
            `${String(e.seq).padStart(6)} ${iso(e.timeMs)} ${e.actor.padEnd(24)} ${e.action.padEnd(22)} ${e.outcome.padEnd(9)} ${e.subject} ${e.reason ? `(${e.reason})` : ""} ${e.source}`,
          );
      }
      client.close();
    },
  );
}
