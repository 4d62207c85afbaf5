// Hostile plugins against the real sandbox: each attempt is refused or contained, and nothing
// escapes. The tests adapt to the layers detectSandbox() finds; on a Linux box where the tests
// run as root with bubblewrap installed (CI), every one of them runs. Needs the compiled host in
// dist/ (`npm test` builds it in pretest).

import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import inspector from "node:inspector";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { SLOT_UID_BASE } from "../../../agent/sandbox/detect.js";
import { processesOfUid } from "../../../agent/sandbox/layers.js";
import {
  detectSandbox,
  formatSandboxReport,
  killSlotProcesses,
  PluginProcess,
  type PluginProcessOptions,
  type SandboxOptions,
  type StageOutcome,
} from "../../../agent/sandbox/runner.js";
import { ArcadeError, ErrorCode } from "../../../signing/errors.js";
import type { PluginManifest, StageName } from "../../../signing/manifest.js";

const report = await detectSandbox();
const { permissionModel, rlimits, uidDrop, namespaces } = report.layers;
const { bwrap, unshare } = report.namespaceTools;
// A slot of our own, so the uid checks below see no other test file's plugins (they use slot 0).
const SLOT = 7;
const SLOT_UID = SLOT_UID_BASE + SLOT;

let root: string;
let workRoot: string;
let workspace: string;
let server: net.Server;
let serverPort: number;
let serverConnections = 0;
let unixServer: net.Server;
let unixPath: string;
const open: PluginProcess[] = [];
let counter = 0;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "arcade-hostile-test-"));
  workRoot = path.join(root, "work");
  workspace = path.join(root, "workspace");
  await mkdir(workspace, { mode: 0o700 });
  server = net.createServer((sock) => {
    serverConnections++;
    sock.end("hello from the agent");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  serverPort = (server.address() as net.AddressInfo).port;
  unixPath = path.join(root, "agent.sock");
  unixServer = net.createServer((sock) => sock.end("unix hello"));
  await new Promise<void>((r) => unixServer.listen(unixPath, r));
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await new Promise((r) => unixServer.close(r));
  if (uidDrop) await killSlotProcesses(SLOT);
  await rm(root, { recursive: true, force: true });
});

interface PluginSpec {
  code: string;
  stages?: StageName[];
  network?: boolean;
  files?: Record<string, string>;
  symlinks?: Record<string, string>;
}

async function writePlugin(spec: PluginSpec): Promise<{ pluginDir: string; manifest: PluginManifest }> {
  const pluginDir = path.join(root, `plugin-${++counter}`);
  await mkdir(pluginDir);
  const manifest: PluginManifest = {
    schemaVersion: 1,
    id: "test/hostile",
    version: "1.0.0",
    entry: "index.mjs",
    runtime: "node",
    stages: spec.stages ?? ["before"],
    permissions: { network: spec.network ?? false, env: [], paths: [] },
    description: "hostile test plugin",
  };
  await writeFile(path.join(pluginDir, "manifest.json"), JSON.stringify(manifest));
  await writeFile(path.join(pluginDir, manifest.entry), PRELUDE + spec.code);
  for (const [name, text] of Object.entries(spec.files ?? {})) await writeFile(path.join(pluginDir, name), text);
  for (const [name, target] of Object.entries(spec.symlinks ?? {})) await symlink(target, path.join(pluginDir, name));
  return { pluginDir, manifest };
}

type Options = Partial<Omit<PluginProcessOptions, "sandbox">> & { sandbox?: SandboxOptions };

async function start(spec: PluginSpec, opts: Options = {}): Promise<PluginProcess> {
  const plugin = await writePlugin(spec);
  const proc = await PluginProcess.start({
    ...plugin,
    workRoot,
    jobWorkspace: workspace,
    ...opts,
    sandbox: { slot: SLOT, ...opts.sandbox },
  });
  open.push(proc);
  return proc;
}

