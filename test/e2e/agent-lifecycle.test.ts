// `arcade agent start` says "ready" only once the server accepted its Register, and stops with
// exit status 78 and a typed reason when retrying can never succeed: a TLS set-up the server
// refuses, a server it cannot trust, a revoked credential, a spent enrollment token. A server that
// is only down is waited for. Real server and agent processes over real TLS.
import fs from "node:fs";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CANNOT_SUCCEED } from "../../agent/main.js";
import { spawnArcade, startServerProcess, type ArcadeProcess } from "../../cli/processes.js";
import { AgentServiceClient } from "../../proto/gen/arcade/v1/agent.js";
import { CLIENT_OPTIONS, call, channelCredentials } from "../../proto/rpc.js";
import { writeCertsDir } from "../../keys/certs.js";
import { EVENT } from "../../signing/events.js";
import { cleanup, startTestAgent, startTestServer, tempDir, writeAgentConfig, type TestServer } from "../helpers/harness.js";
import { testCerts, type TestCerts } from "../helpers/tls.js";

let certs: TestCerts;
let mtls: TestServer;
let foreignCa: string;
const running: ArcadeProcess[] = [];
afterAll(async () => {
  for (const p of running) await p.stop("SIGKILL");
  await cleanup();
});
beforeAll(async () => {
  certs = await testCerts();
  mtls = await startTestServer(
    `[tls]\ncert = "${certs.cert}"\nkey = "${certs.key}"\nclient_ca = "${certs.ca}"\n`,
    {},
    await certs.agentCert("lifecycle-admin"),
  );
  foreignCa = tempDir("arcade-foreign-ca-");
  await writeCertsDir(foreignCa, { hosts: ["127.0.0.1"], agents: ["lc-foreign"] });
});

function startAgent(file: string): ArcadeProcess {
  const p = spawnArcade(["agent", "start", "--config", file]);
  running.push(p);
  return p;
}

/** Exit 78, the code on stderr and in an agent.fatal event, and never an agent.ready. */
async function expectGivesUp(p: ArcadeProcess, code: string, fix: RegExp, wasReady = false): Promise<void> {
  const exit = await Promise.race([p.closed, new Promise((r) => setTimeout(() => r("still running after 60 s"), 60_000).unref())]);
  expect(exit, p.stderr.join("\n")).toBe(EXIT_CANNOT_SUCCEED);
  const fatal = p.lines.find((l) => l.event === EVENT.AGENT_FATAL);
  expect(fatal?.code).toBe(code);
  expect(p.stderr.join("\n")).toMatch(new RegExp(`^error ${code}: `, "m"));
  expect(p.stderr.join("\n")).toMatch(fix);
  expect(p.lines.some((l) => l.event === EVENT.AGENT_READY)).toBe(wasReady);
}

const tlsYaml = (o: { ca?: string; cert?: string; key?: string }) =>
  `tls:\n${Object.entries(o)
    .map(([k, v]) => `  ${k}: ${v}\n`)
    .join("")}`;

describe("an agent that can never succeed exits 78 with the reason", () => {
  it("no client certificate for a server that requires one: TLS_CLIENT_CERT_REQUIRED, naming tls.cert", async () => {
    const file = await writeAgentConfig(mtls, "lc-nocert", tlsYaml({ ca: certs.ca }));
    await expectGivesUp(startAgent(file), "TLS_CLIENT_CERT_REQUIRED", /tls\.cert and tls\.key/);
  });

  it("a client certificate from another CA: TLS_CLIENT_CERT_REJECTED (after it repeats)", async () => {
    const cert = path.join(foreignCa, "agents", "lc-foreign.pem");
    const key = path.join(foreignCa, "agents", "lc-foreign.key");
    const file = await writeAgentConfig(mtls, "lc-foreign", tlsYaml({ ca: certs.ca, cert, key }));
    const p = startAgent(file);
    await expectGivesUp(p, "TLS_CLIENT_CERT_REJECTED", /check tls\.cert and tls\.key/);
    // checked again before giving up: a server going down mid-handshake looks the same once
    const fatalAt = p.lines.findIndex((l) => l.event === EVENT.AGENT_FATAL);
    const tries = p.lines
      .slice(0, fatalAt)
      .filter((l) => l.event === EVENT.AGENT_SERVER_UNREACHABLE && l.code === "TLS_CLIENT_CERT_REJECTED");
    expect(tries.length).toBeGreaterThanOrEqual(2);
  });

  it("a server certificate that does not verify against tls.ca: TLS_SERVER_UNTRUSTED", async () => {
    const file = await writeAgentConfig(mtls, "lc-wrongca", tlsYaml({ ca: path.join(foreignCa, "ca.pem") }));
    await expectGivesUp(startAgent(file), "TLS_SERVER_UNTRUSTED", /check tls\.ca/);
  });

  it("a spent enrollment token: UNAUTHENTICATED, saying how to get a new one", async () => {
    const own = await certs.agentCert("lc-spent");
    const dir = tempDir("arcade-agent-");
    const file = await writeAgentConfig(mtls, "lc-spent", tlsYaml({ ca: certs.ca, ...own }), dir);
    // someone else used the token first
    const c = new AgentServiceClient(mtls.grpc, channelCredentials({ ca: certs.ca, ...own }), CLIENT_OPTIONS);
    const md = new Metadata();
    md.set("x-arcade-enrollment-token", fs.readFileSync(path.join(dir, "enrollment.token"), "utf8"));
    await call(c.register, c, { agentId: "lc-spent", hostname: "t", agentVersion: "t", installed: [] }, md);
    c.close();
    await expectGivesUp(startAgent(file), "UNAUTHENTICATED", /arcade agent create lc-spent/);
  });

  it("revoked while running: exits 78 (UNAUTHENTICATED) instead of retrying for ever, and again at restart", async () => {
    const own = await certs.agentCert("lc-revoked");
    const agent = await startTestAgent(mtls, "lc-revoked", tlsYaml({ ca: certs.ca, ...own }));
    expect(agent.proc.lines.some((l) => l.event === EVENT.AGENT_READY)).toBe(true);
    const { client, md } = mtls.admin;
    await call(client.revokeAgent, client, { agentId: "lc-revoked" }, md);
    await expectGivesUp(agent.proc, "UNAUTHENTICATED", /revoked, create a replacement under a new id/, true);
    await expectGivesUp(startAgent(path.join(agent.dir, "agent.yaml")), "UNAUTHENTICATED", /revoked/);
  });
});

describe("transient failures", () => {
  it("a server that is not up yet is waited for: no ready until it answers, then ready", async () => {
    const srv = await startTestServer();
    const file = await writeAgentConfig(srv, "lc-patient");
    await srv.proc.stop();
    const agent = startAgent(file);
    const down = await agent.waitForEvent(EVENT.AGENT_SERVER_UNREACHABLE);
    expect(down.code).toBe("SERVER_UNAVAILABLE");
    expect(agent.lines.some((l) => l.event === EVENT.AGENT_READY)).toBe(false);
    const port = srv.grpc.split(":").pop()!;
    const restarted = await startServerProcess(path.join(srv.dir, "config.toml"), { ARCADE_SERVER_LISTEN: `"127.0.0.1:${port}"` });
    running.push(restarted.proc);
    const ready = await agent.waitForEvent(EVENT.AGENT_READY);
    // ready comes after the Register that succeeded, never before
    expect(agent.lines.indexOf(ready)).toBeGreaterThan(agent.lines.findIndex((l) => l.event === EVENT.AGENT_REGISTERED));
    expect(agent.child.exitCode).toBe(null);
  });
});
