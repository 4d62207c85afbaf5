// The agent's cache as a real agent process uses it: the self-test gate and quarantine,
// re-verification of installed files and signatures, one agent per directory, a download that
// survives a server restart, and kill -9 at defined points of an install leaving nothing
// half-installed usable (the random, seeded 200-install version is the soak: npm run test:soak).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PluginCache } from "../../agent/cache.js";
import { verifyCache } from "../../agent/verify-cache.js";
import { waitForJob } from "../../cli/jobs.js";
import { cliPath, startServerProcess } from "../../cli/processes.js";
import { loadTrustStore } from "../../keys/truststore.js";
import { Stage } from "../../proto/gen/arcade/v1/plugin.js";
import { call } from "../../proto/rpc.js";
import { expectOnlyCompleteVerifiedInstalls } from "../helpers/crash.js";
import { seeded } from "../helpers/random.js";
import { cleanup, pack, startTestAgent, startTestServer, tempDir, writePlugin, type TestServer } from "../helpers/harness.js";
import { publisher } from "../helpers/keys.js";
import { EVENT, type EventName } from "../../signing/events.js";

const run = promisify(execFile);
let server: TestServer;
afterAll(cleanup);
beforeAll(async () => {
  server = await startTestServer(`[jobs]\nreap_interval = 1\nreport_grace = 0\n`);
});

async function publishPlugin(id: string, source: string, files: Record<string, Buffer | string> = {}) {
  const p = await pack(writePlugin({ id, version: "1.0.0", stages: ["before"], source, files }));
  await server.publish(p.file);
  return p;
}

async function runJob(agentId: string, pluginIds: string[], timeoutSeconds = 60) {
  const { client, md } = server.admin;
  const plugins = pluginIds.map((pluginId, i) => ({
    pluginId,
    version: "1.0.0",
    stage: Stage.STAGE_BEFORE,
    executionOrder: i,
    configJson: "{}",
  }));
  const { jobId } = await call(client.submitJob, client, { commands: ["true"], plugins, agentId, timeoutSeconds }, md);
  return jobId;
}

const indexOf = (pluginsDir: string) =>
  Object.keys((JSON.parse(fs.readFileSync(path.join(pluginsDir, "index.json"), "utf8")) as { entries: Record<string, unknown> }).entries);

describe("self-test gate", () => {
  for (const [what, source, expectInReason] of [
    [
      "a failing selfTest",
      "export const before = async () => 1;\nexport async function selfTest() { throw new Error('database driver missing'); }\n",
      "database driver missing",
    ],
    [
      "a selfTest that hangs",
      "export const before = async () => 1;\nexport function selfTest() { return new Promise(() => {}); }\n",
      "PLUGIN_TIMEOUT",
    ],
    ["a module missing a declared stage", "export const after = async () => 1;\n", "before"],
  ] as const) {
    it(`quarantines ${what}: never usable, reason kept, job fails SELF_TEST_FAILED`, async () => {
      const id = `gate/p${randomBytes(3).toString("hex")}`;
      await publishPlugin(id, source);
      const agent = await startTestAgent(server, undefined, "", undefined, { ARCADE_AGENT_PLUGINS_SELF_TEST_TIMEOUT: "2" });
      const job = await waitForJob(server.admin.client, server.admin.md, await runJob(agent.id, [id]), 60_000);
      expect([job.status, job.errorCode]).toEqual(["failed", "SELF_TEST_FAILED"]);
      expect(indexOf(agent.pluginsDir)).not.toContain(`${id}@1.0.0`);
      const q = fs.readdirSync(path.join(agent.pluginsDir, "quarantine")).filter((d) => d.startsWith(id.replace("/", "~")));
      expect(q).toHaveLength(1);
      const reason = JSON.parse(fs.readFileSync(path.join(agent.pluginsDir, "quarantine", q[0]!, "reason.json"), "utf8")) as {
        code: string;
        message: string;
      };
      expect(reason.code).toBe("SELF_TEST_FAILED");
      expect(reason.message).toContain(expectInReason);
      expect(fs.existsSync(path.join(agent.pluginsDir, "downloaded", ...id.split("/").slice(0, 1), `${id.split("/")[1]}@1.0.0`))).toBe(
        false,
      );
    });
  }
});

