// Who may do what, against a real server over TLS: agent identity from credentials only,
// enrollment tokens, revocation and rotation, mTLS, admin roles, and that every refusal is audited.
import fs from "node:fs";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServiceClient } from "../../proto/gen/arcade/v1/admin.js";
import { AgentServiceClient } from "../../proto/gen/arcade/v1/agent.js";
import { Stage } from "../../proto/gen/arcade/v1/plugin.js";
import { CLIENT_OPTIONS, bearer, call, channelCredentials } from "../../proto/rpc.js";
import { spawnArcade } from "../../cli/processes.js";
import { cleanup, enrollAgent, pack, startTestServer, tempDir, writePlugin, type TestServer } from "../helpers/harness.js";
import { testCerts } from "../helpers/tls.js";
import { publisher } from "../helpers/keys.js";
import { EVENT } from "../../signing/events.js";

let server: TestServer;
let agents: AgentServiceClient;
afterAll(async () => {
  agents?.close();
  await cleanup();
});
beforeAll(async () => {
  server = await startTestServer();
  agents = new AgentServiceClient(server.grpc, channelCredentials({ ca: server.ca }), CLIENT_OPTIONS);
});

const hello = (agentId: string) => ({ agentId, hostname: "t", agentVersion: "t", installed: [] });
const enrollMd = (token: string) => {
  const md = new Metadata();
  md.set("x-arcade-enrollment-token", token);
  return md;
};
async function enrolled(id: string, grant: string | false = "*"): Promise<string> {
  const token = await enrollAgent(server, id, {}, grant);
  return (await call(agents.register, agents, hello(id), enrollMd(token))).credential;
}
async function audited(action: string, outcome: string, match: string): Promise<boolean> {
  const { client, md } = server.admin;
  const r = await call(client.queryAudit, client, { action, actor: "", outcome, sinceMs: 0, limit: 1000 }, md);
  return r.events.some((e) => `${e.actor} ${e.subject} ${e.reason}`.includes(match));
}
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: { code?: string }) => e.code,
  );

describe("agent identity", () => {
  it("enrolls once: a reused, expired or foreign enrollment token is refused and audited", async () => {
    const token = await enrollAgent(server, "id-once");
    expect((await call(agents.register, agents, hello("id-once"), enrollMd(token))).credential).toMatch(/^arc_agent_/);
    expect(await codeOf(call(agents.register, agents, hello("id-once"), enrollMd(token)))).toBe("UNAUTHENTICATED");
    expect(await audited("agent.enroll", "denied", "already used")).toBe(true);

    const { client, md } = server.admin;
    const short = await call(client.createAgent, client, { agentId: "id-expired", labels: {}, tokenTtlSeconds: 60 }, md);
    const { db, close } = await (await import("../../server/db/client.js")).openDatabase(server.databaseUrl, { log: () => {} });
    await db.enrollmentToken.updateMany({ where: { agentId: "id-expired" }, data: { expiresAt: new Date(Date.now() - 1000) } });
    await close();
    expect(await codeOf(call(agents.register, agents, hello("id-expired"), enrollMd(short.enrollmentToken)))).toBe("UNAUTHENTICATED");
    expect(await audited("agent.enroll", "denied", "expired")).toBe(true);

    const other = await enrollAgent(server, "id-other");
    expect(await codeOf(call(agents.register, agents, hello("id-thief"), enrollMd(other)))).toBe("UNAUTHENTICATED");
  });

  it("never trusts the body: a credential used to register as another agent is refused and audited", async () => {
    const a = await enrolled("id-alice");
    await enrolled("id-bob");
    expect(await codeOf(call(agents.register, agents, hello("id-bob"), bearer(a)))).toBe("PERMISSION_DENIED");
    expect(await audited("auth.agent", "denied", "request names agent id-bob")).toBe(true);
    // and a made-up credential is nobody
    expect(await codeOf(call(agents.fetchJob, agents, {}, bearer("arc_agent_not-a-real-credential-at-all")))).toBe("UNAUTHENTICATED");
  });

  it("revocation and rotation take effect on the very next call", async () => {
    const c1 = await enrolled("id-rotate");
    const { credential: c2 } = await call(agents.rotateCredential, agents, {}, bearer(c1));
    expect(await codeOf(call(agents.fetchJob, agents, {}, bearer(c1)))).toBe("UNAUTHENTICATED");
    expect(await codeOf(call(agents.fetchJob, agents, {}, bearer(c2)))).toBe("ok");
    const { client, md } = server.admin;
    await call(client.revokeAgent, client, { agentId: "id-rotate" }, md);
    expect(await codeOf(call(agents.fetchJob, agents, {}, bearer(c2)))).toBe("UNAUTHENTICATED");
    expect(await audited("agent.revoke", "succeeded", "id-rotate")).toBe(true);
  });
});

