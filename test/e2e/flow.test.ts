// The seed's five steps with a real server and a real agent, as separate processes over gRPC.
import { randomBytes, createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobPluginSpec } from "../../proto/gen/arcade/v1/admin.js";
import { Stage, StepStatus } from "../../proto/gen/arcade/v1/plugin.js";
import { call } from "../../proto/rpc.js";
import { waitForJob } from "../../cli/jobs.js";
import { openDatabase } from "../../server/db/client.js";
import { EXAMPLES, cleanup, pack, startTestAgent, startTestServer, writePlugin, type TestServer } from "../helpers/harness.js";
import { EVENT } from "../../signing/events.js";

let server: TestServer;
let agent: Awaited<ReturnType<typeof startTestAgent>>;
const published: Record<string, { id: string; version: string; sha256: string }> = {};

const step = (name: string, stage: Stage, order = 1, config: object = {}): JobPluginSpec => ({
  pluginId: published[name]!.id,
  version: published[name]!.version,
  stage,
  executionOrder: order,
  configJson: JSON.stringify(config),
});

async function runJob(commands: string[], plugins: JobPluginSpec[]) {
  const { client, md } = server.admin;
  const { jobId } = await call(client.submitJob, client, { commands, plugins, agentId: agent.id, timeoutSeconds: 120 }, md);
  return waitForJob(client, md, jobId, 90_000);
}

beforeAll(async () => {
  server = await startTestServer();
  for (const name of ["setup-workspace", "notify-console", "report-workspace"]) {
    const p = await pack(path.join(EXAMPLES, name));
    await server.publish(p.file);
    published[name] = p;
  }
  agent = await startTestAgent(server);
});
afterAll(cleanup);

const allStages = () => [
  step("setup-workspace", Stage.STAGE_BEFORE, 1, { greeting: "hi" }),
  step("notify-console", Stage.STAGE_ON_SUCCESS, 1, { channel: "#ok" }),
  step("notify-console", Stage.STAGE_ON_FAILURE, 1, { channel: "#bad" }),
  step("report-workspace", Stage.STAGE_AFTER),
];

