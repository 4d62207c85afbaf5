#!/usr/bin/env node
// `arcade`: one command for every role. Errors print as "error CODE: message" and exit 1, so
// scripts can match on the code; usage mistakes print commander's message and help hint.
import fs from "node:fs";
import { Command, Option } from "commander";
import { EXIT_CANNOT_SUCCEED, startAgent } from "../agent/main.js";
import { loadAgentConfig } from "../agent/config.js";
import { call } from "../proto/rpc.js";
import { writeCertsDir } from "../keys/certs.js";
import { startServer } from "../server/main.js";
import { loadServerConfig } from "../server/config.js";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { EVENT } from "../signing/events.js";
import { packPlugin } from "../signing/pack.js";
import { connectAdmin, publishFile, type ConnectOptions } from "./admin-client.js";
import { registerAdminCommands } from "./admin-commands.js";
import { runDemo } from "./demo.js";
import {
  generateKeysCommand,
  initCommand,
  inspectCommand,
  signCommand,
  verifyCommand,
  type SignFlags,
  type TrustFlags,
} from "./release-commands.js";
import { buildJobRequest, formatJob, waitForJob, type SubmitFlags } from "./jobs.js";
import { createLogger } from "./log.js";
import { serveMetrics } from "./metrics-endpoint.js";

// grpc-js passes an IP target (127.0.0.1) as the TLS server name, which Node flags with DEP0123
// on every connection; the certificate is still checked against the IP SAN. Drop just that one.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === "DEP0123") return;
  (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

const program = new Command()
  .name("arcade")
  .description(
    "Signed plugin distribution for CI/CD: a server that stores plugins and hands out jobs, agents that fetch, verify and run them.",
  )
  .version("0.1.0")
  .showHelpAfterError("(run with --help for usage)")
  .addHelpText(
    "after",
    `
Try it:           npm run demo
Run a server:     arcade server start --config config.toml   (admin token: <data_dir>/admin.token)
Publish:          arcade plugin pack ./my-plugin -o my.tgz && arcade plugin publish my.tgz
Run an agent:     arcade agent start --config agent.yaml
Submit a job:     arcade job submit --run "make test" --plugin notify/console@1.2.0:on_failure --wait
Docs:             README.md, docs/operators.md, SECURITY.md`,
  );

const withConnection = (c: Command) =>
  c
    .addOption(new Option("--server <host:port>", "server address").env("ARCADE_SERVER").default("127.0.0.1:50051"))
    .addOption(new Option("--token <token>", "admin token").env("ARCADE_ADMIN_TOKEN"))
    .addOption(
      new Option("--data-dir <dir>", "read the admin token from <dir>/admin.token").env("ARCADE_DATA_DIR").default("./arcade-data"),
    )
    .addOption(new Option("--ca <file>", "CA certificate of the server: turns TLS on").env("ARCADE_CA"))
    .addOption(new Option("--cert <file>", "client certificate, for servers that require mTLS").env("ARCADE_CERT"))
    .addOption(new Option("--key <file>", "client certificate key").env("ARCADE_KEY"))
    .addOption(new Option("--insecure", "allow plaintext to a non-loopback server (sends the admin token unencrypted)"));

// --- server ---------------------------------------------------------------------------------
const server = program.command("server").description("run the Arcade server");
server
  .command("start")
  .description("start the gRPC server (and /metrics, /healthz) with config.toml")
  .option("-c, --config <file>", "server config (TOML); settings can also come from ARCADE_<SECTION>_<KEY> variables")
  .option("--insecure", "allow plaintext gRPC on a non-loopback address (logs a warning)")
  .action(async (o: { config?: string; insecure?: boolean }) => {
    const config = loadServerConfig(o.config);
    if (o.insecure) config.insecure = true;
    const log = createLogger("arcade-server");
    const srv = await startServer(config, log);
    const metrics = config.metricsListen ? await serveMetrics(srv.metrics.registry, config.metricsListen, srv.healthy) : undefined;
    log.info(
      { event: EVENT.SERVER_READY, grpc: srv.address, metrics: metrics?.address ?? "off", admin_token_file: srv.adminTokenFile },
      "ready",
    );
    onShutdown(log, async () => {
      await metrics?.close();
      await srv.stop();
    });
  });

withConnection(
  server
    .command("wait")
    .description("wait until a server (e.g. one started in the background) answers an admin call; for scripts")
    .option("--timeout <seconds>", "give up after this long", "60"),
).action(async (o: ConnectOptions & { timeout: string }) => {
  const seconds = Number(o.timeout);
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "--timeout must be a positive number of seconds");
  const { waitForServer } = await import("./server-wait.js");
  await waitForServer(o, seconds * 1000);
});

