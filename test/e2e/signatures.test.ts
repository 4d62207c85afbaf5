// Signed releases end to end: what the server refuses to publish, and what an agent refuses to
// install even when the server (or its database) serves it.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Stage, StepStatus } from "../../proto/gen/arcade/v1/plugin.js";
import { call } from "../../proto/rpc.js";
import { waitForJob } from "../../cli/jobs.js";
import { openDatabase } from "../../server/db/client.js";
import { releaseFiles, signRelease } from "../../signing/release.js";
import { packPlugin } from "../../signing/pack.js";
import { cleanup, pack, startTestAgent, startTestServer, tempDir, writePlugin, type TestServer } from "../helpers/harness.js";
import { publisher } from "../helpers/keys.js";
import { EVENT } from "../../signing/events.js";

let server: TestServer;
afterAll(cleanup);
beforeAll(async () => {
  server = await startTestServer();
});

let n = 0;
const plugin = (id = `sig/p${++n}`) =>
  writePlugin({ id, version: "1.0.0", stages: ["before"], source: "export const before = async () => 'ran';\n" });

async function runOn(agentId: string, pluginId: string) {
  const { client, md } = server.admin;
  const { jobId } = await call(
    client.submitJob,
    client,
    {
      commands: ["echo should-not-run-if-refused"],
      plugins: [{ pluginId, version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }],
      agentId,
      timeoutSeconds: 60,
    },
    md,
  );
  return waitForJob(client, md, jobId, 60_000);
}

function installedDirs(pluginsDir: string): string[] {
  const d = path.join(pluginsDir, "downloaded");
  return fs.existsSync(d) ? fs.readdirSync(d, { recursive: true }).map(String) : [];
}

describe("publish refuses", () => {
  it("an unsigned release (SIGNATURE_MISSING), storing nothing", async () => {
    const p = await pack(plugin(), "none");
    await expect(server.publish(p.file)).rejects.toMatchObject({ code: "SIGNATURE_MISSING" });
    expect(fs.readdirSync(path.join(server.dir, "data", "plugins", "tmp"))).toEqual([]);
  });

  it("a release signed by a key the server does not trust (KEY_UNKNOWN)", async () => {
    const dir = tempDir();
    const out = path.join(dir, "p.tgz");
    const packed = await packPlugin(plugin(), out);
    await signRelease(out, packed, { openpgpKey: (await publisher("stranger")).secretKey });
    await expect(server.publish(out)).rejects.toMatchObject({ code: "KEY_UNKNOWN" });
  });

  it("a tampered statement (SIGNATURE_INVALID)", async () => {
    const p = await pack(plugin());
    const f = releaseFiles(p.file).statement;
    fs.writeFileSync(f, fs.readFileSync(f, "utf8").replace('"size":', '"size":1'));
    await expect(server.publish(p.file)).rejects.toMatchObject({ code: "SIGNATURE_INVALID" });
  });

  it("a valid statement for another tarball (CHECKSUM_MISMATCH)", async () => {
    const a = await pack(plugin("sig/same"));
    const bDir = writePlugin({
      id: "sig/same",
      version: "1.0.0",
      stages: ["before"],
      source: "export const before = async () => 'evil';\n",
    });
    const b = await pack(bDir, "none");
    for (const [from, to] of [
      [releaseFiles(a.file).statement, releaseFiles(b.file).statement],
      [releaseFiles(a.file).asc, releaseFiles(b.file).asc],
    ] as const)
      fs.copyFileSync(from, to);
    await expect(server.publish(b.file)).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
  });
});

