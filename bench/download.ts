// `npm run bench` / `node dist/bench/download.js [rounds]`: cold download + install of a 256 MiB
// plugin through Arcade's real path (server child process, in-process Downloader into a fresh
// cache), next to a plain node:http download + SHA-256 + write to disk on the same machine.
// Variants run interleaved, in a rotated order each round, because this box is shared and noisy
// (see notes/grpc-toolchain-and-throughput.md): only medians and per-round ratios mean much.
// Everything it starts lives under one temp dir and is stopped/removed at the end, also on failure.
import { spawn } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import fsp from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Metadata, credentials, type ChannelOptions } from "@grpc/grpc-js";
import { pino } from "pino";
import { PluginCache, type PluginIdentity } from "../agent/cache.js";
import { Downloader } from "../agent/downloader.js";
import { AgentMetrics } from "../agent/metrics.js";
import { connectAdmin, publishFile } from "../cli/admin-client.js";
import { startServerProcess } from "../cli/processes.js";
import { AgentServiceClient, type DownloadPluginResponse } from "../proto/gen/arcade/v1/agent.js";
import { CLIENT_OPTIONS, bearer, call } from "../proto/rpc.js";
import { sha256File } from "../signing/digest.js";
import { safeExtract } from "../signing/extract.js";
import { generateSigningKey, readSecretKey } from "../signing/openpgp.js";
import { packPlugin } from "../signing/pack.js";
import { signRelease } from "../signing/release.js";
import { loadTrustStore } from "../keys/truststore.js";

const MIB = 1024 * 1024;
const PAYLOAD = 256 * MIB; // exactly the extractor's default per-file limit
const AGENT = "bench-agent";
const rounds = Math.max(1, Number(process.argv[2] ?? 5) || 5);

type Sample = { secs: number; mbps: number; cpuMs: number; srvCpuMs: number; ratio: number }; // ratio: ÷ http, same round
type Variant = { name: string; srvPid?: number | undefined; run: (dir: string) => Promise<number | void> };

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "-");
const load = () => Array.from(os.loadavg(), (l) => l.toFixed(2)).join(" ");
const WIDTHS = [6, 24, 7, 7, 8, 11, 8];
const row = (...cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(WIDTHS[i]!) : c.padStart(WIDTHS[i]!))).join("");
const KEYS = ["secs", "mbps", "cpuMs", "srvCpuMs", "ratio"] as const;
const cols = (f: (k: keyof Sample) => number) => KEYS.map((k) => fmt(f(k), k === "secs" || k === "ratio" ? 2 : 0));

/** utime+stime of another process from /proc (Linux; NaN elsewhere), in ms. */
function procCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

async function writeRandomFile(file: string, bytes: number): Promise<void> {
  const fh = await fsp.open(file, "w");
  try {
    const buf = Buffer.allocUnsafe(16 * MIB);
    for (let left = bytes; left > 0; left -= buf.length) await fh.write(randomFillSync(buf), 0, Math.min(left, buf.length));
  } finally {
    await fh.close();
  }
}

// The baseline server: the simplest thing Node offers, in its own process like Arcade's server.
const HTTP_SERVER = `const http = require("http"), fs = require("fs"); const file = process.argv[1];
const s = http.createServer((req, res) => { res.writeHead(200, { "content-length": fs.statSync(file).size }); fs.createReadStream(file).pipe(res); });
s.listen(0, "127.0.0.1", () => console.log(s.address().port));`;

/** What both baselines do with the bytes: SHA-256 while writing them to a file, then check. */
async function hashToFile(src: AsyncIterable<Buffer>, out: string, want: PluginIdentity): Promise<void> {
  const hash = createHash("sha256");
  let n = 0;
  const tap = async function* (chunks: AsyncIterable<Buffer>) {
    for await (const c of chunks) {
      hash.update(c);
      n += c.length;
      yield c;
    }
  };
  await pipeline(src, tap, fs.createWriteStream(out));
  if (n !== want.size || hash.digest("hex") !== want.sha256) throw new Error(`got ${n} bytes with a different sha256`);
}

async function httpDownload(url: string, out: string, want: PluginIdentity): Promise<void> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on("error", reject));
  await hashToFile(res, out, want);
}

