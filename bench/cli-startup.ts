// `node dist/bench/cli-startup.js [rounds] [cli]`: wall time of `arcade` commands, whole process
// from spawn to exit, next to `node -e 0` (the floor: starting Node itself) in the same rounds.
// Commands run interleaved, in a rotated order each round, because this box is shared and noisy:
// only medians and per-round ratios mean much. A client command (`acl list`) talks to a real
// server started here on loopback; `plugin inspect` reads a packed example plugin.
// `cli` (default: this build's dist/cli/main.js) lets the same run time another build.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cliPath, startServerProcess } from "../cli/processes.js";

const rounds = Math.max(1, Number(process.argv[2] ?? 21) || 21);
const cli = path.resolve(process.argv[3] ?? cliPath());
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function time(argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "ignore", "pipe"] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-bench-cli-"));
let stop: (() => Promise<unknown>) | undefined;
try {
  const arcade = (...a: string[]) => [process.execPath, cli, ...a];
  const setup = (...a: string[]) => time(arcade(...a), process.env);
  setup("keys", "generate", "--name", "Bench", "--email", "bench@example.invalid", "--out", path.join(dir, "keys"));
  setup("certs", "init", "--out", path.join(dir, "pki"), "--hosts", "127.0.0.1");
  const tgz = path.join(dir, "console.tgz");
  setup("plugin", "pack", path.join(repo, "examples", "plugins", "notify-console"), "-o", tgz);
  const config = path.join(dir, "config.toml");
  fs.writeFileSync(
    config,
    `[server]\nlisten = "127.0.0.1:0"\ndata_dir = "${dir}/data"\n[database]\nurl = "file:${dir}/arcade.db"\n[metrics]\nlisten = ""\n[trust]\nkeyring = "${dir}/keys/publisher.asc"\n[tls]\ncert = "${dir}/pki/server.pem"\nkey = "${dir}/pki/server.key"\n`,
  );
  const srv = await startServerProcess(config);
  stop = () => srv.proc.stop();
  const env = {
    ...process.env,
    ARCADE_SERVER: srv.grpc,
    ARCADE_DATA_DIR: path.join(dir, "data"),
    ARCADE_CA: path.join(dir, "pki", "ca.pem"),
  };

  const variants: [string, string[]][] = [
    ["node -e 0", [process.execPath, "-e", "0"]],
    ["arcade --version", arcade("--version")],
    ["arcade --help", arcade("--help")],
    ["arcade acl list", arcade("acl", "list")],
    ["arcade plugin inspect", arcade("plugin", "inspect", tgz)],
  ];
  const samples = new Map(variants.map(([n]) => [n, [] as number[]]));
  const ratios = new Map(variants.map(([n]) => [n, [] as number[]]));
  for (const [, argv] of variants) time(argv, env); // warm the file cache
  for (let r = 0; r < rounds; r++) {
    const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
    const got = new Map(order.map(([n, argv]) => [n, time(argv, env)]));
    for (const [n, ms] of got) {
      samples.get(n)!.push(ms);
      ratios.get(n)!.push(ms / got.get("node -e 0")!);
    }
  }
  console.log(`${rounds} rounds, ${os.cpus().length} cores, Node ${process.version}, cli ${cli}`);
  console.log("command                  median ms    min ms    max ms   median ratio to node -e 0");
  for (const [n] of variants) {
    const s = samples.get(n)!;
    console.log(
      `${n.padEnd(24)} ${median(s).toFixed(0).padStart(9)} ${Math.min(...s)
        .toFixed(0)
        .padStart(9)} ${Math.max(...s)
        .toFixed(0)
        .padStart(9)} ${median(ratios.get(n)!).toFixed(2).padStart(12)}`,
    );
  }
} finally {
  await stop?.();
  fs.rmSync(dir, { recursive: true, force: true });
}