/** Starts a plugin whose `before` is `body` and runs it; the parsed result is in `.value`. */
async function runBefore(body: string, opts: Options = {}, spec: Partial<PluginSpec> = {}) {
  const proc = await start({ ...spec, code: `export async function before(ctx) {\n${body}\n}` }, opts);
  const outcome = await proc.runStage("before", { agentPid: process.pid, port: serverPort, unixPath, root }, { id: "job-1" });
  let value: Record<string, Attempt> | undefined;
  try {
    value = outcome.result === null ? undefined : (JSON.parse(outcome.result) as Record<string, Attempt>);
  } catch {
    // a plain string result
  }
  return { proc, outcome, value };
}

interface Attempt {
  ok: boolean;
  code?: string;
  message?: string;
  value?: unknown;
}

// Helpers every test plugin gets: try something, report how it went as JSON.
const PRELUDE = `
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
const attempt = async (f) => {
  try { return { ok: true, value: await f() }; }
  catch (e) { return { ok: false, code: e?.code ?? e?.name, message: String(e?.message ?? e) }; }
};
const connect = (opts) => new Promise((resolve) => {
  const s = net.connect(opts);
  s.setTimeout(5000);
  s.once("data", (d) => { s.destroy(); resolve({ ok: true, value: String(d) }); });
  s.once("error", (e) => resolve({ ok: false, code: e.code }));
  s.once("timeout", () => { s.destroy(); resolve({ ok: false, code: "TIMEOUT" }); });
});
`;

const expectDenied = (a: Attempt | undefined, codes: string[]) => {
  expect(a?.ok, JSON.stringify(a)).toBe(false);
  expect(codes, JSON.stringify(a)).toContain(a?.code);
};

async function waitFor(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    if (await check()) return true;
  }
  return check();
}

const slotIsEmpty = async () => (await processesOfUid(SLOT_UID)).length === 0;
const failed = (o: StageOutcome) => ({ ok: o.ok, code: o.error?.code, message: o.error?.message });

describe("sandbox detection", () => {
  it("reports every layer as on or off with a reason", () => {
    const line = formatSandboxReport(report);
    expect(line).toMatch(/^sandbox: process\+env, permission-model(\(--(experimental-)?permission\)|: off \(.+\)), rlimits/);
    expect(line).toMatch(/network: (denied by default|NOT isolated)$/);
    for (const [name, on] of [
      ["permission-model", permissionModel],
      ["rlimits", rlimits],
      ["uid-drop", uidDrop],
      ["namespaces", namespaces],
    ] as const) {
      if (!on) expect(report.off[name], name).toMatch(/./);
    }
    if (process.getuid?.() !== 0) expect(report.off["uid-drop"]).toBe("not root");
  });

  it("grants the plugin host exactly the files it imports", () => {
    expect(report.host?.files.map((f) => path.basename(f))).toEqual(["plugin-host.js", "protocol.js"]);
  });
});

