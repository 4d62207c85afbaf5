// Jobs as a user meets them: a plugin's ctx.log() lines in the job report (capped, neutralised),
// a job for an agent that does not exist refused at submit, and a job no agent takes failing
// after jobs.pending_timeout instead of waiting for ever.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatJob, waitForJob } from "../../cli/jobs.js";
import { cliPath } from "../../cli/processes.js";
import { Stage, StepStatus } from "../../proto/gen/arcade/v1/plugin.js";
import { call } from "../../proto/rpc.js";
import { isArcadeError } from "../../signing/errors.js";
import { cleanup, enrollAgent, pack, startTestAgent, startTestServer, writePlugin, type TestServer } from "../helpers/harness.js";

const run = promisify(execFile);
let server: TestServer;

// The server keeps 1 KiB of logs per step here, so the cap is reached by a plugin's flood; the
// agent's own cap (64 KiB by default) is not what is tested.
beforeAll(async () => {
  server = await startTestServer("[jobs]\nmax_step_log_bytes = 1024\n");
});
afterAll(cleanup);

const ESC = "\u001b";

describe("plugin logs in the job report", () => {
  it("carries ctx.log() lines into the report in order, neutralised and capped", async () => {
    const p = await pack(
      writePlugin({
        id: "logs/chatty",
        version: "1.0.0",
        stages: ["before", "after"],
        source: `
          export async function before(ctx) {
            ctx.log("first line");
            ctx.log("${ESC}[2J${ESC}]0;owned${"\u0007"} cleared\\nforged: job succeeded \u202Eevil");
            return "ok";
          }
          export async function after(ctx) {
            for (let i = 0; i < 200; i++) ctx.log("flood " + i + " " + "x".repeat(40));
            return "done";
          }
        `,
      }),
    );
    await server.publish(p.file);
    const agent = await startTestAgent(server);
    const { client, md } = server.admin;
    const { jobId } = await call(
      client.submitJob,
      client,
      {
        commands: [`printf '${ESC}[31mred${ESC}[0m\\n'`],
        plugins: [
          { pluginId: p.id, version: p.version, stage: Stage.STAGE_BEFORE, executionOrder: 0, configJson: "{}" },
          { pluginId: p.id, version: p.version, stage: Stage.STAGE_AFTER, executionOrder: 0, configJson: "{}" },
        ],
        agentId: agent.id,
        timeoutSeconds: 120,
      },
      md,
    );
    const job = await waitForJob(client, md, jobId, 90_000);
    expect(job.status).toBe("succeeded");
    const [before, after] = [Stage.STAGE_BEFORE, Stage.STAGE_AFTER].map((s) => job.steps.find((x) => x.stage === s)!);
    expect(before!.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(before!.logs[0]).toBe("first line");
    // Control characters, the newline that would forge a second line, and the bidi override are
    // stored as visible escapes.
    expect(before!.logs[1]).toBe("\\x1b[2J\\x1b]0;owned\\x07 cleared\\nforged: job succeeded \\u202eevil");
    expect(before!.logs).toHaveLength(2);
    // The flood is capped at the server's 1 KiB, with a last line saying how much was dropped.
    const kept = after!.logs;
    expect(kept[0]).toMatch(/^flood 0 x+$/);
    expect(kept.length).toBeLessThan(200);
    expect(Buffer.byteLength(kept.slice(0, -1).join("\n"))).toBeLessThanOrEqual(1024);
    expect(kept.at(-1)).toMatch(new RegExp(`^\\[${200 - (kept.length - 1)} more log lines dropped`));
    // What `arcade job status` prints holds no raw escape: not the logs, not the command output.
    const text = formatJob(job);
    expect(text).toContain("| first line");
    expect(text).toContain("\\x1b[31mred\\x1b[0m");
    expect(text).not.toContain(ESC);
    expect(text).not.toContain("\u202e");
    const cli = await run(process.execPath, [
      cliPath(),
      "job",
      "status",
      jobId,
      "--server",
      server.grpc,
      "--ca",
      server.ca!,
      "--data-dir",
      `${server.dir}/data`,
    ]);
    expect(cli.stdout).toContain("| first line");
    expect(cli.stdout).not.toContain(ESC);
    await agent.proc.stop();
  });
});

describe("submit-time and pending checks", () => {
  it("refuses a job for an agent that does not exist or was revoked, with or without plugins", async () => {
    const { client, md } = server.admin;
    const submit = (agentId: string) =>
      call(client.submitJob, client, { commands: ["true"], plugins: [], agentId, timeoutSeconds: 60 }, md).then(
        () => "accepted",
        (e: unknown) => (isArcadeError(e) ? `${e.code}: ${e.message}` : String(e)),
      );
    expect(await submit("no-such-agent")).toMatch(/^AGENT_NOT_FOUND: .*"no-such-agent".*arcade agent list/);
    await enrollAgent(server, "soon-revoked");
    expect(await submit("soon-revoked")).toBe("accepted");
    await call(client.revokeAgent, client, { agentId: "soon-revoked" }, md);
    expect(await submit("soon-revoked")).toMatch(/^AGENT_NOT_FOUND: /);
    // Through the CLI, the code reaches the user.
    const cli = await run(process.execPath, [
      cliPath(),
      "job",
      "submit",
      "--run",
      "true",
      "--agent",
      "typo-agent",
      "--server",
      server.grpc,
      "--ca",
      server.ca!,
      "--data-dir",
      `${server.dir}/data`,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect("code" in cli && cli.code).toBe(1);
    expect((cli as { stderr: string }).stderr).toMatch(/^error AGENT_NOT_FOUND: /);
  });

  it("fails a job that no agent takes within jobs.pending_timeout, with a code, and audits it", async () => {
    // Its own server: a 2 s pending timeout would race the agents of the other tests.
    const srv = await startTestServer("[jobs]\npending_timeout = 2\nreap_interval = 1\n");
    // An agent that exists but is not running: the job is accepted, then nobody takes it.
    await enrollAgent(srv, "never-started");
    const { client, md } = srv.admin;
    const { jobId } = await call(
      client.submitJob,
      client,
      { commands: ["true"], plugins: [], agentId: "never-started", timeoutSeconds: 60 },
      md,
    );
    const job = await waitForJob(client, md, jobId, 60_000);
    expect(job.status).toBe("failed");
    expect(job.errorCode).toBe("JOB_PENDING_TIMEOUT");
    expect(job.errorMessage).toMatch(/jobs\.pending_timeout \(2 s\).*never-started/);
    expect(job.completedAtMs - job.createdAtMs).toBeGreaterThanOrEqual(2000);
    const audit = await call(client.queryAudit, client, { action: "job.expire", actor: "", outcome: "", sinceMs: 0, limit: 10 }, md);
    expect(audit.events.map((e) => e.subject)).toContain(jobId);
  });
});
