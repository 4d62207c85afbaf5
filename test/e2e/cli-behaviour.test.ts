// What a user expects of `arcade`: flags reach the subcommand, mistakes are user errors naming
// what to pass (not INTERNAL), filters check their values, --json everywhere with enum names,
// and `--wait` gives up with JOB_TIMEOUT while the job keeps going. Real server and agent
// processes over TLS on loopback.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, spawnArcade } from "../../cli/processes.js";
import { ErrorCode } from "../../signing/errors.js";
import { ADMIN_ROLES, AUDIT_OUTCOMES } from "../../signing/vocabulary.js";
import {
  EXAMPLES,
  cleanup,
  enrollAgent,
  pack,
  startTestAgent,
  startTestServer,
  tempDir,
  writePlugin,
  type TestServer,
} from "../helpers/harness.js";
import { publisher } from "../helpers/keys.js";
import { testCerts } from "../helpers/tls.js";

const run = promisify(execFile);
let server: TestServer;
let agentId: string;

type Result = { code: number; stdout: string; stderr: string };

async function arcade(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const base = { ...process.env, ARCADE_SERVER: server.grpc, ARCADE_DATA_DIR: path.join(server.dir, "data"), ARCADE_CA: server.ca };
  return run(process.execPath, [cliPath(), ...args], { env: { ...base, ...env } }).then(
    (r) => ({ code: 0, ...r }),
    (e: Result) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const json = (r: Result) => JSON.parse(r.stdout) as Record<string, unknown>;

/** A loopback port held open by this test process, so nothing else can listen on it. */
async function busyPort(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  afterAll(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
}

beforeAll(async () => {
  server = await startTestServer();
  agentId = (await startTestAgent(server)).id;
  await server.publish((await pack(path.join(EXAMPLES, "notify-console"))).file);
});
afterAll(cleanup);

describe("arcade: flags and user errors", () => {
  it("plugin init --version 1.0.0 creates 1.0.0 (the global --version does not swallow it)", async () => {
    const dir = path.join(tempDir(), "p");
    const r = await arcade(["plugin", "init", dir, "--id", "acme/versioned", "--version", "1.0.0"]);
    expect(r.code).toBe(0);
    expect((JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as { version: string }).version).toBe("1.0.0");
  });

  it("a missing key, keyring or tarball names the flag; verify without trusted keys names --keyring", async () => {
    const tgz = path.join(tempDir(), "c.tgz");
    expect((await arcade(["plugin", "pack", path.join(EXAMPLES, "notify-console"), "-o", tgz])).code).toBe(0);
    const sign = await arcade(["plugin", "sign", tgz, "--key", "nope.asc"]);
    expect([sign.code, sign.stderr]).toEqual([1, expect.stringMatching(/^error INVALID_ARGUMENT: --key nope\.asc: no such file/)]);
    const noTrust = await arcade(["plugin", "verify", tgz]);
    expect([noTrust.code, noTrust.stderr]).toEqual([1, expect.stringMatching(/^error INVALID_ARGUMENT: .*pass --keyring <file>/)]);
    const noKeyring = await arcade(["plugin", "verify", tgz, "--keyring", "missing.asc"]);
    expect(noKeyring.stderr).toMatch(/^error INVALID_ARGUMENT: --keyring missing\.asc: no such file/);
    const noTarball = await arcade(["plugin", "inspect", "missing.tgz"]);
    expect(noTarball.stderr).toMatch(/^error INVALID_ARGUMENT: <tarball> missing\.tgz: no such file/);
  });

  it("certs init over an existing CA names --reuse-ca", async () => {
    const out = path.join(tempDir(), "pki");
    expect((await arcade(["certs", "init", "--out", out])).code).toBe(0);
    const again = await arcade(["certs", "init", "--out", out]);
    expect([again.code, again.stderr]).toEqual([1, expect.stringMatching(/^error INVALID_ARGUMENT: .*ca\.key.*pass --reuse-ca/)]);
  });

  it("a listen port in use names its config key: server.listen, metrics.listen, the agent's metrics_listen", async () => {
    const port = await busyPort();
    const dir = tempDir();
    const keyring = (await publisher()).keyring;
    const startServer = async (toml: string) => {
      fs.writeFileSync(
        path.join(dir, "config.toml"),
        `[server]\ndata_dir = "${dir}/data"\n${toml}[database]\nurl = "file:${dir}/a.db"\n[trust]\nkeyring = "${keyring}"\n`,
      );
      const p = spawnArcade(["server", "start", "--config", path.join(dir, "config.toml"), "--insecure"]);
      return { code: await p.exited, stderr: p.stderr.join("\n") };
    };
    const grpc = await startServer(`listen = "${port}"\n[metrics]\nlisten = "127.0.0.1:0"\n`);
    expect(grpc.code).toBe(1);
    expect(grpc.stderr).toMatch(new RegExp(`^error LISTEN_FAILED: cannot listen on ${port} \\(server\\.listen\\): .*in use`, "m"));
    const metrics = await startServer(`listen = "127.0.0.1:0"\n[metrics]\nlisten = "${port}"\n`);
    expect([metrics.code, metrics.stderr]).toEqual([
      1,
      expect.stringMatching(/^error LISTEN_FAILED: .*\(metrics\.listen\).*ARCADE_METRICS_LISTEN/m),
    ]);

    const agentDir = tempDir();
    const id = "busy-metrics";
    fs.writeFileSync(path.join(agentDir, "enrollment.token"), await enrollAgent(server, id), { mode: 0o600 });
    const pub = await publisher();
    fs.writeFileSync(
      path.join(agentDir, "agent.yaml"),
      `id: ${id}\nserver: ${server.grpc}\nplugins:\n  directory: plugins\nwork_dir: work\ncredential_file: credential\nenrollment_token_file: enrollment.token\nmetrics_listen: ${port}\ntls:\n  ca: ${(await testCerts()).ca}\ntrust:\n  keyring: ${pub.keyring}\n`,
    );
    const agent = spawnArcade(["agent", "start", "--config", path.join(agentDir, "agent.yaml")]);
    expect(await agent.exited).toBe(1);
    expect(agent.stderr.join("\n")).toMatch(/^error LISTEN_FAILED: .*\(metrics_listen\).*ARCADE_AGENT_METRICS_LISTEN/m);
  });

  it.skipIf(!("TLS_CLIENT_CERT_REQUIRED" in ErrorCode))(
    "a server that requires a client certificate: the error says to pass --cert/--key",
    async () => {
      const certs = await testCerts();
      const admin = await certs.agentCert("cli-mtls-admin");
      const mtls = await startTestServer(`[tls]\ncert = "${certs.cert}"\nkey = "${certs.key}"\nclient_ca = "${certs.ca}"\n`, {}, admin);
      const env = { ARCADE_SERVER: mtls.grpc, ARCADE_DATA_DIR: path.join(mtls.dir, "data"), ARCADE_CA: certs.ca };
      const bare = await arcade(["acl", "list"], env);
      expect(bare.code).toBe(1);
      expect(bare.stderr).toMatch(/^error TLS_CLIENT_CERT_REQUIRED: /);
      expect(bare.stderr).toContain("pass --cert/--key");
      expect(bare.stderr).not.toMatch(/Resolution note: *$/m);
      expect((await arcade(["acl", "list", "--cert", admin.cert, "--key", admin.key], env)).code).toBe(0);
    },
  );
});

describe("arcade: filters check their values", () => {
  it.each([
    [["audit", "query", "--outcome", "refused"], "--outcome refused", AUDIT_OUTCOMES],
    [["audit", "query", "--action", "plugin.steal"], "--action plugin.steal", ["plugin.download", "rpc.SubmitJob"]],
    [["admin", "token", "create", "--name", "x", "--role", "root"], "--role root", ADMIN_ROLES],
  ])("%j is INVALID_ARGUMENT listing the valid values", async (args, what, valid) => {
    const r = await arcade(args);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(new RegExp(`^error INVALID_ARGUMENT: ${what.replace(/[.]/g, "\\.")}: not a valid value; valid values: `));
    for (const v of valid) expect(r.stderr).toContain(v);
  });

  it("a valid filter still works", async () => {
    const r = await arcade(["audit", "query", "--action", "plugin.publish", "--outcome", "succeeded", "--json"]);
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { action: string; outcome: string });
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) expect([e.action, e.outcome]).toEqual(["plugin.publish", "succeeded"]);
  });
});

describe("arcade: --json", () => {
  it("job submit --wait and job status print the job with stage and status names, not numbers", async () => {
    const sub = await arcade([
      "job",
      "submit",
      "--run",
      "true",
      "--plugin",
      "notify/console@1.2.0:on_success:1",
      "--plugin",
      "notify/console@1.2.0:on_failure:2",
      "--agent",
      agentId,
      "--wait",
      "--json",
    ]);
    expect(sub.code).toBe(0);
    const j = json(sub) as { jobId: string; status: string; steps: { stage: unknown; status: unknown }[] };
    expect(j.status).toBe("succeeded");
    expect(j.steps).toEqual(expect.arrayContaining([expect.objectContaining({ stage: "on_success", status: "succeeded" })]));
    expect(j.steps.find((s) => s.stage === "on_failure")?.status).toBe("skipped");
    const st = await arcade(["job", "status", j.jobId, "--json"]);
    expect(json(st)).toMatchObject({ jobId: j.jobId, status: "succeeded", exitCode: 0 });
    expect(st.stdout).not.toMatch(/"(stage|status)":\d/);
    const noWait = await arcade(["job", "submit", "--run", "true", "--agent", agentId, "--json"]);
    expect(json(noWait)).toEqual({ jobId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  it("every list, query and status command prints JSON", async () => {
    const created = json(await arcade(["agent", "create", "json-agent", "--labels", "os=linux", "--json"]));
    expect(created).toMatchObject({ agentId: "json-agent", enrollmentToken: expect.stringMatching(/^arc_enroll_/) });
    const agents = JSON.parse((await arcade(["agent", "list", "--json"])).stdout) as { agentId: string; state: string; labels: object }[];
    expect(agents.find((a) => a.agentId === "json-agent")).toMatchObject({ state: "awaiting enrollment", labels: { os: "linux" } });
    const grant = json(await arcade(["acl", "grant", "agent:json-agent", "notify/*", "--json"]));
    expect(grant).toEqual({ grantId: expect.any(String) });
    const grants = JSON.parse((await arcade(["acl", "list", "--json"])).stdout) as { grantId: string; pluginPattern: string }[];
    expect(grants.find((g) => g.grantId === grant.grantId)?.pluginPattern).toBe("notify/*");
    const check = await arcade(["acl", "check", "json-agent", "notify/console@1.2.0", "--json"]);
    expect([check.code, json(check)]).toEqual([0, { allowed: true, reason: expect.any(String) }]);
    const plugins = JSON.parse((await arcade(["plugin", "list", "--json"])).stdout) as { plugin: { pluginId: string } }[];
    expect(plugins.map((p) => p.plugin.pluginId)).toContain("notify/console");
    const token = json(await arcade(["admin", "token", "create", "--name", "json-auditor", "--role", "auditor", "--json"]));
    expect(token).toMatchObject({ name: "json-auditor", role: "auditor", token: expect.any(String) });
    const audit = (await arcade(["audit", "query", "--action", "acl.grant", "--json"])).stdout.trim().split("\n");
    expect(audit.map((l) => JSON.parse(l) as { details: { subject?: string } }).some((e) => e.details.subject === "agent:json-agent")).toBe(
      true,
    );
  });

  it("agent doctor and agent verify-cache print JSON", async () => {
    const doctor = json(await arcade(["agent", "doctor", "--json"]));
    expect(doctor).toMatchObject({ node: { version: process.version }, layers: expect.any(Object) });
    const dir = tempDir();
    const cfg = path.join(dir, "agent.yaml");
    fs.writeFileSync(
      cfg,
      `id: json-cache\nserver: ${server.grpc}\nplugins:\n  directory: ${dir}/plugins\nwork_dir: ${dir}/work\ncredential_file: ${dir}/credential\nenrollment_token_file: ${dir}/token\ntls:\n  ca: ${server.ca}\ntrust:\n  keyring: ${(await publisher()).keyring}\n`,
    );
    const r = await arcade(["agent", "verify-cache", "--config", cfg, "--json"]);
    expect([r.code, json(r)]).toEqual([0, expect.objectContaining({ checked: 0, ok: 0, quarantined: [] })]);
  });

  it("plugin publish, inspect and verify print JSON", async () => {
    const p = await pack(path.join(EXAMPLES, "report-workspace"));
    const pub = json(await arcade(["plugin", "publish", p.file, "--json"]));
    expect(pub).toMatchObject({ created: true, plugin: { pluginId: p.id, version: p.version, sha256: p.sha256 } });
    const inspect = json(await arcade(["plugin", "inspect", p.file, "--json"]));
    expect(inspect).toMatchObject({ sha256: p.sha256, signed: true, verified: false, statement: { matches: true } });
    const keyring = (await publisher()).keyring;
    const ok = await arcade(["plugin", "verify", p.file, "--keyring", keyring, "--json"]);
    expect([ok.code, json(ok)]).toEqual([0, expect.objectContaining({ verified: true, plugin: `${p.id}@${p.version}` })]);
    const stranger = await arcade(["plugin", "verify", p.file, "--keyring", (await publisher("someone-else")).keyring, "--json"]);
    expect([stranger.code, json(stranger)]).toEqual([1, expect.objectContaining({ verified: false, code: "KEY_UNKNOWN" })]);
  });
});

describe("arcade: waiting for a job", () => {
  it("job status --wait --timeout gives up with JOB_TIMEOUT and leaves the job running", async () => {
    // An agent that exists but never runs: the job stays pending.
    expect((await arcade(["agent", "create", "never-started"])).code).toBe(0);
    const jobId = (await arcade(["job", "submit", "--run", "true", "--agent", "never-started"])).stdout.trim();
    const waited = await arcade(["job", "status", jobId, "--wait", "--timeout", "1"]);
    expect(waited.code).toBe(1);
    expect(waited.stderr).toMatch(
      /^error JOB_TIMEOUT: job .* is still pending after 1 s; stopped waiting \(--timeout\), the job keeps running/,
    );
    expect(json(await arcade(["job", "status", jobId, "--json"]))).toMatchObject({ jobId, status: "pending" });
    const bad = await arcade(["job", "status", jobId, "--wait", "--timeout", "soon"]);
    expect(bad.stderr).toMatch(/^error INVALID_ARGUMENT: --timeout soon/);
    const submitWait = await arcade(["job", "submit", "--run", "true", "--agent", "never-started", "--wait", "--wait-timeout", "1"]);
    expect(submitWait.stderr).toMatch(/^error JOB_TIMEOUT: .*stopped waiting \(--wait-timeout\)/);
  });
});

// `script` runs the command on a pseudo-terminal, as a person at a terminal would.
const hasScript = await run("script", ["--version"]).then(
  () => true,
  () => false,
);

describe("arcade: progress on a terminal only", () => {
  const onTty = async (args: string[]): Promise<string> => {
    const env = { ...process.env, ARCADE_SERVER: server.grpc, ARCADE_DATA_DIR: path.join(server.dir, "data"), ARCADE_CA: server.ca };
    const cmd = [process.execPath, cliPath(), ...args].map((a) => JSON.stringify(a)).join(" ");
    return (await run("script", ["-qec", cmd, "/dev/null"], { env })).stdout;
  };

  it.skipIf(!hasScript)("plugin publish shows bytes sent and rate on a TTY, nothing extra in a pipe", async () => {
    const p = await pack(
      writePlugin({
        id: "progress/big",
        version: "1.0.0",
        stages: ["before"],
        source: "export const before = async () => 1;\n",
        // Random bytes do not compress: several upload chunks.
        files: { "blob.bin": randomBytes(1024 * 1024) },
      }),
    );
    const tty = await onTty(["plugin", "publish", p.file]);
    expect(tty).toMatch(/progress\/big@1\.0\.0 .*100% [\d.]+\/[\d.]+ MiB [\d.]+ MiB\/s/);
    expect(tty).toContain("published progress/big@1.0.0");
    const piped = await arcade(["plugin", "publish", p.file]);
    expect([piped.code, piped.stderr]).toEqual([0, ""]);
    expect(piped.stdout).toMatch(/^already published progress\/big@1\.0\.0/);
  });

  it.skipIf(!hasScript)("job submit --wait shows the state and steps done on a TTY", async () => {
    const tty = await onTty([
      "job",
      "submit",
      "--run",
      "true",
      "--plugin",
      "notify/console@1.2.0:on_success",
      "--agent",
      agentId,
      "--wait",
    ]);
    expect(tty).toMatch(/job [0-9a-f-]{36} .* 1\/1 steps \| succeeded/);
    const piped = await arcade(["job", "submit", "--run", "true", "--agent", agentId, "--wait"]);
    expect([piped.code, piped.stderr]).toEqual([0, ""]);
  });
});
