// `npm run demo`: the seed's five steps, live. Starts a server on the embedded SQLite in a temp
// dir, publishes the example plugins, starts an agent, runs two jobs (the first downloads the
// plugins, the second finds them in the cache and fails on purpose to show on_failure), prints
// each step as the agent logs it, then stops everything it started.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { call } from "../proto/rpc.js";
import { Stage } from "../proto/gen/arcade/v1/plugin.js";
import { writeCertsDir } from "../keys/certs.js";
import { errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { generateSigningKey, readSecretKey } from "../signing/openpgp.js";
import { signRelease } from "../signing/release.js";
import { packPlugin } from "../signing/pack.js";
import { connectAdmin, publishFile } from "./admin-client.js";
import { formatJob, waitForJob } from "./jobs.js";
import { startAgentProcess, startServerProcess, type ArcadeProcess, type LogLine } from "./processes.js";
import { EVENT } from "../signing/events.js";

const STEP_NO: Record<string, string> = {
  register: "1 register",
  fetch: "2 fetch job",
  cache: "3 cache",
  download: "4 download + verify",
  execute: "5 execute",
};
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function examplesDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ["..", "../.."]) {
    const d = path.resolve(here, up, "examples", "plugins");
    if (fs.existsSync(d)) return d;
  }
  throw new Error("examples/plugins not found next to the CLI");
}

function describe(l: LogLine): string {
  const fields = ["plugin_id", "version", "job_id", "bytes", "seconds", "signed_by", "command", "stage", "code", "installed"]
    .filter((k) => l[k] !== undefined)
    .map((k) => `${k}=${typeof l[k] === "string" ? l[k] : JSON.stringify(l[k])}`);
  return `${l.msg ?? ""}${fields.length ? `  (${fields.join(" ")})` : ""}`;
}