// --- agent ----------------------------------------------------------------------------------
const agent = program.command("agent").description("run an Arcade agent");
agent
  .command("start")
  .description("register with the server and run jobs, downloading plugins on demand")
  .option("-c, --config <file>", "agent config (YAML); settings can also come from ARCADE_AGENT_<KEY> variables")
  .action(async (o: { config?: string }) => {
    const config = loadAgentConfig(o.config);
    const log = createLogger("arcade-agent").child({ agent_id: config.id });
    const a = await startAgent(config, log);
    const metrics = config.metricsListen ? await serveMetrics(a.metrics.registry, config.metricsListen, async () => true) : undefined;
    onShutdown(log, async () => {
      await metrics?.close();
      await a.stop();
    });
    // "ready" only once the server has accepted us; a failure retrying cannot fix ends the process.
    void a.fatal.then(async (e) => {
      log.fatal({ event: EVENT.AGENT_FATAL, code: e.code, reason: e.message }, "stopping: retrying cannot succeed");
      console.error(`error ${e.code}: ${e.message}`);
      await metrics?.close();
      await a.stop();
      process.exit(EXIT_CANNOT_SUCCEED);
    });
    await a.registered;
    log.info({ event: EVENT.AGENT_READY, metrics: metrics?.address ?? "off", cache: config.pluginsDir }, "ready");
  });

registerAdminCommands(program, agent, withConnection);

// --- plugin ---------------------------------------------------------------------------------
const plugin = program.command("plugin").description("create, package, sign, verify and publish plugins");
plugin
  .command("pack <dir>")
  .description("build a reproducible <id>-<version>.tgz from a plugin directory with manifest.json")
  .option("-o, --out <file>", "output file (default: ./<name>-<version>.tgz)")
  .action(async (dir: string, o: { out?: string }) => {
    const manifest = JSON.parse(fs.readFileSync(`${dir}/manifest.json`, "utf8")) as { id?: string; version?: string };
    const out = o.out ?? `${String(manifest.id).replace("/", "-")}-${manifest.version}.tgz`;
    const r = await packPlugin(dir, out);
    console.log(`${out}\n  ${r.manifest.id}@${r.manifest.version}  sha256 ${r.sha256}  ${r.size} bytes`);
  });
plugin
  .command("init <dir>")
  .description("scaffold a working plugin: manifest.json and an entry module with example stages")
  .requiredOption("--id <namespace/name>", "plugin id, e.g. notify/slack")
  .option("--version <semver>", "first version", "0.1.0")
  .action(async (dir: string, o: { id: string; version: string }) => initCommand(dir, o));
plugin
  .command("sign <tarball>")
  .description("write <tarball>.statement.json and sign it: .asc (OpenPGP) and/or .sigstore.json (keyed Sigstore)")
  .option("-k, --key <file>", "armored OpenPGP secret key")
  .option("--passphrase-file <file>", "passphrase of the secret key")
  .option("--sigstore-key <file>", "PEM ECDSA P-256 private key for a keyed Sigstore bundle")
  .option("--sigstore-hint <hint>", "the name verifiers know the Sigstore key by")
  .action(async (tgz: string, o: SignFlags) => signCommand(tgz, o));
plugin
  .command("verify <tarball>")
  .description("check a tarball and its release files as an agent would: signature, statement, digest, manifest")
  .option("--keyring <file>", "trusted armored OpenPGP public keys")
  .option("--sigstore-key <hint=pem>", "a trusted Sigstore public key (repeatable)", collect, [])
  .action(async (tgz: string, o: TrustFlags) => {
    process.exitCode = await verifyCommand(tgz, o);
  });
plugin
  .command("inspect <tarball>")
  .description("show a tarball's digest, manifest, statement and signatures (nothing is verified)")
  .action(async (tgz: string) => inspectCommand(tgz));
withConnection(
  plugin.command("publish <tarballs...>").description("upload plugin tarballs (id and version come from each manifest.json)"),
).action(async (files: string[], o: ConnectOptions) => {
  const { client, md } = connectAdmin(o);
  for (const f of files) {
    const r = await publishFile(client, md, f);
    console.log(
      `${r.created ? "published" : "already published"} ${r.plugin?.pluginId}@${r.plugin?.version}  sha256 ${r.plugin?.sha256}  ${r.plugin?.size} bytes`,
    );
  }
  client.close();
});
withConnection(plugin.command("list").description("list published plugins").option("--id <plugin id>", "only this plugin")).action(
  async (o: ConnectOptions & { id?: string }) => {
    const { client, md } = connectAdmin(o);
    const res = await call(client.listPlugins, client, { pluginId: o.id ?? "" }, md);
    for (const p of res.plugins)
      console.log(
        `${p.plugin?.pluginId}@${p.plugin?.version}  sha256 ${p.plugin?.sha256}  ${p.plugin?.size} bytes  ${new Date(p.publishedAtMs).toISOString()}  signed by ${p.signers.join(", ") || "nobody (unsigned, development server)"}`,
      );
    client.close();
  },
);

