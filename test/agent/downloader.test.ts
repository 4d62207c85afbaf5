// The agent's downloader against a real server process: one transfer per plugin@version
// however many callers ask at once, resume after bytes already on disk, and refusal of a
// partial file that does not belong to the blob.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PluginCache } from "../../agent/cache.js";
import { Downloader } from "../../agent/downloader.js";
import { AgentMetrics } from "../../agent/metrics.js";
import { AgentServiceClient } from "../../proto/gen/arcade/v1/agent.js";
import { Stage } from "../../proto/gen/arcade/v1/plugin.js";
import { CLIENT_OPTIONS, bearer, call, channelCredentials } from "../../proto/rpc.js";
import { loadTrustStore } from "../../keys/truststore.js";
import { publisher } from "../helpers/keys.js";
import { cleanup, enrollAgent, pack, startTestServer, tempDir, writePlugin, type TestServer } from "../helpers/harness.js";
import { EVENT } from "../../signing/events.js";

const log = pino({ level: "silent" });
let server: TestServer;
let agentClient: AgentServiceClient;
let plugin: Awaited<ReturnType<typeof pack>>;
const ref = () => ({ pluginId: plugin.id, version: plugin.version, sha256: plugin.sha256, size: plugin.size });

/** Enrolls a fresh agent (granted everything unless told otherwise) and returns its credential. */
async function enrolled(agentId: string, grant: string | false = "*"): Promise<string> {
  const token = await enrollAgent(server, agentId, {}, grant);
  const md = new Metadata();
  md.set("x-arcade-enrollment-token", token);
  const { credential } = await call(
    agentClient.register,
    agentClient,
    { agentId, hostname: "test", agentVersion: "test", installed: [] },
    md,
  );
  return credential;
}

/** An enrolled agent that has claimed a job using the plugin. */
async function claimAs(agentId: string): Promise<string> {
  const credential = await enrolled(agentId);
  const { client, md } = server.admin;
  await call(
    client.submitJob,
    client,
    {
      commands: ["true"],
      plugins: [{ pluginId: plugin.id, version: plugin.version, stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }],
      agentId,
      timeoutSeconds: 60,
    },
    md,
  );
  const { job } = await call(agentClient.fetchJob, agentClient, {}, bearer(credential));
  expect(job).toBeDefined();
  return credential;
}

async function downloader(token: string) {
  const cache = await PluginCache.open(tempDir("arcade-cache-"), 1 << 30, log);
  const metrics = new AgentMetrics();
  const trust = await loadTrustStore({ keyring: (await publisher()).keyring });
  return { cache, metrics, d: new Downloader({ client: agentClient, trust, token: () => token, cache, metrics, log, timeoutMs: 60_000 }) };
}

const served = () => server.metricValue("plugin_download_total", { plugin_id: plugin.id, status: "served" });

beforeAll(async () => {
  server = await startTestServer();
  agentClient = new AgentServiceClient(server.grpc, channelCredentials({ ca: server.ca }), CLIENT_OPTIONS);
  const random = (await import("node:crypto")).randomBytes(3 * 1024 * 1024);
  plugin = await pack(
    writePlugin({
      id: "test/dl",
      version: "2.0.0",
      stages: ["before"],
      source: "export const before = async () => 1;\n",
      files: { "payload.bin": random },
    }),
  );
  await server.publish(plugin.file);
});
afterAll(async () => {
  agentClient.close();
  await cleanup();
});

describe("downloader", () => {
  it("shares one download among concurrent callers and then serves from the cache", async () => {
    const { d, metrics } = await downloader(await claimAs("dl-single"));
    const before = await served();
    const results = await Promise.all([d.ensure(ref()), d.ensure(ref()), d.ensure(ref()), d.ensure(ref())]);
    expect(new Set(results.map((r) => r.entry.dir)).size).toBe(1);
    expect((await served()) - before).toBe(1);
    const again = await d.ensure(ref());
    expect(again.cached).toBe(true);
    expect((await served()) - before).toBe(1);
    expect(await metrics.registry.getSingleMetricAsString("plugin_cache_hit_total")).toContain('plugin_id="test/dl"} 1');
  });

  it("resumes after the bytes a cut transfer left in temp/", async () => {
    const { d, cache } = await downloader(await claimAs("dl-resume"));
    const body = fs.readFileSync(plugin.file);
    const half = Math.floor(body.length / 2);
    fs.writeFileSync(cache.partialPath(ref()), body.subarray(0, half));
    const r = await d.ensure(ref());
    expect(r.cached).toBe(false);
    expect(fs.existsSync(path.join(cache.dirOf(r.entry), "payload.bin"))).toBe(true);
    const line = await server.proc.waitForEvent(EVENT.SERVER_PLUGIN_SERVED, { agent_id: "dl-resume" });
    expect(line.offset).toBe(half);
    expect(line.bytes).toBe(body.length - half);
    expect(fs.existsSync(cache.partialPath(ref()))).toBe(false);
  });

  it("refuses a partial file that is not a prefix of the blob, and keeps nothing", async () => {
    const { d, cache } = await downloader(await claimAs("dl-badpart"));
    fs.writeFileSync(cache.partialPath(ref()), Buffer.alloc(1000, 7));
    await expect(d.ensure(ref())).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
    expect(fs.existsSync(cache.partialPath(ref()))).toBe(false);
    expect(cache.lookup(ref())).toBeUndefined();
  });

  it("refuses a job's checksum that the server's copy does not have, before any byte is kept", async () => {
    const { d, cache } = await downloader(await claimAs("dl-wrongsum"));
    const wrong = { ...ref(), sha256: "f".repeat(64) };
    await expect(d.ensure(wrong)).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
    expect(fs.existsSync(cache.partialPath(wrong))).toBe(false);
  });

  it.skipIf(process.getuid?.() !== 0)("reports a full disk as DISK_FULL and leaves nothing usable or half-written", async () => {
    const mnt = tempDir("arcade-full-");
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
    try {
      const cache = await PluginCache.open(mnt, 1 << 30, log, { lock: false });
      const trust = await loadTrustStore({ keyring: (await publisher()).keyring });
      const token = await claimAs("dl-diskfull");
      const full = new Downloader({
        client: agentClient,
        trust,
        token: () => token,
        cache,
        metrics: new AgentMetrics(),
        log,
        timeoutMs: 60_000,
      });
      await expect(full.ensure(ref())).rejects.toMatchObject({ code: "DISK_FULL", message: expect.stringContaining("no space left") });
      expect(cache.lookup(ref())).toBeUndefined();
      expect(fs.existsSync(cache.partialPath(ref()))).toBe(false);
      expect(fs.readdirSync(path.join(mnt, "downloaded"))).toEqual([]);
    } finally {
      execFileSync("umount", ["-l", mnt]);
    }
  });

  it("is refused a plugin no ACL grants it (ACL_DENIED), and the refusal does not name the plugin in metrics", async () => {
    const { d } = await downloader(await enrolled("dl-ungranted", false));
    await expect(d.ensure(ref())).rejects.toMatchObject({ code: "ACL_DENIED" });
    expect(await server.metricValue("plugin_download_total", { plugin_id: "-", status: "denied" })).toBeGreaterThanOrEqual(1);
  });
});