export async function runDemo(o: { keep: boolean }): Promise<number> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-demo-"));
  const started: ArcadeProcess[] = [];
  try {
    console.log(bold(`Arcade demo in ${tmp}`));
    // The publisher's key: its secret half signs releases; servers and agents trust its public half.
    const key = await generateSigningKey({ name: "Arcade Demo Publisher", email: "demo-publisher@arcade.invalid" });
    fs.mkdirSync(path.join(tmp, "keys"), { mode: 0o700 });
    fs.writeFileSync(path.join(tmp, "keys", "publishers.asc"), key.publicKeyArmored);
    const secretKey = await readSecretKey(key.privateKeyArmored);
    console.log(`keys    publisher OpenPGP key ${key.fingerprint} (trusted by the server and the agent)`);
    // TLS with client certificates (mTLS): a local CA for the server, the agent and the admin CLI.
    const pki = path.join(tmp, "pki");
    await writeCertsDir(pki, { hosts: ["127.0.0.1", "localhost"], agents: ["demo-agent", "demo-admin"] });
    console.log(`tls     local CA, server and client certificates in ${pki} (mTLS required)`);
    fs.writeFileSync(
      path.join(tmp, "config.toml"),
      `[server]\nlisten = "127.0.0.1:0"\ndata_dir = "server"\n\n[plugin]\nmax_plugin_size = 64\nrequire_checksum = true\n\n[tls]\ncert = "pki/server.pem"\nkey = "pki/server.key"\nclient_ca = "pki/ca.pem"\n\n[trust]\nkeyring = "keys/publishers.asc"\n\n[metrics]\nlisten = "127.0.0.1:0"\n`,
    );
    const server = await startServerProcess(path.join(tmp, "config.toml"));
    started.push(server.proc);
    console.log(
      `server  listening on ${server.grpc} (SQLite ${path.join(tmp, "server", "arcade.db")}), metrics on http://${server.metrics}/metrics`,
    );

    // Publish: pack each example reproducibly, upload by client streaming.
    const adminTls = {
      ca: path.join(pki, "ca.pem"),
      cert: path.join(pki, "agents", "demo-admin.pem"),
      key: path.join(pki, "agents", "demo-admin.key"),
    };
    const { client, md } = connectAdmin({ server: server.grpc, dataDir: path.join(tmp, "server"), ...adminTls });
    const refs: Record<string, string> = {};
    for (const name of fs.readdirSync(examplesDir()).sort()) {
      const tgz = path.join(tmp, `${name}.tgz`);
      const packed = await packPlugin(path.join(examplesDir(), name), tgz);
      if (name === "notify-console") {
        // An unsigned release never gets in.
        const refused = await publishFile(client, md, tgz).then(
          () => "accepted (unexpected!)",
          (e: unknown) => `refused: ${errorCodeOf(e)}`,
        );
        console.log(`publish ${packed.manifest.id}@${packed.manifest.version} unsigned → ${refused}`);
      }
      await signRelease(tgz, packed, { openpgpKey: secretKey });
      const res = await publishFile(client, md, tgz);
      refs[packed.manifest.id] = packed.manifest.version;
      console.log(
        `publish ${res.plugin?.pluginId}@${res.plugin?.version} signed  sha256 ${res.plugin?.sha256.slice(0, 16)}…  ${res.plugin?.size} bytes`,
      );
    }

    // Identity and ACLs: the operator creates the agent (one-time enrollment token) and grants
    // it plugins by label; anything not granted is denied.
    const created = await call(client.createAgent, client, { agentId: "demo-agent", labels: { pool: "demo" }, tokenTtlSeconds: 600 }, md);
    fs.writeFileSync(path.join(tmp, "enrollment.token"), created.enrollmentToken, { mode: 0o600 });
    for (const [pattern, range] of [
      ["demo/*", ""],
      ["notify/console", "^1.2.0"],
      ["report/*", ">=0.3.0 <1"],
    ] as const) {
      await call(client.grantAcl, client, { subject: "labels:pool=demo", pluginPattern: pattern, versionRange: range }, md);
      console.log(`acl     grant labels:pool=demo → ${pattern}${range ? ` ${range}` : ""}`);
    }
    console.log(`agent   demo-agent created (labels pool=demo), enrolls once with its one-time token`);
    fs.writeFileSync(
      path.join(tmp, "agent.yaml"),
      `id: demo-agent\nserver: ${server.grpc}\nenrollment_token_file: enrollment.token\ncredential_file: agent/credential\ntls:\n  ca: pki/ca.pem\n  cert: pki/agents/demo-agent.pem\n  key: pki/agents/demo-agent.key\ntrust:\n  keyring: keys/publishers.asc\nplugins:\n  directory: agent/plugins\n  download_timeout: 60\n  cache_size: 256\nwork_dir: agent/work\npoll_interval: 1\nmetrics_listen: 127.0.0.1:0\n`,
    );
    const agent = await startAgentProcess(path.join(tmp, "agent.yaml"));
    started.push(agent.proc);
    const sandboxLine = agent.proc.lines.find((l) => l.event === EVENT.AGENT_SANDBOX_DETECTED);
    if (sandboxLine) console.log(`agent   ${String(sandboxLine.msg)}`);
    agent.proc.onLine((l) => {
      if (l.step && STEP_NO[l.step]) console.log(`  [${STEP_NO[l.step]}] ${describe(l)}`);
    });
    for (const l of agent.proc.lines) if (l.step && STEP_NO[l.step]) console.log(`  [${STEP_NO[l.step]}] ${describe(l)}`);

    const plugins = (configs: Record<string, object>) => [
      {
        pluginId: "demo/setup-workspace",
        version: refs["demo/setup-workspace"]!,
        stage: Stage.STAGE_BEFORE,
        executionOrder: 1,
        configJson: JSON.stringify(configs.setup ?? {}),
      },
      {
        pluginId: "notify/console",
        version: refs["notify/console"]!,
        stage: Stage.STAGE_ON_SUCCESS,
        executionOrder: 1,
        configJson: JSON.stringify({ channel: "#release" }),
      },
      {
        pluginId: "notify/console",
        version: refs["notify/console"]!,
        stage: Stage.STAGE_ON_FAILURE,
        executionOrder: 1,
        configJson: JSON.stringify({ channel: "#oncall" }),
      },
      { pluginId: "report/workspace", version: refs["report/workspace"]!, stage: Stage.STAGE_AFTER, executionOrder: 1, configJson: "{}" },
    ];
    let failures = 0;
    const jobs = [
      {
        title: "job 1: plugins are downloaded, verified and run around the commands",
        commands: ["cat build-info.json", "echo compiled > app.txt && echo build ok"],
        expect: "succeeded",
      },
      {
        title: "job 2: same plugins, now from the cache; a command fails, so on_failure runs",
        commands: ["echo running tests", "exit 3"],
        expect: "failed",
      },
    ];
    for (const j of jobs) {
      console.log(bold(`\n${j.title}`));
      const { jobId } = await call(
        client.submitJob,
        client,
        {
          commands: j.commands,
          plugins: plugins({ setup: { greeting: "hello from the demo" } }),
          agentId: "demo-agent",
          timeoutSeconds: 120,
        },
        md,
      );
      const status = await waitForJob(client, md, jobId, 120_000);
      await new Promise((r) => setTimeout(r, 200)); // let the agent's last log lines arrive
      console.log(`\n${formatJob(status)}`);
      if (status.status !== j.expect) failures++;
    }
    client.close();
    console.log(bold(failures === 0 ? "\nDemo finished: both jobs ended as expected." : "\nDemo finished with unexpected results."));
    return failures === 0 ? 0 : 1;
  } catch (e) {
    console.error(`demo failed: ${errorMessageOf(e)}`);
    for (const p of started) if (p.stderr.length) console.error(p.stderr.join("\n"));
    return 1;
  } finally {
    for (const p of started.reverse()) await p.stop();
    if (o.keep) console.log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}