describe("hostile plugins: the filesystem", () => {
  it.skipIf(!permissionModel && !bwrap)("cannot read /etc/passwd by any route", async () => {
    const { value } = await runBefore(`
      return {
        readFileSync: await attempt(() => fs.readFileSync("/etc/passwd", "utf8")),
        promises: await attempt(() => fs.promises.readFile("/etc/passwd", "utf8")),
        traversal: await attempt(() => fs.readFileSync(path.join(process.cwd(), "../../../../../../../etc/passwd"), "utf8")),
        exists: await attempt(() => fs.existsSync("/etc/passwd")),
        importIt: await attempt(() => import("/etc/passwd")),
      };
    `);
    const code = permissionModel ? ["ERR_ACCESS_DENIED"] : ["ENOENT"];
    expectDenied(value?.readFileSync, code);
    expectDenied(value?.promises, code);
    expectDenied(value?.traversal, code);
    // existsSync throws ERR_ACCESS_DENIED on some versions and says false on others; never true.
    expect(value?.exists?.value === true).toBe(false);
    expect(value?.importIt?.ok).toBe(false);
    expect(JSON.stringify(value)).not.toContain("root:x:0:0");
  });

  it.skipIf(!bwrap)("sees no /etc/passwd in bwrap's view even without the permission model", async () => {
    const { value } = await runBefore(
      `return { read: await attempt(() => fs.readFileSync("/etc/passwd", "utf8")), top: await attempt(() => fs.readdirSync("/").sort()) };`,
      { sandbox: { disable: ["permission-model"], namespaceTool: "bwrap" } },
    );
    expectDenied(value?.read, ["ENOENT"]);
    expect(value?.top?.value).not.toContain("root");
    expect(value?.top?.value).not.toContain("home");
  });

  it.skipIf(!bwrap)("follows a symlink in its own dir to /etc/passwd into nothing", async () => {
    // The permission model cannot stop this one (the link is inside a granted dir); bwrap's view can.
    const { value } = await runBefore(
      `return { read: await attempt(() => fs.readFileSync(new URL("./passwd", import.meta.url), "utf8")) };`,
      {},
      {
        symlinks: { passwd: "/etc/passwd" },
      },
    );
    expectDenied(value?.read, ["ENOENT"]);
  });

  it.skipIf(!permissionModel && !bwrap)("cannot write outside its work dir and the job workspace", async () => {
    const escape = path.join(os.tmpdir(), `arcade-escape-${process.pid}-${Date.now()}`);
    const { proc, value } = await runBefore(`
      return {
        tmp: await attempt(() => fs.writeFileSync(${JSON.stringify(escape)}, "x")),
        pluginDir: await attempt(() => fs.writeFileSync(new URL("./evil.mjs", import.meta.url), "x")),
        testRoot: await attempt(() => fs.writeFileSync(path.join(ctx.config.root, "evil"), "x")),
        mkdir: await attempt(() => fs.mkdirSync(${JSON.stringify(escape + "-dir")})),
        workDir: await attempt(() => fs.writeFileSync("scratch.txt", "ok")),
        workspace: await attempt(() => fs.writeFileSync(path.join(ctx.job.workspace, "build-info.json"), "{}")),
      };
    `);
    if (permissionModel) {
      for (const key of ["tmp", "pluginDir", "testRoot", "mkdir"]) expectDenied(value?.[key], ["ERR_ACCESS_DENIED"]);
    }
    expect(value?.workDir?.ok, JSON.stringify(value?.workDir)).toBe(true);
    expect(value?.workspace?.ok, JSON.stringify(value?.workspace)).toBe(true);
    expect(existsSync(escape)).toBe(false);
    expect(existsSync(escape + "-dir")).toBe(false);
    expect(existsSync(path.join(root, "evil"))).toBe(false);
    expect(existsSync(path.join(root, `plugin-${counter}`, "evil.mjs"))).toBe(false);
    await proc.close();
    expect(existsSync(path.join(workspace, "build-info.json"))).toBe(true);
  });

  it.skipIf(!bwrap)("without the permission model, bwrap keeps writes off the host", async () => {
    const escape = path.join(os.tmpdir(), `arcade-escape-${process.pid}-${Date.now()}`);
    const { proc, value } = await runBefore(
      `
      return {
        tmp: await attempt(() => fs.writeFileSync(${JSON.stringify(escape)}, "x")),
        pluginDir: await attempt(() => fs.writeFileSync(new URL("./evil.mjs", import.meta.url), "x")),
        usr: await attempt(() => fs.writeFileSync("/usr/evil", "x")),
      };
    `,
      { sandbox: { disable: ["permission-model"], namespaceTool: "bwrap" } },
    );
    // /tmp inside is bwrap's own tmpfs: the write "works" and vanishes with the sandbox.
    expect(existsSync(escape)).toBe(false);
    expectDenied(value?.pluginDir, ["EROFS", "EACCES"]);
    expectDenied(value?.usr, ["EROFS", "EACCES"]);
    expect(existsSync(path.join(root, `plugin-${counter}`, "evil.mjs"))).toBe(false);
    await proc.close();
  });

  it.skipIf(!uidDrop)("runs as its slot's uid, owns its work dir and shares the workspace through the group", async () => {
    const { proc, value } = await runBefore(`
      fs.writeFileSync(path.join(ctx.job.workspace, "from-plugin.txt"), "hi");
      return { ids: { ok: true, value: [process.getuid(), process.getgid(), process.getgroups()] } };
    `);
    expect(value?.ids?.value).toEqual([SLOT_UID, SLOT_UID, expect.any(Array)]);
    expect((value?.ids?.value as number[][])[2]!.filter((g) => g !== SLOT_UID)).toEqual([]);
    const wd = await stat(proc.workDir);
    expect([wd.uid, wd.gid, wd.mode & 0o7777]).toEqual([SLOT_UID, SLOT_UID, 0o700]);
    const ws = await stat(workspace);
    expect([ws.uid, ws.gid, ws.mode & 0o7777]).toEqual([process.getuid?.(), SLOT_UID, 0o2770]);
    expect((await stat(path.join(workspace, "from-plugin.txt"))).uid).toBe(SLOT_UID);
  });
});

