// Real processes for end-to-end tests: a server (`arcade server start`) on SQLite, or on a
// fresh PostgreSQL database when TEST_PG_URL is set, and agents (`arcade agent start`).
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { connectAdmin, publishFile } from "../../cli/admin-client.js";
import { startAgentProcess, startServerProcess, type ArcadeProcess } from "../../cli/processes.js";
import { call } from "../../proto/rpc.js";
import { packPlugin } from "../../signing/pack.js";
import { signRelease } from "../../signing/release.js";
import { publisher } from "./keys.js";
import { testCerts } from "./tls.js";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const EXAMPLES = path.join(REPO, "examples", "plugins");

const cleanups: (() => Promise<void> | void)[] = [];

/** Runs everything registered so far, newest first; call from afterAll/afterEach. */
export async function cleanup(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!();
}

export function tempDir(prefix = "arcade-test-"): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanups.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A fresh PostgreSQL database per server when TEST_PG_URL is set; otherwise the SQLite default. */
async function databaseUrl(): Promise<string | undefined> {
  const base = process.env.TEST_PG_URL;
  if (!base) return undefined;
  const name = `arcade_e2e_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.end();
  });
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

export type TestServer = {
  dir: string;
  /** The CA to trust when the server speaks TLS (the default). */
  ca: string | undefined;
  grpc: string;
  metrics: string;
  databaseUrl: string;
  proc: ArcadeProcess;
  admin: ReturnType<typeof connectAdmin>;
  publish(file: string): ReturnType<typeof publishFile>;
  metricValue(name: string, labels: Record<string, string>): Promise<number>;
};

/**
 * A server over TLS (the test CA) trusting the test publisher's keys, unless extraToml brings
 * its own [tls] or [trust] section.
 */
export async function startTestServer(
  extraToml = "",
  env: NodeJS.ProcessEnv = {},
  adminTls: { cert?: string; key?: string } = {},
): Promise<TestServer> {
  const dir = tempDir("arcade-server-");
  const pub = await publisher();
  const tls = await testCerts();
  const tlsToml = extraToml.includes("[tls]") ? "" : `[tls]\ncert = "${tls.cert}"\nkey = "${tls.key}"\n`;
  const trust = extraToml.includes("[trust]")
    ? ""
    : `[trust]\nkeyring = "${pub.keyring}"\nsigstore_keys = [{ hint = "${pub.sigstore.hint}", key = "${pub.sigstore.publicKeyFile}" }]\n`;
  const url = (await databaseUrl()) ?? `file:${path.join(dir, "data", "arcade.db")}`;
  const file = path.join(dir, "config.toml");
  fs.writeFileSync(
    file,
    `[server]\nlisten = "127.0.0.1:0"\ndata_dir = "data"\npoll_interval = 1\n\n[database]\nurl = "${url}"\n\n[metrics]\nlisten = "127.0.0.1:0"\n${tlsToml}${trust}${extraToml}\n`,
  );
  const { proc, grpc, metrics } = await startServerProcess(file, env);
  cleanups.push(() => proc.stop().then(() => undefined));
  const ca = tlsToml || extraToml.includes("cert =") ? tls.ca : undefined;
  const admin = connectAdmin({ server: grpc, dataDir: path.join(dir, "data"), ca, ...adminTls });
  cleanups.push(() => admin.client.close());
  return {
    dir,
    ca,
    grpc,
    metrics,
    databaseUrl: url,
    proc,
    admin,
    publish: (f) => publishFile(admin.client, admin.md, f),
    metricValue: (name, labels) => scrape(metrics, name, labels),
  };
}

export type TestAgent = {
  dir: string;
  pluginsDir: string;
  proc: ArcadeProcess;
  metrics: string;
  metricValue(name: string, labels: Record<string, string>): Promise<number>;
};

/**
 * Creates and enrolls an agent (unless `dir` already holds its credential) and, by default,
 * grants it every plugin, so tests about other things are not about ACLs.
 */
export async function startTestAgent(
  server: TestServer,
  id = `agent-${randomBytes(3).toString("hex")}`,
  extraYaml = "",
  dir = tempDir("arcade-agent-"),
  env: NodeJS.ProcessEnv = {},
  o: { grant?: string | false; labels?: Record<string, string> } = {},
): Promise<TestAgent & { id: string }> {
  const file = await writeAgentConfig(server, id, extraYaml, dir, o);
  const { proc, metrics } = await startAgentProcess(file, env);
  cleanups.push(() => proc.stop().then(() => undefined));
  // (startAgentProcess returns at agent.ready, which the agent logs only after its first Register)
  return { id, dir, pluginsDir: path.join(dir, "plugins"), proc, metrics, metricValue: (name, labels) => scrape(metrics, name, labels) };
}

/**
 * Writes `<dir>/agent.yaml` for a test agent (enrolling it first unless `dir` holds a credential)
 * and returns its path; for tests that start the process themselves.
 */
export async function writeAgentConfig(
  server: TestServer,
  id: string,
  extraYaml = "",
  dir = tempDir("arcade-agent-"),
  o: { grant?: string | false; labels?: Record<string, string> } = {},
): Promise<string> {
  const file = path.join(dir, "agent.yaml");
  const pub = await publisher();
  if (!fs.existsSync(path.join(dir, "credential"))) {
    const token = await enrollAgent(server, id, o.labels ?? {}, o.grant === undefined ? "*" : o.grant);
    fs.writeFileSync(path.join(dir, "enrollment.token"), token, { mode: 0o600 });
  }
  const tls = extraYaml.includes("tls:") ? "" : `tls:\n  ca: ${(await testCerts()).ca}\n`;
  const trust = extraYaml.includes("trust:")
    ? ""
    : `trust:\n  keyring: ${pub.keyring}\n  sigstore_keys:\n    - hint: ${pub.sigstore.hint}\n      key: ${pub.sigstore.publicKeyFile}\n`;
  fs.writeFileSync(
    file,
    `id: ${id}\nserver: ${server.grpc}\nplugins:\n  directory: plugins\n  download_timeout: 120\nwork_dir: work\ncredential_file: credential\nenrollment_token_file: enrollment.token\npoll_interval: 1\nmetrics_listen: 127.0.0.1:0\n${tls}${trust}${extraYaml}`,
  );
  return file;
}

/** Creates an agent on the server (and a grant for it unless `grant` is false); returns its enrollment token. */
export async function enrollAgent(
  server: TestServer,
  id: string,
  labels: Record<string, string> = {},
  grant: string | false = "*",
): Promise<string> {
  const { client, md } = server.admin;
  const r = await call(client.createAgent, client, { agentId: id, labels, tokenTtlSeconds: 0 }, md);
  if (grant !== false) await call(client.grantAcl, client, { subject: `agent:${id}`, pluginPattern: grant, versionRange: "" }, md);
  return r.enrollmentToken;
}

export type SignWith = "openpgp" | "sigstore" | "both" | "none";

/** Packs a plugin dir into a temp tarball and signs its release as the test publisher (OpenPGP by default). */
export async function pack(
  dir: string,
  sign: SignWith = "openpgp",
): Promise<{ file: string; id: string; version: string; sha256: string; size: number }> {
  const out = path.join(tempDir("arcade-pack-"), `${path.basename(dir)}.tgz`);
  const r = await packPlugin(dir, out);
  if (sign !== "none") {
    const pub = await publisher();
    await signRelease(out, r, {
      openpgpKey: sign === "sigstore" ? undefined : pub.secretKey,
      sigstore: sign === "openpgp" ? undefined : { privateKeyPem: pub.sigstore.privateKeyPem, hint: pub.sigstore.hint },
    });
  }
  return { file: out, id: r.manifest.id, version: r.manifest.version, sha256: r.sha256, size: r.size };
}

/** Writes a plugin directory with the given stage handlers (ESM source) and extra files. */
export function writePlugin(o: {
  id: string;
  version: string;
  stages: string[];
  source: string;
  files?: Record<string, Buffer | string>;
}): string {
  const dir = tempDir("arcade-plugin-");
  fs.writeFileSync(
    path.join(dir, "manifest.json"),
    JSON.stringify({
      schemaVersion: 1,
      id: o.id,
      version: o.version,
      entry: "index.mjs",
      runtime: "node",
      stages: o.stages,
      permissions: {},
      description: "test plugin",
    }),
  );
  fs.writeFileSync(path.join(dir, "index.mjs"), o.source);
  for (const [name, body] of Object.entries(o.files ?? {})) fs.writeFileSync(path.join(dir, name), body);
  return dir;
}

export async function scrape(address: string, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}