describe("built-in plugins", () => {
  it("are verified and self-tested like downloads, then serve jobs without a download", async () => {
    const p = await publishPlugin("builtin/tool", "export const before = async () => 'shipped with the agent';\n");
    const dir = tempDir("arcade-builtin-");
    const shelf = path.join(dir, "plugins", "builtin", "builtin");
    fs.mkdirSync(shelf, { recursive: true });
    for (const suffix of ["", ".statement.json", ".statement.json.asc"])
      fs.copyFileSync(`${p.file}${suffix}`, path.join(shelf, `tool@1.0.0.tgz${suffix}`));
    const agent = await startTestAgent(server, undefined, "", dir, { ARCADE_AGENT_PLUGINS_BUILTIN: '["builtin/tool@1.0.0"]' });
    await agent.proc.waitForEvent(EVENT.AGENT_BUILTIN_INSTALLED);
    const job = await waitForJob(server.admin.client, server.admin.md, await runJob(agent.id, [p.id]), 60_000);
    expect(job.status).toBe("succeeded");
    expect(job.steps[0]!.result).toBe("shipped with the agent");
    expect(await agent.metricValue("plugin_cache_hit_total", { plugin_id: p.id })).toBe(1);
    expect(await server.metricValue("plugin_download_total", { plugin_id: p.id })).toBe(0);
  });

  it("are refused at start when their release does not verify", async () => {
    const p = await publishPlugin("builtin/forged", "export const before = async () => 1;\n");
    const dir = tempDir("arcade-builtin-");
    const shelf = path.join(dir, "plugins", "builtin", "builtin");
    fs.mkdirSync(shelf, { recursive: true });
    fs.copyFileSync(p.file, path.join(shelf, "forged@1.0.0.tgz"));
    fs.writeFileSync(
      path.join(shelf, "forged@1.0.0.tgz.statement.json"),
      fs.readFileSync(`${p.file}.statement.json`, "utf8").replace('"size":', '"size":1'),
    );
    fs.copyFileSync(`${p.file}.statement.json.asc`, path.join(shelf, "forged@1.0.0.tgz.statement.json.asc"));
    await expect(startTestAgent(server, undefined, "", dir, { ARCADE_AGENT_PLUGINS_BUILTIN: '["builtin/forged@1.0.0"]' })).rejects.toThrow(
      /SIGNATURE_INVALID/,
    );
  });
});

describe("cache re-verification", () => {
  it("quarantines a plugin whose installed files changed, and one whose signer is no longer trusted", async () => {
    const a = await publishPlugin("verify/tampered", "export const before = async () => 'a';\n");
    const b = await publishPlugin("verify/untrusted", "export const before = async () => 'b';\n");
    const c = await publishPlugin("verify/fine", "export const before = async () => 'c';\n");
    const agent = await startTestAgent(server);
    const job = await waitForJob(server.admin.client, server.admin.md, await runJob(agent.id, [a.id, b.id, c.id]), 60_000);
    expect(job.status).toBe("succeeded");
    await agent.proc.stop();

    const file = path.join(agent.pluginsDir, "downloaded", "verify", "tampered@1.0.0", "index.mjs");
    fs.chmodSync(file, 0o644);
    fs.appendFileSync(file, "\n// backdoor\n");
    const cfg = path.join(agent.dir, "agent.yaml");
    const r = await run(process.execPath, [cliPath(), "agent", "verify-cache", "--config", cfg]).catch(
      (e: { code: number; stdout: string }) => e,
    );
    expect(r.stdout).toMatch(/checked 3, ok 2, quarantined 1/);
    expect(r.stdout).toMatch(/quarantined verify\/tampered@1\.0\.0: CHECKSUM_MISMATCH/);
    expect((r as { code?: number }).code).toBe(1);
    expect(indexOf(agent.pluginsDir).sort()).toEqual(["verify/fine@1.0.0", "verify/untrusted@1.0.0"]);

    // The publisher's key is dropped from the keyring (e.g. after a compromise): cached copies go too.
    const other = await publisher("other-org");
    const cache = await PluginCache.open(agent.pluginsDir, 1 << 30, pino({ level: "silent" }));
    const report = await verifyCache(cache, await loadTrustStore({ keyring: other.keyring }), pino({ level: "silent" }));
    expect(report.quarantined.map((q) => [q.plugin, q.code]).sort()).toEqual([
      ["verify/fine@1.0.0", "KEY_UNKNOWN"],
      ["verify/untrusted@1.0.0", "KEY_UNKNOWN"],
    ]);
    expect(cache.list()).toEqual([]);
  });

  it("runs on SIGHUP in a running agent; a second agent on the same directory is refused", async () => {
    const p = await publishPlugin("verify/hup", "export const before = async () => 'h';\n");
    const agent = await startTestAgent(server);
    expect((await waitForJob(server.admin.client, server.admin.md, await runJob(agent.id, [p.id]), 60_000)).status).toBe("succeeded");
    // (a pass also runs a second after start: wait for the one SIGHUP causes)
    await agent.proc.waitForEvent(EVENT.AGENT_CACHE_REVERIFIED);
    const seen = agent.proc.lines.length;
    agent.proc.child.kill("SIGHUP");
    const line = await agent.proc.waitFor((l) => l.event === EVENT.AGENT_CACHE_REVERIFIED && agent.proc.lines.indexOf(l) >= seen);
    expect([line.checked, line.quarantined]).toEqual([1, 0]);
    const second = await run(process.execPath, [cliPath(), "agent", "verify-cache", "--config", path.join(agent.dir, "agent.yaml")]).catch(
      (e: { stderr: string }) => e,
    );
    expect(second.stderr).toMatch(/^error CONFIG_INVALID: plugin cache .* is in use by another agent \(pid \d+\)/);
  });
});