describe("hostile plugins: processes", () => {
  it.skipIf(!permissionModel)("cannot start processes, workers or native addons", async () => {
    const { value } = await runBefore(`
      const cp = await import("node:child_process");
      const { Worker } = await import("node:worker_threads");
      return {
        spawnSync: await attempt(() => cp.spawnSync("true").status),
        exec: await attempt(() => cp.execSync("id")),
        spawn: await attempt(() => cp.spawn("sleep", ["1000"], { detached: true, stdio: "ignore" }).pid),
        worker: await attempt(() => new Worker("setInterval(() => {}, 1000)", { eval: true }).threadId),
        addon: await attempt(() => process.dlopen({ exports: {} }, new URL("./addon.node", import.meta.url).pathname)),
      };
    `);
    for (const key of ["spawnSync", "exec", "spawn", "worker"]) expectDenied(value?.[key], ["ERR_ACCESS_DENIED"]);
    expectDenied(value?.addon, ["ERR_DLOPEN_DISABLED", "ERR_ACCESS_DENIED"]);
  });

  it.skipIf(!uidDrop)("leaves nothing of its uid alive after close(), a never-ending timer included", async () => {
    const { proc, outcome } = await runBefore(`
      setInterval(() => {}, 1000);
      try { (await import("node:child_process")).spawn("sleep", ["1000"], { detached: true, stdio: "ignore" }).unref(); } catch {}
      return null;
    `);
    expect(outcome.ok).toBe(true);
    expect(await processesOfUid(SLOT_UID)).not.toEqual([]);
    await proc.close();
    expect(await waitFor(slotIsEmpty)).toBe(true);
  });

  it.skipIf(!uidDrop || !namespaces)("takes a setsid()ed daemon down with the pid namespace", async () => {
    const { proc, value } = await runBefore(
      `
      const cp = await import("node:child_process");
      const child = cp.spawn("sleep", ["1000"], { detached: true, stdio: "ignore" }); // detached = setsid()
      child.unref();
      await new Promise((r) => setTimeout(r, 200));
      return { daemon: { ok: true, value: child.pid } };
    `,
      { sandbox: { disable: ["permission-model"] } },
    );
    expect(value?.daemon?.ok).toBe(true);
    expect((await processesOfUid(SLOT_UID)).length).toBeGreaterThanOrEqual(2);
    await proc.close();
    expect(await waitFor(slotIsEmpty)).toBe(true);
  });

  it.skipIf(!uidDrop)("without a pid namespace a daemon outlives close(): killSlotProcesses() ends it", async () => {
    const { proc, value } = await runBefore(
      `
      const child = (await import("node:child_process")).spawn("sleep", ["1000"], { detached: true, stdio: "ignore" });
      child.unref();
      return { daemon: { ok: true, value: child.pid } };
    `,
      { sandbox: { disable: ["permission-model", "namespaces"] } },
    );
    const daemon = value?.daemon?.value as number;
    expect(daemon).toBeGreaterThan(0);
    await proc.close();
    expect(await processesOfUid(SLOT_UID)).toContain(daemon);
    expect(await killSlotProcesses(SLOT)).toBeGreaterThanOrEqual(1);
    expect(await waitFor(slotIsEmpty)).toBe(true);
  });
});