/** Arcade's transport alone: the same DownloadPlugin stream, minus the Downloader's extract/install. */
async function grpcDownload(client: AgentServiceClient, token: string, out: string, want: PluginIdentity): Promise<void> {
  const stream = client.downloadPlugin({ pluginId: want.pluginId, version: want.version, offset: 0 }, bearer(token));
  const chunks = async function* () {
    for await (const m of stream as AsyncIterable<DownloadPluginResponse>) if (m.payload?.$case === "chunk") yield m.payload.value;
  };
  await hashToFile(chunks(), out, want);
}

async function main(): Promise<void> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "arcade-bench-"));
  const log = pino({ level: "silent" });
  const closers: (() => unknown)[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => undefined);
      await fsp.rm(tmp, { recursive: true, force: true });
    })());
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));
  try {
    console.log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${load()}; temp dir ${tmp}`);
    const src = path.join(tmp, "plugin");
    await fsp.mkdir(src);
    const manifest = { id: "bench/big", version: "1.0.0" };
    const fields = { schemaVersion: 1, entry: "index.mjs", runtime: "node", stages: ["before"], description: "256 MiB of random bytes" };
    const permissions = { network: false, env: [], paths: [] };
    await fsp.writeFile(path.join(src, "manifest.json"), JSON.stringify({ ...manifest, ...fields, permissions }));
    await fsp.writeFile(path.join(src, "index.mjs"), "export default async () => ({});\n");
    await writeRandomFile(path.join(src, "payload.bin"), PAYLOAD); // random: gzip cannot shrink it
    const tgz = path.join(tmp, "big.tgz");
    let t = performance.now();
    const packed = await packPlugin(src, tgz);
    await fsp.rm(src, { recursive: true });
    const ref: PluginIdentity = { pluginId: manifest.id, version: manifest.version, sha256: packed.sha256, size: packed.size };
    console.log(`packed ${packed.size} bytes in ${fmt((performance.now() - t) / 1000, 1)} s`);

    // Releases must be signed: one publisher key, trusted by the server and by the agent side.
    const key = await generateSigningKey({ name: "Arcade Bench", email: "bench@arcade.invalid" });
    const keyring = path.join(tmp, "publishers.asc");
    await fsp.writeFile(keyring, key.publicKeyArmored);
    await signRelease(tgz, packed, { openpgpKey: await readSecretKey(key.privateKeyArmored) });
    const trust = await loadTrustStore({ keyring });
    // Plaintext gRPC on loopback (insecure = true), like the node:http baseline: TLS is a cost of its own.
    await fsp.writeFile(
      path.join(tmp, "server.toml"),
      `[server]\nlisten = "127.0.0.1:0"\ndata_dir = "server"\ninsecure = true\n\n[plugin]\nmax_plugin_size = 1024\n\n[trust]\nkeyring = "publishers.asc"\n\n[metrics]\nlisten = "127.0.0.1:0"\n`,
    );
    const server = await startServerProcess(path.join(tmp, "server.toml"));
    closers.push(() => server.proc.stop());
    const admin = connectAdmin({ server: server.grpc, dataDir: path.join(tmp, "server") });
    closers.push(() => admin.client.close());
    t = performance.now();
    await publishFile(admin.client, admin.md, tgz);
    console.log(`published in ${fmt((performance.now() - t) / 1000, 1)} s`);

    const httpChild = spawn(process.execPath, ["-e", HTTP_SERVER, tgz], { stdio: ["ignore", "pipe", "inherit"] });
    closers.push(async () => {
      if (httpChild.exitCode === null && httpChild.signalCode === null) {
        httpChild.kill();
        await once(httpChild, "exit");
      }
    });
    const [portLine] = (await once(httpChild.stdout!, "data")) as [Buffer];
    const url = `http://127.0.0.1:${portLine.toString().trim()}/big.tgz`;

    // One channel with Arcade's options, one with grpc-js's 64 KiB window (different options, so separate connections).
    const defaultWindow: ChannelOptions = { ...CLIENT_OPTIONS };
    delete defaultWindow["grpc-node.flow_control_window"];
    const agent = new AgentServiceClient(server.grpc, credentials.createInsecure(), CLIENT_OPTIONS);
    const agent64 = new AgentServiceClient(server.grpc, credentials.createInsecure(), defaultWindow);
    closers.push(
      () => agent.close(),
      () => agent64.close(),
    );
    // Enrolled like a real agent (one-time token for a credential), and granted the plugin:
    // downloads are authorised by ACL, deny by default.
    const { enrollmentToken } = await call(
      admin.client.createAgent,
      admin.client,
      { agentId: AGENT, labels: {}, tokenTtlSeconds: 0 },
      admin.md,
    );
    await call(admin.client.grantAcl, admin.client, { subject: `agent:${AGENT}`, pluginPattern: ref.pluginId, versionRange: "" }, admin.md);
    const enroll = new Metadata();
    enroll.set("x-arcade-enrollment-token", enrollmentToken);
    const hello = { agentId: AGENT, hostname: os.hostname(), agentVersion: "bench", installed: [] };
    const { credential } = await call(agent.register, agent, hello, enroll);
    const token = () => credential;
    const metrics = new AgentMetrics();
    const arcade = (client: AgentServiceClient) => async (dir: string) => {
      const cache = await PluginCache.open(dir, 4096 * MIB, log);
      const t0 = performance.now();
      await new Downloader({ client, trust, token, cache, metrics, log, timeoutMs: 15 * 60_000 }).ensure(ref);
      return performance.now() - t0; // cache set-up excluded: an agent opens it once at start
    };
    const srvPid = server.proc.child.pid;
    const variants: Variant[] = [
      { name: "arcade", srvPid, run: arcade(agent) },
      { name: "arcade, 64 KiB window", srvPid, run: arcade(agent64) },
      { name: "grpc fetch only", srvPid, run: (dir) => grpcDownload(agent, token(), path.join(dir, "big.tgz"), ref) },
      { name: "http", srvPid: httpChild.pid, run: (dir) => httpDownload(url, path.join(dir, "big.tgz"), ref) },
      // The rest of the arcade path, no network: tar+gunzip extraction, and hashing alone.
      { name: "extract only (local)", run: async (dir) => void (await safeExtract(tgz, dir)) },
      { name: "sha256 only (local)", run: async () => void (await sha256File(tgz)) },
    ];

    const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
    console.log(`\n${row("round", "variant", "s", "MB/s", "cpu ms", "srv cpu ms")}`);
    for (let r = 0; r < rounds; r++) {
      const got: Record<string, Sample> = {};
      for (let i = 0; i < variants.length; i++) {
        const v = variants[(i + r) % variants.length]!;
        const dir = await fsp.mkdtemp(path.join(tmp, "round-"));
        try {
          const [c0, s0, t0] = [process.cpuUsage(), procCpuMs(v.srvPid), performance.now()];
          const inner = await v.run(dir);
          const secs = (typeof inner === "number" ? inner : performance.now() - t0) / 1000;
          const [c, srvCpuMs] = [process.cpuUsage(c0), procCpuMs(v.srvPid) - s0];
          const s = { secs, mbps: ref.size / 1e6 / secs, cpuMs: (c.user + c.system) / 1000, srvCpuMs, ratio: NaN };
          samples.get(v.name)!.push((got[v.name] = s));
          console.log(row(String(r + 1), v.name, ...cols((k) => s[k]).slice(0, 4)));
        } finally {
          await fsp.rm(dir, { recursive: true, force: true });
        }
      }
      for (const s of Object.values(got)) s.ratio = s.mbps / got["http"]!.mbps;
      const ratios = Object.entries(got).filter(([n]) => n !== "http");
      console.log(`${String(r + 1).padEnd(6)}÷ http: ${ratios.map(([n, s]) => `${n} ${fmt(s.ratio, 2)}`).join(", ")}`);
    }

    console.log(`\nmedians over ${rounds} rounds (MB = 10^6 bytes; ${ref.size} bytes per transfer)`);
    console.log(row("", "variant", "s", "MB/s", "cpu ms", "srv cpu ms", "÷ http"));
    const med = (name: string, k: keyof Sample) => median(samples.get(name)!.map((s) => s[k]));
    for (const name of samples.keys()) console.log(row("", name, ...cols((k) => med(name, k))));
    console.log(`load average at the end: ${load()}`);
    const [ratio, a, h] = [med("arcade", "ratio"), med("arcade", "mbps"), med("http", "mbps")];
    console.log(`median arcade/http ratio: ${fmt(ratio, 2)} (arcade ${fmt(a)} MB/s, http ${fmt(h)} MB/s, ${rounds} rounds)`);
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
