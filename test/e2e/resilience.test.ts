// Jobs never stay stuck: an agent that is stopped cancels its job and kills what it started;
// one that dies without a word has its job failed by the server's sweep.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Stage } from "../../proto/gen/arcade/v1/plugin.js";
import { call } from "../../proto/rpc.js";
import { waitForJob } from "../../cli/jobs.js";
import { cleanup, pack, startTestAgent, startTestServer, tempDir, writePlugin, type TestServer } from "../helpers/harness.js";
import { EVENT } from "../../signing/events.js";

let server: TestServer;
afterAll(cleanup);
beforeAll(async () => {
  server = await startTestServer(`[jobs]\nreap_interval = 1\nreport_grace = 0\n`);
});

async function submit(agentId: string, commands: string[], timeoutSeconds: number, plugins: { pluginId: string; version: string }[] = []) {
  const { client, md } = server.admin;
  const specs = plugins.map((p) => ({ ...p, stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }));
  return (await call(client.submitJob, client, { commands, plugins: specs, agentId, timeoutSeconds }, md)).jobId;
}

async function gone(pid: number, ms = 5000): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
  }
  return false;
}

describe("stuck jobs", () => {
  it("an agent stopped mid-job kills the job's processes and reports it cancelled", async () => {
    const agent = await startTestAgent(server);
    const marker = path.join(tempDir(), "pid");
    const jobId = await submit(agent.id, [`sleep 60 & echo $! > ${marker}; wait`], 120);
    await agent.proc.waitForEvent(EVENT.AGENT_COMMAND_STARTED, { job_id: jobId });
    // the shell writes the background pid a moment after the command starts: wait for a whole number
    const readPid = () => (fs.existsSync(marker) ? Number.parseInt(fs.readFileSync(marker, "utf8"), 10) : NaN);
    for (let i = 0; i < 200 && !(readPid() > 1); i++) await new Promise((r) => setTimeout(r, 50));
    const sleeper = readPid();
    expect(sleeper).toBeGreaterThan(1);
    await agent.proc.stop("SIGTERM");
    const job = await waitForJob(server.admin.client, server.admin.md, jobId, 30_000);
    expect([job.status, job.errorCode]).toEqual(["failed", "JOB_CANCELLED"]);
    expect(await gone(sleeper)).toBe(true);
  });

  it("a job whose agent died is failed with JOB_TIMEOUT once its timeout and grace have passed", async () => {
    const agent = await startTestAgent(server);
    const jobId = await submit(agent.id, ["sleep 60"], 2);
    await agent.proc.waitForEvent(EVENT.AGENT_COMMAND_STARTED, { job_id: jobId });
    await agent.proc.stop("SIGKILL");
    const job = await waitForJob(server.admin.client, server.admin.md, jobId, 15_000);
    expect([job.status, job.errorCode]).toEqual(["failed", "JOB_TIMEOUT"]);
    expect(job.errorMessage).toContain("did not report");
  });
});

describe("agent limits", () => {
  it("refuses a plugin larger than its own plugins.max_plugin_size, whatever the server allows", async () => {
    const p = await pack(
      writePlugin({
        id: "limits/big",
        version: "1.0.0",
        stages: ["before"],
        source: "export const before = async () => 1;\n",
        files: { "b.bin": (await import("node:crypto")).randomBytes(1_500_000) },
      }),
    );
    await server.publish(p.file);
    const agent = await startTestAgent(server, undefined, "", undefined, { ARCADE_AGENT_PLUGINS_MAX_PLUGIN_SIZE: "1" });
    const job = await waitForJob(
      server.admin.client,
      server.admin.md,
      await submit(agent.id, [], 60, [{ pluginId: p.id, version: p.version }]),
      30_000,
    );
    expect([job.status, job.errorCode]).toEqual(["failed", "SIZE_LIMIT"]);
    expect(job.errorMessage).toContain("max_plugin_size");
    expect(await server.metricValue("plugin_download_total", { plugin_id: p.id })).toBe(0); // refused before asking
  });
});