describe("hostile plugins: the network", () => {
  it.skipIf(!namespaces)("cannot reach the agent's loopback services when its network is denied", async () => {
    const before = serverConnections;
    const { value } = await runBefore(`
      return {
        tcp: await connect({ host: "127.0.0.1", port: ctx.config.port }),
        v6: await connect({ host: "::1", port: ctx.config.port }),
        external: await connect({ host: "192.0.2.1", port: 80 }),
      };
    `);
    expectDenied(value?.tcp, ["ECONNREFUSED", "ENETUNREACH"]);
    expectDenied(value?.v6, ["ECONNREFUSED", "ENETUNREACH", "EADDRNOTAVAIL"]);
    expectDenied(value?.external, ["ENETUNREACH", "EHOSTUNREACH"]);
    expect(serverConnections).toBe(before);
  });

  it.skipIf(!bwrap || namespaces?.tool !== "bwrap")("cannot reach the agent's unix sockets: they are not in its view", async () => {
    const { value } = await runBefore(`return { unix: await connect({ path: ctx.config.unixPath }) };`);
    expectDenied(value?.unix, ["ENOENT"]);
  });

  it.skipIf(!namespaces)("stays offline when the manifest asks for the network but the agent's policy does not allow it", async () => {
    const { value } = await runBefore(
      `return { tcp: await connect({ host: "127.0.0.1", port: ctx.config.port }) };`,
      {},
      { network: true },
    );
    expectDenied(value?.tcp, ["ECONNREFUSED", "ENETUNREACH"]);
    const policyOnly = await runBefore(`return { tcp: await connect({ host: "127.0.0.1", port: ctx.config.port }) };`, {
      sandbox: { allowNetwork: true },
    });
    expectDenied(policyOnly.value?.tcp, ["ECONNREFUSED", "ENETUNREACH"]);
  });

  it.skipIf(!namespaces)("connects when the manifest asks and the policy allows", async () => {
    const { value } = await runBefore(
      `return { tcp: await connect({ host: "127.0.0.1", port: ctx.config.port }) };`,
      { sandbox: { allowNetwork: true } },
      { network: true },
    );
    expect(value?.tcp).toEqual({ ok: true, value: "hello from the agent" });
  });

  it.skipIf(!unshare)("unshare fallback: network denied by default, allowed by manifest + policy", async () => {
    const denied = await runBefore(`return { tcp: await connect({ host: "127.0.0.1", port: ctx.config.port }) };`, {
      sandbox: { namespaceTool: "unshare" },
    });
    expectDenied(denied.value?.tcp, ["ENETUNREACH", "ECONNREFUSED"]);
    const allowed = await runBefore(
      `return { tcp: await connect({ host: "127.0.0.1", port: ctx.config.port }) };`,
      { sandbox: { namespaceTool: "unshare", allowNetwork: true } },
      { network: true },
    );
    expect(allowed.value?.tcp).toEqual({ ok: true, value: "hello from the agent" });
  });

  it("refuses to start when network isolation is required but unavailable, leaving nothing behind", async () => {
    const plugin = await writePlugin({ code: "export const before = () => 1;" });
    const dirsBefore = await readdir(workRoot).catch(() => []);
    const err = await PluginProcess.start({
      ...plugin,
      workRoot,
      jobWorkspace: workspace,
      sandbox: { slot: SLOT, requireNetworkIsolation: true, disable: ["namespaces"] },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArcadeError);
    expect((err as ArcadeError).code).toBe(ErrorCode.SANDBOX_UNAVAILABLE);
    expect((err as ArcadeError).message).toMatch(/network isolation is required/);
    expect(await readdir(workRoot).catch(() => [])).toEqual(dirsBefore);
    if (namespaces) {
      const proc = await start({ code: "export const before = () => 1;" }, { sandbox: { requireNetworkIsolation: true } });
      expect(await proc.runStage("before", {}, { id: "j" })).toMatchObject({ ok: true, result: "1" });
    }
  });
});

describe("hostile plugins: the agent", () => {
  it.skipIf(!uidDrop && !namespaces)("cannot signal the agent", async () => {
    const { value } = await runBefore(`
      return {
        kill: await attempt(() => process.kill(ctx.config.agentPid, "SIGTERM")),
        ppid: { ok: true, value: process.ppid },
        killParent: process.ppid === ctx.config.agentPid ? await attempt(() => process.kill(process.ppid, "SIGTERM")) : { ok: false, code: "NOT_THE_AGENT" },
      };
    `);
    expectDenied(value?.kill, [namespaces ? "ESRCH" : "EPERM"]);
    if (namespaces) expect(value?.ppid?.value).not.toBe(process.pid);
    expectDenied(value?.killParent, ["EPERM", "NOT_THE_AGENT"]);
    expect(process.kill(process.pid, 0)).toBe(true); // still here
  });

  it("cannot open the agent's inspector (SIGUSR1, then 127.0.0.1:9229)", async () => {
    const { value } = await runBefore(`
      const usr1 = await attempt(() => process.kill(ctx.config.agentPid, "SIGUSR1"));
      await new Promise((r) => setTimeout(r, 300));
      return {
        usr1,
        connect: await connect({ host: "127.0.0.1", port: 9229 }),
        open: await attempt(async () => (await import("node:inspector")).open(0)),
      };
    `);
    if (uidDrop || namespaces) expectDenied(value?.usr1, [namespaces ? "ESRCH" : "EPERM"]);
    expectDenied(value?.connect, ["ECONNREFUSED", "ENETUNREACH"]);
    if (permissionModel) expectDenied(value?.open, ["ERR_ACCESS_DENIED"]);
    expect(inspector.url()).toBeUndefined();
  });
});

describe("hostile plugins: resources", () => {
  it("busy-loops: the stage timeout kills it", async () => {
    const { outcome } = await runBefore(`for (;;);`, { limits: { stageTimeoutMs: 500 } });
    expect(failed(outcome)).toMatchObject({
      ok: false,
      code: ErrorCode.PLUGIN_TIMEOUT,
      message: "stage before did not finish within 500 ms",
    });
    if (uidDrop) expect(await waitFor(slotIsEmpty)).toBe(true);
  });

  it.skipIf(!rlimits)("busy-loops: the CPU rlimit kills it", async () => {
    const t0 = Date.now();
    const { outcome } = await runBefore(`for (;;);`, { sandbox: { rlimits: { cpuSeconds: 1 } }, limits: { stageTimeoutMs: 60_000 } });
    expect(failed(outcome)).toMatchObject({ ok: false, code: ErrorCode.PLUGIN_FAILED });
    expect(outcome.error?.message).toMatch(/killed by SIGXCPU.*CPU time limit of 1 s/);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("exhausts its heap: a crash with the out-of-memory hint", async () => {
    const { outcome } = await runBefore(`const a = []; for (;;) a.push(new Array(1e5).fill(Math.random()));`, {
      limits: { maxOldSpaceMb: 32 },
    });
    expect(failed(outcome)).toMatchObject({ ok: false, code: ErrorCode.PLUGIN_FAILED });
    expect(outcome.error?.message).toMatch(/out of memory \(heap limit 32 MiB\)/);
  });

  it.skipIf(!rlimits)("allocates off-heap past the data limit: the allocation fails", async () => {
    const { outcome, value } = await runBefore(
      `
      const keep = [];
      const r = await attempt(() => { for (let i = 0; i < 32; i++) keep.push(Buffer.alloc(64 * 1024 * 1024, 1)); });
      return { r, allocated: { ok: true, value: keep.length } };
    `,
      { sandbox: { rlimits: { dataBytes: 768 * 1024 * 1024 } } },
    );
    if (outcome.ok) {
      expect(value?.r?.ok).toBe(false);
      expect(value?.r?.message).toMatch(/allocation failed|Array buffer|memory/i);
      expect(value?.allocated?.value).toBeLessThan(12); // 12 x 64 MiB = the limit, node itself included
    } else {
      expect(outcome.error?.code).toBe(ErrorCode.PLUGIN_FAILED);
    }
  });

  it("floods stdout and stderr: both are capped to their tails", async () => {
    const { proc, outcome } = await runBefore(
      `
      const chunk = "x".repeat(1024 * 1024);
      for (let i = 0; i < 16; i++) { process.stdout.write(chunk); process.stderr.write(chunk); }
      process.stdout.write("END");
      return "done";
    `,
      { limits: { maxOutputBytes: 4096 } },
    );
    expect(outcome).toMatchObject({ ok: true, result: "done" });
    const out = await proc.close();
    expect(out.stdoutTruncated && out.stderrTruncated).toBe(true);
    expect(out.stdout.length).toBeLessThan(4096 + 100);
    expect(out.stderr.length).toBeLessThan(4096 + 100);
    expect(out.stdout.endsWith("END")).toBe(true);
  });

  it.skipIf(!rlimits)("writes a huge file: EFBIG at the file size limit", async () => {
    const { proc, value } = await runBefore(
      `return { write: await attempt(() => fs.writeFileSync("big.bin", Buffer.alloc(4 * 1024 * 1024, 1))) };`,
      { sandbox: { rlimits: { fileBytes: 1024 * 1024 } } },
    );
    expectDenied(value?.write, ["EFBIG"]);
    expect((await stat(path.join(proc.workDir, "big.bin"))).size).toBeLessThanOrEqual(1024 * 1024);
  });
});

describe("hostile plugins: the protocol and its lifecycle", () => {
  it("writes garbage on the protocol fd: PLUGIN_PROTOCOL", async () => {
    const { proc, outcome } = await runBefore(`fs.writeSync(3, "hello agent\\n"); await new Promise(() => {});`);
    expect(failed(outcome)).toMatchObject({ ok: false, code: ErrorCode.PLUGIN_PROTOCOL, message: expect.stringMatching(/non-JSON/) });
    expect(proc.alive).toBe(false);
  });

  it("forges a well-formed message out of turn: PLUGIN_PROTOCOL", async () => {
    const forged = JSON.stringify({ type: "result", stage: "after", ok: true, result: "forged" });
    const { outcome } = await runBefore(`fs.writeSync(3, ${JSON.stringify(forged + "\n")}); await new Promise(() => {});`);
    expect(failed(outcome)).toMatchObject({ ok: false, code: ErrorCode.PLUGIN_PROTOCOL });
  });

  it("sends an oversized message: PLUGIN_PROTOCOL", async () => {
    const { outcome } = await runBefore(`
      const buf = Buffer.alloc(2 * 1024 * 1024, "x");
      for (let off = 0; off < buf.length; ) {
        try { off += fs.writeSync(3, buf, off); } catch (e) { if (e.code !== "EAGAIN") throw e; }
      }
      await new Promise(() => {});
    `);
    expect(failed(outcome)).toMatchObject({
      ok: false,
      code: ErrorCode.PLUGIN_PROTOCOL,
      message: `protocol line longer than ${1024 * 1024} bytes`,
    });
  });

  it("exits mid-stage: PLUGIN_FAILED with its exit code, and no stage after", async () => {
    const { proc, outcome } = await runBefore(`console.error("bye"); process.exit(3);`);
    expect(failed(outcome)).toMatchObject({
      ok: false,
      code: ErrorCode.PLUGIN_FAILED,
      message: "plugin process exited with code 3; stderr: bye",
    });
    expect((await proc.runStage("before", {}, { id: "job-1" })).error?.message).toMatch(/not running/);
  });

  it("hangs in its self-test: PLUGIN_TIMEOUT", async () => {
    const proc = await start(
      { code: "export const before = () => 1; export const selfTest = () => new Promise(() => {});" },
      { limits: { stageTimeoutMs: 500 } },
    );
    expect(proc.hasSelfTest).toBe(true);
    const outcome = await proc.selfTest();
    expect(failed(outcome)).toMatchObject({
      ok: false,
      code: ErrorCode.PLUGIN_TIMEOUT,
      message: "stage selfTest did not finish within 500 ms",
    });
  });
});