describe("agents verify with their own keyring", () => {
  it("install a Sigstore-only release they trust, and run it", async () => {
    const p = await pack(plugin("sig/sigstore-only"), "sigstore");
    const res = await server.publish(p.file);
    expect(res.created).toBe(true);
    const agent = await startTestAgent(server);
    const job = await runOn(agent.id, p.id);
    expect(job.status).toBe("succeeded");
    const line = await agent.proc.waitForEvent(EVENT.AGENT_PLUGIN_INSTALLED, { plugin_id: p.id });
    expect(line.signed_by).toEqual([`sigstore:${(await publisher()).sigstore.hint}`]);
  });

  it("refuse a release the server accepted but the agent's keyring does not vouch for (KEY_UNKNOWN)", async () => {
    const p = await pack(plugin("sig/not-for-this-agent"));
    await server.publish(p.file);
    const other = await publisher("other-org");
    const agent = await startTestAgent(server, undefined, `trust:\n  keyring: ${other.keyring}\n`);
    const job = await runOn(agent.id, p.id);
    expect([job.status, job.errorCode]).toEqual(["failed", "KEY_UNKNOWN"]);
    expect(job.output).not.toContain("should-not-run");
    expect(job.steps[0]!.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(installedDirs(agent.pluginsDir)).toEqual([]);
    expect(fs.readdirSync(path.join(agent.pluginsDir, "temp", "downloads"))).toEqual([]);
    expect(await agent.metricValue("plugin_download_total", { plugin_id: p.id, status: "KEY_UNKNOWN" })).toBe(1);
  });

  it("refuse what a compromised server database serves: a forged statement, or another plugin's signed release", async () => {
    const victim = await pack(plugin("sig/victim"));
    const evil = await pack(
      writePlugin({ id: "sig/evil", version: "1.0.0", stages: ["before"], source: "export const before = async () => 'pwned';\n" }),
    );
    await server.publish(victim.file);
    await server.publish(evil.file);
    const { db, close } = await openDatabase(server.databaseUrl, { log: () => {} });
    try {
      // 1. The statement is edited in place (say, to claim other bytes): its signature no longer matches.
      const row = await db.plugin.findUniqueOrThrow({ where: { pluginId_version: { pluginId: victim.id, version: "1.0.0" } } });
      const forged = Buffer.from(row.statement, "base64")
        .toString("utf8")
        .replace(/"publishedAt":"[^"]+"/, '"publishedAt":"2030-01-01T00:00:00.000Z"');
      await db.plugin.update({ where: { id: row.id }, data: { statement: Buffer.from(forged).toString("base64") } });
      const agent = await startTestAgent(server);
      const job1 = await runOn(agent.id, victim.id);
      expect([job1.status, job1.errorCode]).toEqual(["failed", "SIGNATURE_INVALID"]);

      // 2. The victim's row now points at the evil plugin's validly signed blob and release (mix-and-match).
      const e = await db.plugin.findUniqueOrThrow({ where: { pluginId_version: { pluginId: evil.id, version: "1.0.0" } } });
      await db.plugin.update({
        where: { id: row.id },
        data: { sha256: e.sha256, size: e.size, storageKey: e.storageKey, statement: e.statement, openpgpSignatures: e.openpgpSignatures },
      });
      const job2 = await runOn(agent.id, victim.id);
      expect([job2.status, job2.errorCode]).toEqual(["failed", "MANIFEST_MISMATCH"]);
      expect(job2.errorMessage).toContain("sig/evil@1.0.0");
      expect(installedDirs(agent.pluginsDir)).toEqual([]);
    } finally {
      await close();
    }
  });
});

describe("development servers", () => {
  it("may accept unsigned plugins on loopback, but agents still refuse them (SIGNATURE_MISSING)", async () => {
    const dev = await startTestServer(`[trust]\nallow_unsigned = true\n`, { ARCADE_SERVER_MODE: '"development"' });
    const p = await pack(plugin("sig/unsigned-dev"), "none");
    expect((await dev.publish(p.file)).created).toBe(true);
    expect(dev.proc.lines.some((l) => l.event === EVENT.SERVER_UNSIGNED_ALLOWED)).toBe(true);
    const agent = await startTestAgent(dev);
    const { client, md } = dev.admin;
    const { jobId } = await call(
      client.submitJob,
      client,
      {
        commands: [],
        plugins: [{ pluginId: p.id, version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }],
        agentId: agent.id,
        timeoutSeconds: 60,
      },
      md,
    );
    const job = await waitForJob(client, md, jobId, 60_000);
    expect([job.status, job.errorCode]).toEqual(["failed", "SIGNATURE_MISSING"]);
  });
});