describe("ACLs at dispatch and download", () => {
  it("never hands an agent a job with a plugin it is not granted; a granted agent gets it", async () => {
    const p = await pack(
      writePlugin({ id: "acl/secret", version: "1.0.0", stages: ["before"], source: "export const before = async () => 1;\n" }),
    );
    await server.publish(p.file);
    const denied = await enrolled("acl-denied", "notify/*");
    const { client, md } = server.admin;
    const plugins = [{ pluginId: "acl/secret", version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }];
    // targeted at an agent that could never run it: refused at submit, with the reason
    expect(await codeOf(call(client.submitJob, client, { commands: [], plugins, agentId: "acl-denied", timeoutSeconds: 60 }, md))).toBe(
      "ACL_DENIED",
    );
    const granted = await enrolled("acl-granted", false);
    await call(client.grantAcl, client, { subject: "agent:acl-granted", pluginPattern: "acl/*", versionRange: ">=1 <2" }, md);
    const { jobId } = await call(client.submitJob, client, { commands: [], plugins, agentId: "", timeoutSeconds: 60 }, md);
    expect((await call(agents.fetchJob, agents, {}, bearer(denied))).job).toBeUndefined();
    expect((await call(agents.fetchJob, agents, {}, bearer(granted))).job?.jobId).toBe(jobId);
    // and the download itself is refused to the ungranted agent, audited
    const dl = agents.downloadPlugin({ pluginId: "acl/secret", version: "1.0.0", offset: 0 }, bearer(denied));
    const err = await new Promise<{ details?: string }>((resolve) => {
      dl.on("error", resolve);
      dl.on("data", () => {});
    });
    expect(err.details).toMatch(/^ACL_DENIED: /);
    expect(await audited("plugin.download", "denied", "acl/secret@1.0.0")).toBe(true);
    const check = await call(client.checkAcl, client, { agentId: "acl-denied", pluginId: "acl/secret", version: "1.0.0" }, md);
    expect([check.allowed, check.reason]).toEqual([
      false,
      expect.stringContaining("no grant for agent acl-denied covers acl/secret@1.0.0"),
    ]);
  });

  it("fails a job targeted at an agent whose grant was revoked after submission, and audits it", async () => {
    const p = await pack(
      writePlugin({ id: "acl/later", version: "1.0.0", stages: ["before"], source: "export const before = async () => 1;\n" }),
    );
    await server.publish(p.file);
    const cred = await enrolled("acl-later", false);
    const { client, md } = server.admin;
    const { grantId } = await call(
      client.grantAcl,
      client,
      { subject: "agent:acl-later", pluginPattern: "acl/later", versionRange: "" },
      md,
    );
    const plugins = [{ pluginId: "acl/later", version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }];
    const { jobId } = await call(client.submitJob, client, { commands: [], plugins, agentId: "acl-later", timeoutSeconds: 60 }, md);
    await call(client.revokeAcl, client, { grantId }, md);
    expect((await call(agents.fetchJob, agents, {}, bearer(cred))).job).toBeUndefined();
    const { job } = await call(client.getJob, client, { jobId }, md);
    expect([job?.status, job?.errorCode]).toEqual(["failed", "ACL_DENIED"]);
    expect(await audited("job.dispatch", "denied", jobId)).toBe(true);
    expect(await audited("acl.revoke", "succeeded", grantId)).toBe(true);
  });
});

