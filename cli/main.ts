#!/usr/bin/env node
// `arcade`: one command for every role. Errors print as "error CODE: message" and exit 1, so
// scripts can match on the code; usage mistakes print commander's message and help hint.
import { Command, Option } from "commander";
import { silenceIpServernameWarning } from "../proto/warnings.js";
import { ArcadeError, ErrorCode } from "../signing/errors.js";
import { EVENT } from "../signing/events.js";
import type { ConnectOptions } from "./admin-client.js";
import { registerAdminCommands } from "./admin-commands.js";
import { printable, reportError } from "./output.js";
import type { SignFlags, TrustFlags } from "./release-commands.js";
import type { SubmitFlags } from "./job-file.js";

// Start-up time matters (every command, --help and --version included): this file loads only
// commander and the small modules above. Each action imports what it needs when it runs; a
// test (test/e2e/cli-startup.test.ts) checks that --version and client commands stay light.

silenceIpServernameWarning();

const program = new Command()
  .name("arcade")
  .description(
    "Signed plugin distribution for CI/CD: a server that stores plugins and hands out jobs, agents that fetch, verify and run them.",
  )
  .version("0.1.0")
  // Root options only before the subcommand, so `plugin init --version 1.0.0` reaches init.
  .enablePositionalOptions()
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
    const { loadServerConfig } = await import("../server/config.js");
    const { startServer } = await import("../server/main.js");
    const { createLogger } = await import("./log.js");
    const { serveMetrics } = await import("./metrics-endpoint.js");
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
const agent = program.command("agent").description("run an Arcade agent and manage agent identities");
agent
  .command("start")
  .description("register with the server and run jobs, downloading plugins on demand")
  .option("-c, --config <file>", "agent config (YAML); settings can also come from ARCADE_AGENT_<KEY> variables")
  .action(async (o: { config?: string }) => {
    const { loadAgentConfig } = await import("../agent/config.js");
    const { EXIT_CANNOT_SUCCEED, startAgent } = await import("../agent/main.js");
    const { createLogger } = await import("./log.js");
    const { serveMetrics } = await import("./metrics-endpoint.js");
    const config = loadAgentConfig(o.config);
    const log = createLogger("arcade-agent").child({ agent_id: config.id });
    const a = await startAgent(config, log);
    const metrics = config.metricsListen
      ? await serveMetrics(a.metrics.registry, config.metricsListen, async () => true, AGENT_METRICS_SETTING)
      : undefined;
    onShutdown(log, async () => {
      await metrics?.close();
      await a.stop();
    });
    // "ready" only once the server has accepted us; a failure retrying cannot fix ends the process.
    void a.fatal.then(async (e) => {
      log.fatal({ event: EVENT.AGENT_FATAL, code: e.code, reason: e.message }, "stopping: retrying cannot succeed");
      console.error(`error ${e.code}: ${printable(e.message)}`);
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
  .action(async (dir: string, o: { out?: string }) => (await import("./release-commands.js")).packCommand(dir, o));
plugin
  .command("init <dir>")
  .description("scaffold a working plugin: manifest.json and an entry module with example stages")
  .requiredOption("--id <namespace/name>", "plugin id, e.g. notify/slack")
  .option("--version <semver>", "first version", "0.1.0")
  .action(async (dir: string, o: { id: string; version: string }) => (await import("./release-commands.js")).initCommand(dir, o));
plugin
  .command("sign <tarball>")
  .description("write <tarball>.statement.json and sign it: .asc (OpenPGP) and/or .sigstore.json (keyed Sigstore)")
  .option("-k, --key <file>", "armored OpenPGP secret key")
  .option("--passphrase-file <file>", "passphrase of the secret key")
  .option("--sigstore-key <file>", "PEM ECDSA P-256 private key for a keyed Sigstore bundle")
  .option("--sigstore-hint <hint>", "the name verifiers know the Sigstore key by")
  .action(async (tgz: string, o: SignFlags) => (await import("./release-commands.js")).signCommand(tgz, o));
plugin
  .command("verify <tarball>")
  .description("check a tarball and its release files as an agent would: signature, statement, digest, manifest")
  .option("--keyring <file>", "trusted armored OpenPGP public keys")
  .option("--sigstore-key <hint=pem>", "a trusted Sigstore public key (repeatable)", collect, [])
  .option("--json", "print the verdict as JSON")
  .action(async (tgz: string, o: TrustFlags & { json?: boolean }) => {
    process.exitCode = await (await import("./release-commands.js")).verifyCommand(tgz, o);
  });
plugin
  .command("inspect <tarball>")
  .description("show a tarball's digest, manifest, statement and signatures (nothing is verified)")
  .option("--json", "print JSON")
  .action(async (tgz: string, o: { json?: boolean }) => (await import("./inspect-command.js")).inspectCommand(tgz, o));
withConnection(
  plugin
    .command("publish <tarballs...>")
    .description("upload plugin tarballs (id and version come from each manifest.json)")
    .option("--json", "print one JSON line per tarball"),
).action(async (files: string[], o: ConnectOptions & { json?: boolean }) => {
  const { connectAdmin, publishFile } = await import("./admin-client.js");
  const { printJson } = await import("./output.js");
  const { requireFile } = await import("./files.js");
  for (const f of files) await requireFile("<tarball>", f);
  const { client, md } = connectAdmin(o);
  try {
    for (const f of files) {
      const r = await publishFile(client, md, f);
      if (o.json) printJson(r);
      else
        console.log(
          `${r.created ? "published" : "already published"} ${r.plugin?.pluginId}@${r.plugin?.version}  sha256 ${r.plugin?.sha256}  ${r.plugin?.size} bytes`,
        );
    }
  } finally {
    client.close();
  }
});
withConnection(
  plugin
    .command("list")
    .description("list published plugins")
    .option("--id <plugin id>", "only this plugin")
    .option("--json", "print JSON"),
).action(async (o: ConnectOptions & { id?: string; json?: boolean }) => {
  const { connectAdmin, call } = await import("./admin-client.js");
  const { printJson, printable } = await import("./output.js");
  const { client, md } = connectAdmin(o);
  const res = await call(client.listPlugins, client, { pluginId: o.id ?? "" }, md).finally(() => client.close());
  if (o.json) return printJson(res.plugins);
  for (const p of res.plugins)
    console.log(
      printable(
        `${p.plugin?.pluginId}@${p.plugin?.version}  sha256 ${p.plugin?.sha256}  ${p.plugin?.size} bytes  ${new Date(p.publishedAtMs).toISOString()}  signed by ${p.signers.join(", ") || "nobody (unsigned, development server)"}`,
      ),
    );
});

// --- certs ----------------------------------------------------------------------------------
program
  .command("certs")
  .description("a local certificate authority for TLS and mTLS: server, agent and admin certificates")
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
    const { writeCertsDir } = await import("../keys/certs.js");
    const split = (v: string) =>
      v
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean);
    const admins = split(o.admins);
    const r = await writeCertsDir(o.out, { hosts: split(o.hosts), agents: split(o.agents), admins, reuseCa: o.reuseCa === true }).catch(
      (e: unknown) => {
        // keys/certs.ts refuses an existing CA key; the flag that makes it usable is ours to name.
        const file = (e as { details?: { file?: unknown } }).details?.file;
        if (file === "ca.key" && !o.reuseCa && e instanceof Error)
          throw Object.assign(e, {
            message: `${e.message}: pass --reuse-ca to issue the missing certificates with this CA, or choose another --out`,
          });
        throw e;
      },
    );
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
  .action(async (o: { name: string; email: string; out: string; sigstore?: boolean; passphraseFile?: string }) =>
    (await import("./release-commands.js")).generateKeysCommand(o),
  );

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
    .option("--timeout <seconds>", "job timeout: how long the job may run on the agent")
    .option("-w, --wait", "wait for the job to finish and print its report; exit 1 if it failed")
    // --timeout was the job's own timeout before --wait had one (docs/operators.md), hence the name.
    .option("--wait-timeout <seconds>", "with --wait: stop waiting after this long (exit JOB_TIMEOUT; the job keeps running)", "3600")
    .option("--json", "print JSON"),
).action(async (o: SubmitFlags & ConnectOptions & WaitFlags & { waitTimeout: string }) => (await import("./jobs.js")).submitCommand(o));
withConnection(
  job
    .command("status <jobId>")
    .description("show a job and its plugin steps (t_job_plugin rows)")
    .option("--json", "print JSON")
    .option("-w, --wait", "wait until it finishes")
    .option("--timeout <seconds>", "with --wait: stop waiting after this long (exit JOB_TIMEOUT; the job keeps running)", "3600"),
).action(async (jobId: string, o: ConnectOptions & WaitFlags) => (await import("./jobs.js")).statusCommand(jobId, o));

// --- demo -----------------------------------------------------------------------------------
program
  .command("demo")
  .description("start a server and an agent in a temp dir, publish the example plugins, run a job, show the five steps")
  .option("--keep", "keep the temp dir for inspection")
  .action(async (o: { keep?: boolean }) => {
    const { runDemo } = await import("./demo.js");
    process.exitCode = await runDemo({ keep: o.keep === true });
  });

/** Named in the error when the agent's metrics port cannot be bound. */
const AGENT_METRICS_SETTING = { key: "metrics_listen", env: "ARCADE_AGENT_METRICS_LISTEN" };

type WaitFlags = { wait?: boolean; timeout: string; json?: boolean };

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
  reportError(e);
  process.exit(1);
});