// --- certs ----------------------------------------------------------------------------------
program
  .command("certs")
  .command("init")
  .description("create a local CA, a server certificate and agent (client) certificates for a first deployment; no network")
  .option("-o, --out <dir>", "output directory", "./pki")
  .option("--hosts <list>", "server DNS names and IPs, comma-separated", "localhost,127.0.0.1,::1")
  .option("--agents <list>", "agent ids to issue client certificates for, comma-separated", "")
  .option(
    "--admins <list>",
    "names to issue admin client certificates for (the arcade commands on an mTLS server), comma-separated",
    "admin",
  )
  .option("--reuse-ca", "add certificates with the existing CA in --out instead of creating one")
  .action(async (o: { out: string; hosts: string; agents: string; admins: string; reuseCa?: boolean }) => {
    const split = (v: string) =>
      v
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean);
    const admins = split(o.admins);
    const r = await writeCertsDir(o.out, { hosts: split(o.hosts), agents: split(o.agents), admins, reuseCa: o.reuseCa === true });
    for (const f of r.files) console.log(`wrote ${f}`);
    console.log(`server: [tls] cert = "${o.out}/server.pem", key = "${o.out}/server.key" (client_ca = "${o.out}/ca.pem" for mTLS)`);
    console.log(`agents: tls: { ca: ${o.out}/ca.pem, cert: ${o.out}/agents/<id>.pem, key: ${o.out}/agents/<id>.key }`);
    if (admins.length > 0)
      console.log(`admin commands: --ca ${o.out}/ca.pem --cert ${o.out}/admins/${admins[0]}.pem --key ${o.out}/admins/${admins[0]}.key`);
  });

// --- keys -----------------------------------------------------------------------------------
const keys = program.command("keys").description("publisher signing keys");
keys
  .command("generate")
  .description("create an OpenPGP signing key (gpg-compatible) and optionally a keyed Sigstore key pair")
  .requiredOption("--name <name>", "user id name, e.g. 'ACME Release'")
  .requiredOption("--email <email>", "user id e-mail")
  .option("-o, --out <dir>", "where to write the key files", "./keys")
  .option("--sigstore", "also create an ECDSA P-256 key pair for keyed Sigstore bundles")
  .option("--passphrase-file <file>", "protect the secret key with this passphrase")
  .action(async (o: { name: string; email: string; out: string; sigstore?: boolean; passphraseFile?: string }) => generateKeysCommand(o));

// --- job ------------------------------------------------------------------------------------
const job = program.command("job").description("submit jobs and follow them");
withConnection(
  job
    .command("submit")
    .description("submit a job: shell commands plus plugins at stages before, on_success, on_failure, after")
    .option("-f, --file <job.yaml>", "job file: commands, plugins [{plugin, stage, order, config}], agent, timeout")
    .option("-r, --run <command>", "a shell command (repeatable, run in order)", collect, [])
    .option("-p, --plugin <id@version:stage[:order]>", "a plugin step (repeatable), e.g. notify/echo@1.0.0:before:1", collect, [])
    .option("--config <id=json>", "JSON config for a plugin id (repeatable)", collect, [])
    .option("--agent <id>", "only this agent may run the job")
    .option("--timeout <seconds>", "job timeout")
    .option("-w, --wait", "wait for the job to finish and print its report; exit 1 if it failed")
    .option("--json", "print JSON"),
).action(async (o: SubmitFlags & ConnectOptions & { wait?: boolean; json?: boolean }) => {
  const { client, md } = connectAdmin(o);
  const { jobId } = await call(client.submitJob, client, buildJobRequest(o), md);
  if (!o.wait) {
    console.log(o.json ? JSON.stringify({ jobId }) : jobId);
  } else {
    const j = await waitForJob(client, md, jobId, 3_600_000);
    console.log(o.json ? JSON.stringify(j) : formatJob(j));
    if (j.status !== "succeeded") process.exitCode = 1;
  }
  client.close();
});
withConnection(
  job
    .command("status <jobId>")
    .description("show a job and its plugin steps (t_job_plugin rows)")
    .option("--json", "print JSON")
    .option("-w, --wait", "wait until it finishes"),
).action(async (jobId: string, o: ConnectOptions & { json?: boolean; wait?: boolean }) => {
  const { client, md } = connectAdmin(o);
  const j = o.wait ? await waitForJob(client, md, jobId, 3_600_000) : (await call(client.getJob, client, { jobId }, md)).job!;
  console.log(o.json ? JSON.stringify(j) : formatJob(j));
  client.close();
});

// --- demo -----------------------------------------------------------------------------------
program
  .command("demo")
  .description("start a server and an agent in a temp dir, publish the example plugins, run a job, show the five steps")
  .option("--keep", "keep the temp dir for inspection")
  .action(async (o: { keep?: boolean }) => {
    process.exitCode = await runDemo({ keep: o.keep === true });
  });

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function onShutdown(log: { info(o: object, m: string): void }, stop: () => Promise<void>): void {
  let once = false;
  const handler = (signal: string) => {
    if (once) return;
    once = true;
    log.info({ signal }, "shutting down");
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}

program.parseAsync(process.argv).catch((e: unknown) => {
  const code = errorCodeOf(e);
  console.error(e instanceof ArcadeError ? `error ${code}: ${e.message}` : `error ${code}: ${errorMessageOf(e)}`);
  if (!(e instanceof ArcadeError) && process.env.ARCADE_DEBUG) console.error(e);
  process.exit(1);
});
