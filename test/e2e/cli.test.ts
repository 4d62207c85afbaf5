// The `arcade` command as a user runs it: pack, publish, job submit --wait, job status,
// and errors printed as "error CODE: message" with a non-zero exit.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath } from "../../cli/processes.js";
import { EXAMPLES, cleanup, startTestAgent, startTestServer, tempDir, type TestServer } from "../helpers/harness.js";
import { publisher } from "../helpers/keys.js";
import { releaseFiles } from "../../signing/release.js";
import { gpgVersion, runGpg, withGnupgHome } from "../signing/gpg.js";

const hasGpg = (await gpgVersion()) !== undefined;

const run = promisify(execFile);
let server: TestServer;
let agentId: string;

async function arcade(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, ARCADE_SERVER: server.grpc, ARCADE_DATA_DIR: path.join(server.dir, "data"), ARCADE_CA: server.ca };
  try {
    const r = await run(process.execPath, [cliPath(), ...args], { env });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  server = await startTestServer();
  agentId = (await startTestAgent(server)).id;
});
afterAll(cleanup);

describe("arcade CLI", () => {
  it("packs, signs, verifies and publishes a plugin, then says so again without re-storing it", async () => {
    const out = path.join(tempDir(), "n.tgz");
    const packed = await arcade("plugin", "pack", path.join(EXAMPLES, "notify-console"), "-o", out);
    expect(packed.code).toBe(0);
    expect(packed.stdout).toMatch(/notify\/console@1\.2\.0 {2}sha256 [0-9a-f]{64}/);
    const unsigned = await arcade("plugin", "publish", out);
    expect([unsigned.code, unsigned.stderr]).toEqual([1, expect.stringMatching(/^error SIGNATURE_MISSING: /)]);
    const pub = await publisher();
    const signed = await arcade("plugin", "sign", out, "--key", pub.secretKeyFile);
    expect(signed.stdout).toContain(`wrote ${out}.statement.json.asc`);
    const verified = await arcade("plugin", "verify", out, "--keyring", pub.keyring);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`OpenPGP ${pub.fingerprint}`);
    expect(verified.stdout).toMatch(/VERIFIED notify\/console@1\.2\.0$/m);
    expect((await arcade("plugin", "publish", out)).stdout).toContain("published notify/console@1.2.0");
    expect((await arcade("plugin", "publish", out)).stdout).toContain("already published notify/console@1.2.0");
    const list = await arcade("plugin", "list");
    expect(list.stdout).toContain("notify/console@1.2.0");
    expect(list.stdout).toContain(`openpgp:${pub.fingerprint}`);
  });

  it("scaffolds a plugin and a key pair; verify refuses a key it was not told to trust", async () => {
    const dir = tempDir();
    expect((await arcade("plugin", "init", path.join(dir, "hello"), "--id", "acme/hello")).code).toBe(0);
    const tgz = path.join(dir, "hello.tgz");
    expect((await arcade("plugin", "pack", path.join(dir, "hello"), "-o", tgz)).code).toBe(0);
    const gen = await arcade(
      "keys",
      "generate",
      "--name",
      "ACME Release",
      "--email",
      "release@acme.invalid",
      "--out",
      path.join(dir, "keys"),
      "--sigstore",
    );
    expect(gen.code).toBe(0);
    const keys = path.join(dir, "keys");
    expect(fs.statSync(path.join(keys, "publisher.secret.asc")).mode & 0o777).toBe(0o600);
    const sign = await arcade(
      "plugin",
      "sign",
      tgz,
      "--key",
      path.join(keys, "publisher.secret.asc"),
      "--sigstore-key",
      path.join(keys, "sigstore.key.pem"),
      "--sigstore-hint",
      "acme-2026",
    );
    expect(sign.code).toBe(0);
    const ok = await arcade(
      "plugin",
      "verify",
      tgz,
      "--keyring",
      path.join(keys, "publisher.asc"),
      "--sigstore-key",
      `acme-2026=${path.join(keys, "sigstore.pub.pem")}`,
    );
    expect(ok.stdout).toMatch(/Sigstore key acme-2026/);
    expect(ok.stdout).toMatch(/VERIFIED acme\/hello@0\.1\.0/);
    const stranger = await arcade("plugin", "verify", tgz, "--keyring", (await publisher()).keyring);
    expect(stranger.code).toBe(1);
    expect(stranger.stdout).toMatch(/^REFUSED KEY_UNKNOWN: /m);
    const inspect = await arcade("plugin", "inspect", tgz);
    expect(inspect.stdout).toMatch(/statement acme\/hello@0\.1\.0 .* matches these bytes \(unverified\)/);
    expect(inspect.stdout).toMatch(/sigstore {2}bundle for key hint acme-2026/);
    // the key files are never overwritten
    expect((await arcade("keys", "generate", "--name", "x", "--email", "x@y.invalid", "--out", keys)).stderr).toMatch(
      /refusing to overwrite/,
    );
  });

  it.skipIf(!hasGpg)("verifies a release whose statement was signed with gpg itself (armored and binary)", async () => {
    await withGnupgHome(async (home) => {
      await runGpg(["--quick-gen-key", "Gpg Release <gpg-release@acme.invalid>", "ed25519", "sign", "never"], undefined, home);
      const keyring = path.join(tempDir(), "gpg-publishers.asc");
      fs.writeFileSync(keyring, (await runGpg(["--armor", "--export"], undefined, home)).stdout);
      const tgz = path.join(tempDir(), "console.tgz");
      await arcade("plugin", "pack", path.join(EXAMPLES, "notify-console"), "-o", tgz);
      // Write the statement with our tool, then let gpg make the only signature over it.
      await arcade("plugin", "sign", tgz, "--key", (await publisher()).secretKeyFile);
      const f = releaseFiles(tgz);
      fs.rmSync(f.asc);
      for (const [flags, out] of [
        [["--armor", "--detach-sign"], f.asc],
        [["--detach-sign"], f.sig],
      ] as const) {
        expect((await runGpg([...flags, "--output", out, f.statement], undefined, home)).code).toBe(0);
        const v = await arcade("plugin", "verify", tgz, "--keyring", keyring);
        expect(v.stdout).toMatch(/OpenPGP [0-9A-F]{40} Gpg Release <gpg-release@acme\.invalid>/);
        expect(v.stdout).toMatch(/^VERIFIED notify\/console@1\.2\.0$/m);
        fs.rmSync(out);
      }
    });
  });

  it("submits a job, waits for it and prints the steps; exit 1 when the job fails", async () => {
    const ok = await arcade(
      "job",
      "submit",
      "--run",
      "echo cli-says-hi",
      "--plugin",
      "notify/console@1.2.0:on_success:1",
      "--config",
      'notify/console={"channel":"#cli"}',
      "--agent",
      agentId,
      "--wait",
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/job [0-9a-f-]{36}: succeeded on /);
    expect(ok.stdout).toContain("cli-says-hi");
    expect(ok.stdout).toMatch(/on_success +notify\/console@1\.2\.0 +succeeded .*\[#cli\]/);

    const bad = await arcade("job", "submit", "--run", "false", "--agent", agentId, "--wait", "--json");
    expect(bad.code).toBe(1);
    const j = JSON.parse(bad.stdout) as { jobId: string; status: string; errorCode: string };
    expect([j.status, j.errorCode]).toEqual(["failed", "COMMAND_FAILED"]);
    const status = await arcade("job", "status", j.jobId);
    expect(status.stdout).toContain(`job ${j.jobId}: failed`);
  });

  it("prints stable error codes and exits non-zero", async () => {
    const missing = await arcade("job", "submit", "--run", "true", "--plugin", "nope/nothing@1.0.0:before");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error PLUGIN_NOT_FOUND: nope\/nothing@1\.0\.0 is not published/);
    const badStage = await arcade("job", "submit", "--plugin", "notify/console@1.2.0:during");
    expect(badStage.stderr).toMatch(/^error INVALID_ARGUMENT: .*stage must be/);
    const noJob = await arcade("job", "status", "00000000-0000-0000-0000-000000000000");
    expect(noJob.stderr).toMatch(/^error JOB_NOT_FOUND/);
    const env = { ...process.env, ARCADE_SERVER: server.grpc, ARCADE_CA: server.ca, ARCADE_ADMIN_TOKEN: "not-the-token-at-all" };
    const denied = await run(process.execPath, [cliPath(), "plugin", "list"], { env }).catch((e: { code: number; stderr: string }) => e);
    expect(denied.stderr).toMatch(/^error UNAUTHENTICATED/);
  });

  it("manages agents, ACLs, admin tokens and reads the audit trail", async () => {
    const created = await arcade("agent", "create", "cli-agent", "--labels", "os=linux,zone=eu");
    expect(created.code).toBe(0);
    expect(created.stdout.trim()).toMatch(/^arc_enroll_[A-Za-z0-9_-]+$/);
    expect((await arcade("agent", "list")).stdout).toMatch(/cli-agent +awaiting enrollment +labels os=linux,zone=eu/);
    const grant = await arcade("acl", "grant", "labels:zone=eu", "notify/*", "--versions", "^1.2");
    expect(grant.code).toBe(0);
    expect((await arcade("acl", "list")).stdout).toMatch(/labels:zone=eu +notify\/\* +>=1\.2\.0 <2\.0\.0-0/);
    const yes = await arcade("acl", "check", "cli-agent", "notify/console@1.2.0");
    expect([yes.code, yes.stdout]).toEqual([0, expect.stringMatching(/^ALLOWED: /)]);
    const no = await arcade("acl", "check", "cli-agent", "notify/console@2.0.0");
    expect([no.code, no.stdout]).toEqual([
      1,
      expect.stringMatching(/^DENIED: no grant for agent cli-agent covers notify\/console@2\.0\.0/),
    ]);
    expect((await arcade("acl", "grant", "labels:zone=eu", "notify*")).stderr).toMatch(/^error INVALID_ARGUMENT: /);
    const auditorToken = (await arcade("admin", "token", "create", "--name", "cli-auditor", "--role", "auditor")).stdout.trim();
    const asAuditor = { ...process.env, ARCADE_SERVER: server.grpc, ARCADE_CA: server.ca, ARCADE_ADMIN_TOKEN: auditorToken };
    const denied = await run(process.execPath, [cliPath(), "agent", "create", "sneaky"], { env: asAuditor }).catch(
      (e: { stderr: string }) => e,
    );
    expect(denied.stderr).toMatch(
      /^error PERMISSION_DENIED: token "cli-auditor" has role auditor, which lacks the permission agent\.manage/,
    );
    const trail = await run(process.execPath, [cliPath(), "audit", "query", "--action", "acl.grant", "--json"], { env: asAuditor });
    const events = trail.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { actor: string; outcome: string; details: { subject: string } });
    expect(events.some((e) => e.actor === "admin:bootstrap" && e.outcome === "succeeded" && e.details.subject === "labels:zone=eu")).toBe(
      true,
    );
    expect((await arcade("agent", "revoke", "cli-agent")).stdout).toContain("agent cli-agent revoked");
  });

  it("creates a local CA and certificates, and never overwrites the CA key", async () => {
    const out = path.join(tempDir(), "pki");
    const r = await arcade("certs", "init", "--out", out, "--hosts", "localhost,127.0.0.1", "--agents", "a1,a2");
    expect(r.code).toBe(0);
    for (const f of ["ca.pem", "ca.key", "server.pem", "server.key", "agents/a1.pem", "agents/a2.key"])
      expect(fs.existsSync(path.join(out, f))).toBe(true);
    expect(fs.statSync(path.join(out, "ca.key")).mode & 0o777).toBe(0o600);
    expect((await arcade("certs", "init", "--out", out)).stderr).toMatch(/^error INVALID_ARGUMENT: .*ca\.key/);
    expect((await arcade("certs", "init", "--out", out, "--agents", "a3", "--reuse-ca")).code).toBe(0);
    expect(fs.existsSync(path.join(out, "agents", "a3.pem"))).toBe(true);
  });

  it("serves /healthz and /metrics on the server and the agent", async () => {
    const h = await fetch(`http://${server.metrics}/healthz`);
    expect([h.status, await h.text()]).toEqual([200, "ok\n"]);
    const m = await (await fetch(`http://${server.metrics}/metrics`)).text();
    expect(m).toContain("plugin_download_total");
    expect(m).toContain("plugin_publish_total");
  });
});