describe("resilience", () => {
  it("resumes a 64 MiB download after the server restarts mid-transfer, and completes it", async () => {
    const srv = await startTestServer();
    const big = await pack(
      writePlugin({
        id: "resume/big",
        version: "1.0.0",
        stages: ["before"],
        source: "export const before = async () => 'big';\n",
        files: { "blob.bin": randomBytes(64 * 1024 * 1024) },
      }),
    );
    await srv.publish(big.file);
    const agent = await startTestAgent(srv, undefined, "", undefined, {});
    const { client, md } = srv.admin;
    const { jobId } = await call(
      client.submitJob,
      client,
      {
        commands: [],
        plugins: [{ pluginId: big.id, version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }],
        agentId: agent.id,
        timeoutSeconds: 300,
      },
      md,
    );
    // Kill the server once a few MiB have arrived, then start it again on the same port and data.
    const part = path.join(agent.pluginsDir, "temp", "downloads", "resume~big@1.0.0.part");
    for (let i = 0; i < 400 && !(fs.existsSync(part) && fs.statSync(part).size > 4 * 1024 * 1024); i++)
      await new Promise((r) => setTimeout(r, 25));
    await srv.proc.stop("SIGKILL");
    const cut = fs.statSync(part).size;
    expect(cut).toBeLessThan(big.size);
    const port = srv.grpc.split(":").pop()!;
    const restarted = await startServerProcess(path.join(srv.dir, "config.toml"), { ARCADE_SERVER_LISTEN: `"127.0.0.1:${port}"` });
    try {
      const job = await waitForJob(client, md, jobId, 120_000);
      expect(job.status).toBe("succeeded");
      const served = await restarted.proc.waitForEvent(EVENT.SERVER_PLUGIN_SERVED, { plugin_id: big.id });
      expect(Number(served.offset)).toBeGreaterThan(0); // resumed, not restarted from zero
      expect(Number(served.offset) + Number(served.bytes)).toBe(big.size);
    } finally {
      await restarted.proc.stop();
    }
  });

  // The random, seeded version with 200 installs is the soak (test/soak/crash.soak.ts, `npm run test:soak`).
  it("kill -9 at defined points of an install (download started, extracted, installed) leaves only complete, verified entries", async () => {
    const rng = seeded(8);
    const publishOne = async (id: string, source: string, size: number) => {
      const p = await pack(writePlugin({ id, version: "1.0.0", stages: ["before"], source, files: { "data.bin": rng.bytes(size) } }));
      await server.publish(p.file);
      return p.id;
    };
    // A self-test that does not return holds an install between "verified" and "installed", so
    // these two can never become usable before the kill, however slow the machine is.
    const hangs = "export const before = async () => 1;\nexport function selfTest() { return new Promise(() => {}); }\n";
    const big = await publishOne("crashpoint/big", hangs, 8 * 1024 * 1024);
    const slow = await publishOne("crashpoint/slow", hangs, 1024);
    const small = [];
    for (const n of ["a", "b", "c"]) small.push(await publishOne(`crashpoint/${n}`, "export const before = async () => 1;\n", 64 * 1024));
    const dir = tempDir("arcade-crashpoints-");
    const agentId = `crashpoint-${randomBytes(3).toString("hex")}`;
    const killAt = async (plugins: string[], event: EventName, fields: Record<string, unknown>) => {
      const agent = await startTestAgent(server, agentId, "", dir);
      await runJob(agentId, plugins, 120);
      await agent.proc.waitForEvent(event, fields);
      await agent.proc.stop("SIGKILL");
      return expectOnlyCompleteVerifiedInstalls(agent.pluginsDir);
    };

    // 1. bytes arriving: nothing listed, nothing installed (the partial file is kept for resume)
    expect(await killAt([big], EVENT.AGENT_DOWNLOAD_STARTED, { plugin_id: big })).toEqual([]);
    // 2. verified and extracted, in its self-test: the extraction is swept, nothing listed
    expect(await killAt([slow], EVENT.AGENT_PLUGIN_VERIFIED, { plugin_id: slow })).toEqual([]);
    // 3. the first of three installed: that one is listed and verifies; the others are not half there
    const afterFirst = await killAt(small, EVENT.AGENT_PLUGIN_INSTALLED, {});
    expect(afterFirst.length).toBeGreaterThanOrEqual(1);
    // 4. a clean run afterwards completes the rest
    const agent = await startTestAgent(server, agentId, "", dir);
    const job = await waitForJob(server.admin.client, server.admin.md, await runJob(agentId, small), 120_000);
    expect(job.status).toBe("succeeded");
    await agent.proc.stop();
    expect(await expectOnlyCompleteVerifiedInstalls(agent.pluginsDir)).toEqual(small.map((id) => `${id}@1.0.0`).sort());
  });
});