describe("admin roles", () => {
  const tokens: Record<string, string> = {};
  beforeAll(async () => {
    const { client, md } = server.admin;
    for (const role of ["publisher", "security", "operator", "auditor"]) {
      tokens[role] = (await call(client.createAdminToken, client, { name: `t-${role}`, role }, md)).token;
    }
  });

  // Each RPC with a harmless request; the permission check comes before anything is looked at.
  const rpcs: Record<string, (c: AdminServiceClient, m: Metadata) => Promise<unknown>> = {
    ListPlugins: (c, m) => call(c.listPlugins, c, { pluginId: "" }, m),
    SubmitJob: (c, m) => call(c.submitJob, c, { commands: ["true"], plugins: [], agentId: "", timeoutSeconds: 0 }, m),
    GetJob: (c, m) => call(c.getJob, c, { jobId: "none" }, m),
    CreateAgent: (c, m) => call(c.createAgent, c, { agentId: "role-x", labels: {}, tokenTtlSeconds: 0 }, m),
    RevokeAgent: (c, m) => call(c.revokeAgent, c, { agentId: "none" }, m),
    ListAgents: (c, m) => call(c.listAgents, c, {}, m),
    GrantAcl: (c, m) => call(c.grantAcl, c, { subject: "agent:none", pluginPattern: "x/y", versionRange: "" }, m),
    RevokeAcl: (c, m) => call(c.revokeAcl, c, { grantId: "none" }, m),
    ListAcl: (c, m) => call(c.listAcl, c, {}, m),
    CheckAcl: (c, m) => call(c.checkAcl, c, { agentId: "none", pluginId: "x/y", version: "1.0.0" }, m),
    CreateAdminToken: (c, m) => call(c.createAdminToken, c, { name: "nope", role: "admin" }, m),
    QueryAudit: (c, m) => call(c.queryAudit, c, { action: "", actor: "", outcome: "", sinceMs: 0, limit: 1 }, m),
  };
  const allowed: Record<string, string[]> = {
    publisher: ["ListPlugins"],
    security: ["ListPlugins", "ListAcl", "CheckAcl", "QueryAudit"],
    operator: [
      "ListPlugins",
      "SubmitJob",
      "GetJob",
      "CreateAgent",
      "RevokeAgent",
      "ListAgents",
      "GrantAcl",
      "RevokeAcl",
      "ListAcl",
      "CheckAcl",
    ],
    auditor: ["ListPlugins", "GetJob", "ListAgents", "ListAcl", "CheckAcl", "QueryAudit"],
  };
  for (const role of ["publisher", "security", "operator", "auditor"]) {
    it(`${role}: every RPC outside its role is refused, naming the missing permission`, async () => {
      const c = server.admin.client;
      for (const [name, rpc] of Object.entries(rpcs)) {
        const r = await rpc(c, bearer(tokens[role]!)).then(
          () => "ok",
          (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
        );
        if (allowed[role]!.includes(name)) expect(r, `${role} ${name}`).not.toMatch(/^PERMISSION_DENIED/);
        else
          expect(r, `${role} ${name}`).toMatch(
            new RegExp(`^PERMISSION_DENIED: token "t-${role}" has role ${role}, which lacks the permission `),
          );
      }
      expect(await audited(`rpc.CreateAdminToken`, "denied", `admin:t-${role}`)).toBe(true);
    });
  }

  it("publisher may publish, auditor may not", async () => {
    const p = await pack(
      writePlugin({ id: "roles/pub", version: "1.0.0", stages: ["before"], source: "export const before = async () => 1;\n" }),
    );
    const { publishFile } = await import("../../cli/admin-client.js");
    expect((await publishFile(server.admin.client, bearer(tokens.publisher!), p.file)).created).toBe(true);
    expect(await codeOf(publishFile(server.admin.client, bearer(tokens.auditor!), p.file))).toBe("PERMISSION_DENIED");
  });
});

describe("transport", () => {
  it("mTLS: the client certificate must exist, come from the CA, and name the credential's agent", async () => {
    const certs = await testCerts();
    const adminCert = await certs.agentCert("mtls-admin");
    const mtls = await startTestServer(`[tls]\ncert = "${certs.cert}"\nkey = "${certs.key}"\nclient_ca = "${certs.ca}"\n`, {}, adminCert);
    const token = await enrollAgent(mtls, "mtls-a");
    const own = await certs.agentCert("mtls-a");
    const otherCert = await certs.agentCert("mtls-b");
    const as = (c: { cert: string; key: string } | undefined) =>
      new AgentServiceClient(mtls.grpc, channelCredentials({ ca: certs.ca, ...(c ?? {}) }), {
        ...CLIENT_OPTIONS,
        "grpc.use_local_subchannel_pool": 1,
      });
    const good = as(own);
    const cred = (await call(good.register, good, hello("mtls-a"), enrollMd(token))).credential;
    expect(await codeOf(call(good.fetchJob, good, {}, bearer(cred)))).toBe("ok");
    const wrongCert = as(otherCert);
    expect(await codeOf(call(wrongCert.fetchJob, wrongCert, {}, bearer(cred)))).toBe("PERMISSION_DENIED");
    const noCert = as(undefined);
    expect(await codeOf(call(noCert.fetchJob, noCert, {}, bearer(cred), 5000))).toBe("TLS_CLIENT_CERT_REQUIRED");
    const foreignCa = tempDir();
    const { writeCertsDir } = await import("../../keys/certs.js");
    await writeCertsDir(foreignCa, { hosts: ["127.0.0.1"], agents: ["mtls-a"] });
    const foreign = new AgentServiceClient(
      mtls.grpc,
      channelCredentials({
        ca: certs.ca,
        cert: path.join(foreignCa, "agents", "mtls-a.pem"),
        key: path.join(foreignCa, "agents", "mtls-a.key"),
      }),
      { ...CLIENT_OPTIONS, "grpc.use_local_subchannel_pool": 1 },
    );
    expect(await codeOf(call(foreign.fetchJob, foreign, {}, bearer(cred), 5000))).not.toBe("ok");
    const plain = new AgentServiceClient(mtls.grpc, channelCredentials(undefined), {
      ...CLIENT_OPTIONS,
      "grpc.use_local_subchannel_pool": 1,
    });
    expect(await codeOf(call(plain.fetchJob, plain, {}, bearer(cred), 5000))).not.toBe("ok");
    for (const c of [good, wrongCert, noCert, foreign, plain]) c.close();
  });

  it("a client that does not trust the server's CA cannot connect", async () => {
    const dir = tempDir();
    const { writeCertsDir } = await import("../../keys/certs.js");
    await writeCertsDir(dir, { hosts: ["127.0.0.1"], agents: [] });
    const c = new AgentServiceClient(server.grpc, channelCredentials({ ca: path.join(dir, "ca.pem") }), {
      ...CLIENT_OPTIONS,
      "grpc.use_local_subchannel_pool": 1,
    });
    expect(await codeOf(call(c.fetchJob, c, {}, bearer("arc_agent_xxxxxxxxxxxxxxxxxxxx"), 5000))).toBe("TLS_SERVER_UNTRUSTED");
    c.close();
  });

  it("production mode refuses to start without TLS unless told --insecure", async () => {
    const dir = tempDir();
    const cfg = path.join(dir, "config.toml");
    fs.writeFileSync(
      cfg,
      `[server]\nlisten = "127.0.0.1:0"\ndata_dir = "data"\n[metrics]\nlisten = ""\n[trust]\nkeyring = "${(await publisher()).keyring}"\n`,
    );
    const refused = spawnArcade(["server", "start", "--config", cfg]);
    expect(await refused.closed).toBe(1);
    expect(refused.stderr.join("\n")).toMatch(/CONFIG_INVALID: production mode requires TLS/);
    const insecure = spawnArcade(["server", "start", "--config", cfg, "--insecure"]);
    const warn = await insecure.waitForEvent(EVENT.SERVER_INSECURE);
    expect(warn.level).toBe(40);
    await insecure.waitForEvent(EVENT.SERVER_READY);
    await insecure.stop();
  });
});

describe("failed authentication", () => {
  it("is slowed down per source after a few attempts, and recorded", async () => {
    const bad = bearer("arc_agent_wrong-wrong-wrong-wrong");
    const times: number[] = [];
    for (let i = 0; i < 8; i++) {
      const t = Date.now();
      expect(await codeOf(call(agents.fetchJob, agents, {}, bad))).toBe("UNAUTHENTICATED");
      times.push(Date.now() - t);
    }
    // the first attempts are answered at once, later ones only after a growing delay
    expect(Math.max(...times.slice(0, 3))).toBeLessThan(200);
    expect(times[7]!).toBeGreaterThanOrEqual(400);
    expect(await audited("auth.agent", "denied", "unknown")).toBe(true);
  });
});