describe("five-step flow", () => {
  it("runs before, commands, on_success and after, and the t_job_plugin rows end right", async () => {
    const job = await runJob(["cat build-info.json", "echo made > out.txt"], allStages());
    expect(job.status).toBe("succeeded");
    expect(job.exitCode).toBe(0);
    expect(job.output).toContain('"greeting": "hi"');
    const byStage = Object.fromEntries(job.steps.map((s) => [s.stage, s]));
    expect(byStage[Stage.STAGE_BEFORE]!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(byStage[Stage.STAGE_ON_SUCCESS]!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(byStage[Stage.STAGE_ON_SUCCESS]!.result).toContain("[#ok]");
    expect(byStage[Stage.STAGE_ON_FAILURE]!.status).toBe(StepStatus.STEP_STATUS_SKIPPED);
    expect(byStage[Stage.STAGE_AFTER]!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(JSON.parse(byStage[Stage.STAGE_AFTER]!.result).files.join(" ")).toContain("out.txt");
    // order of execution: before < on_success < after
    expect(byStage[Stage.STAGE_BEFORE]!.completedAtMs).toBeLessThanOrEqual(byStage[Stage.STAGE_ON_SUCCESS]!.startedAtMs);
    expect(byStage[Stage.STAGE_ON_SUCCESS]!.completedAtMs).toBeLessThanOrEqual(byStage[Stage.STAGE_AFTER]!.startedAtMs);

    // The rows themselves, as the seed numbers them (2 succeeded, 4 skipped), read from the database.
    const { db, close } = await openDatabase(server.databaseUrl, { log: () => {} });
    try {
      const rows = await db.jobPlugin.findMany({ where: { jobId: job.jobId }, orderBy: { executionStage: "asc" } });
      expect(rows.map((r) => [r.executionStage, r.status])).toEqual([
        ["after", 2],
        ["before", 2],
        ["on_failure", 4],
        ["on_success", 2],
      ]);
      for (const r of rows.filter((r) => r.status === 2)) {
        expect(r.startedAt).not.toBeNull();
        expect(r.completedAt).not.toBeNull();
        expect(r.errorMessage).toBeNull();
      }
      const j = await db.job.findUniqueOrThrow({ where: { id: job.jobId } });
      expect([j.status, j.assignedAgentId, j.exitCode]).toEqual(["succeeded", agent.id, 0]);
    } finally {
      await close();
    }
  });

  it("runs on_failure instead of on_success when a command fails, and after still runs", async () => {
    const job = await runJob(["echo about to fail", "exit 7", "echo never"], allStages());
    expect(job.status).toBe("failed");
    expect(job.exitCode).toBe(7);
    expect(job.errorCode).toBe("COMMAND_FAILED");
    expect(job.output).toContain("about to fail");
    expect(job.output).not.toContain("never\n");
    const byStage = Object.fromEntries(job.steps.map((s) => [s.stage, s]));
    expect(byStage[Stage.STAGE_ON_SUCCESS]!.status).toBe(StepStatus.STEP_STATUS_SKIPPED);
    expect(byStage[Stage.STAGE_ON_FAILURE]!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(byStage[Stage.STAGE_ON_FAILURE]!.result).toContain("[#bad]");
    expect(byStage[Stage.STAGE_AFTER]!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
  });

  it("a failing before plugin skips the commands and fails the job with the plugin's error", async () => {
    const dir = writePlugin({
      id: "test/fails-before",
      version: "1.0.0",
      stages: ["before"],
      source: "export async function before() { throw new Error('precondition not met'); }\n",
    });
    const p = await pack(dir);
    await server.publish(p.file);
    published["fails-before"] = p;
    const job = await runJob(
      ["echo should-not-run"],
      [step("fails-before", Stage.STAGE_BEFORE), step("report-workspace", Stage.STAGE_AFTER)],
    );
    expect(job.status).toBe("failed");
    expect(job.errorCode).toBe("PLUGIN_FAILED");
    expect(job.output).not.toContain("should-not-run");
    const before = job.steps.find((s) => s.stage === Stage.STAGE_BEFORE)!;
    expect(before.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(before.errorMessage).toContain("precondition not met");
    expect(job.steps.find((s) => s.stage === Stage.STAGE_AFTER)!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
  });

  it("does not download a cached plugin twice (index lookup, no second transfer)", async () => {
    const labels = { plugin_id: published["report-workspace"]!.id, status: "served" };
    const servedBefore = await server.metricValue("plugin_download_total", labels);
    expect(servedBefore).toBe(1); // downloaded once by the earlier jobs, however many used it
    const hitsBefore = await agent.metricValue("plugin_cache_hit_total", { plugin_id: labels.plugin_id });
    const job = await runJob([], [step("report-workspace", Stage.STAGE_AFTER)]);
    expect(job.status).toBe("succeeded");
    expect(await server.metricValue("plugin_download_total", labels)).toBe(1);
    expect(await agent.metricValue("plugin_cache_hit_total", { plugin_id: labels.plugin_id })).toBe(hitsBefore + 1);
  });

  it("downloads a 32 MiB plugin in chunks and installs it byte for byte", async () => {
    const big = randomBytes(32 * 1024 * 1024); // random: gzip cannot shrink it below grpc's 4 MiB message limit
    const dir = writePlugin({
      id: "test/big",
      version: "1.0.0",
      stages: ["before"],
      source:
        "import { statSync } from 'node:fs';\nexport async function before(ctx) { return { size: statSync(new URL('./blob.bin', import.meta.url)).size }; }\n",
      files: { "blob.bin": big },
    });
    const p = await pack(dir);
    expect(p.size).toBeGreaterThan(32 * 1024 * 1024);
    await server.publish(p.file);
    published.big = p;
    const job = await runJob([], [step("big", Stage.STAGE_BEFORE)]);
    expect(job.status).toBe("succeeded");
    expect(JSON.parse(job.steps[0]!.result)).toEqual({ size: big.length });
    const installed = fs.readFileSync(path.join(agent.pluginsDir, "downloaded", "test", "big@1.0.0", "blob.bin"));
    expect(createHash("sha256").update(installed).digest("hex")).toBe(createHash("sha256").update(big).digest("hex"));
    expect(await server.metricValue("plugin_download_bytes_total", { plugin_id: "test/big" })).toBe(p.size);
  });

  it("reports the plugins it already has when it registers again after a restart", async () => {
    await agent.proc.stop();
    agent = await startTestAgent(server, agent.id, "", agent.dir);
    const line = await agent.proc.waitForEvent(EVENT.AGENT_REGISTERED);
    // enrolled once: the credential stays on disk, private, and the token was not needed again
    expect(fs.statSync(path.join(agent.dir, "credential")).mode & 0o777).toBe(0o600);
    expect(agent.proc.lines.some((l) => l.event === EVENT.AGENT_ENROLLED)).toBe(false);
    expect(line.installed).toBeGreaterThanOrEqual(4);
    const { db, close } = await openDatabase(server.databaseUrl, { log: () => {} });
    try {
      const rows = await db.agentPlugin.findMany({ where: { agentId: agent.id } });
      const have = Object.fromEntries(rows.map((r) => [`${r.pluginId}@${r.version}`, r.sha256]));
      for (const p of Object.values(published)) expect(have[`${p.id}@${p.version}`]).toBe(p.sha256);
    } finally {
      await close();
    }
    // and the restarted agent still serves jobs from its cache
    const job = await runJob([], [step("report-workspace", Stage.STAGE_AFTER)]);
    expect(job.status).toBe("succeeded");
  });

  it("refuses a job naming an unpublished plugin at submit time", async () => {
    const { client, md } = server.admin;
    await expect(
      call(
        client.submitJob,
        client,
        {
          commands: ["true"],
          plugins: [{ pluginId: "nope/missing", version: "1.0.0", stage: Stage.STAGE_BEFORE, executionOrder: 1, configJson: "{}" }],
          agentId: "",
          timeoutSeconds: 0,
        },
        md,
      ),
    ).rejects.toMatchObject({ code: "PLUGIN_NOT_FOUND" });
  });
});
