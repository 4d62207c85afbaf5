// The README's "Using it" walkthrough, run exactly as written: examples/quickstart/run.sh starts
// a real server over mTLS and a real agent, and drives them with the `arcade` command from PATH.
// The README must quote the script's walkthrough verbatim, so what users read is what runs here.
import { execFile } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { cliPath } from "../../cli/processes.js";
import { REPO, cleanup, tempDir } from "../helpers/harness.js";

const run = promisify(execFile);
const SCRIPT = path.join(REPO, "examples", "quickstart", "run.sh");
const BEGIN = "# --- walkthrough ---";
const END = "# --- end of walkthrough ---";

afterAll(cleanup);

/** The walkthrough lines of a text: those between the markers. */
function walkthrough(text: string): string {
  const from = text.indexOf(BEGIN);
  const to = text.indexOf(END);
  if (from < 0 || to < from) return "";
  return text.slice(from + BEGIN.length, to).trim();
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

/** A PATH entry with `arcade` running this checkout's build, as `npm link` would give a user. */
function arcadeOnPath(): string {
  const bin = tempDir("arcade-bin-");
  fs.writeFileSync(path.join(bin, "arcade"), `#!/bin/sh\nexec "${process.execPath}" "${cliPath()}" "$@"\n`, { mode: 0o755 });
  return bin;
}

describe("quickstart walkthrough", () => {
  it("README.md quotes examples/quickstart/run.sh's walkthrough verbatim", () => {
    const script = walkthrough(fs.readFileSync(SCRIPT, "utf8"));
    expect(script.split("\n").length).toBeGreaterThan(20);
    const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
    expect(walkthrough(readme)).toBe(script);
  });

  it("runs end to end over mTLS: publish, grant, enroll, a job with the plugin's log in its report, the audit trail", async () => {
    const [grpc, metrics, agentMetrics] = [await freePort(), await freePort(), await freePort()];
    const work = tempDir("arcade-quickstart-");
    const { stdout } = await run("bash", [SCRIPT, work], {
      env: {
        ...process.env,
        PATH: `${arcadeOnPath()}:${process.env.PATH}`,
        // The example files use the default ports; a test must not depend on them being free.
        ARCADE_SERVER_LISTEN: `127.0.0.1:${grpc}`,
        ARCADE_METRICS_LISTEN: `127.0.0.1:${metrics}`,
        ARCADE_SERVER: `127.0.0.1:${grpc}`,
        ARCADE_AGENT_SERVER: `127.0.0.1:${grpc}`,
        ARCADE_AGENT_METRICS_LISTEN: `127.0.0.1:${agentMetrics}`,
      },
      timeout: 240_000,
    }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
      const logs = ["server.log", "agent.log"].map((f) => {
        const p = path.join(work, f);
        return `--- ${f}\n${fs.existsSync(p) ? fs.readFileSync(p, "utf8").slice(-4000) : "(none)"}`;
      });
      throw new Error(`${e.message}\n--- stdout\n${e.stdout}\n--- stderr\n${e.stderr}\n${logs.join("\n")}`);
    });
    // The job ran on build-7 with the plugin's before stage; the scaffold's ctx.log() line is in the report.
    expect(stdout).toMatch(/job [0-9a-f-]{36}: succeeded on build-7/);
    expect(stdout).toMatch(/before\s+acme\/hello@1\.0\.0\s+succeeded/);
    expect(stdout).toMatch(/\| preparing job [0-9a-f-]{36}/);
    expect(stdout).toContain("hello from build-7");
    // The audit trail shows the agent's download of the plugin.
    expect(stdout).toMatch(/agent:build-7\s+plugin\.download\s+succeeded\s+acme\/hello@1\.0\.0/);
    // The admin commands went over mTLS with the issued admin certificate.
    expect(fs.existsSync(path.join(work, "pki", "admins", "admin.pem"))).toBe(true);
  });
});
