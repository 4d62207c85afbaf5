// Real child processes running small plugins written at test time. Needs the compiled host in
// dist/ (`npm test` builds it in pretest).

import { mkdtemp, readdir, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { LineDecoder, LineTooLongError, truncateUtf8 } from "../../../agent/sandbox/protocol.js";
import { TailBuffer } from "../../../agent/sandbox/output.js";
import {
  BASE_LAYERS,
  DEFAULT_SANDBOX_LIMITS,
  disableInspectorActivation,
  PluginProcess,
  type PluginProcessOptions,
} from "../../../agent/sandbox/runner.js";
import { sandboxEnv } from "../../../agent/sandbox/spawn-plan.js";
import { ArcadeError, ErrorCode } from "../../../signing/errors.js";
import type { PluginManifest, StageName } from "../../../signing/manifest.js";

let root: string;
let workRoot: string;
let workspace: string;
const open: PluginProcess[] = [];
let counter = 0;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "arcade-runner-test-"));
  workRoot = path.join(root, "work");
  workspace = path.join(root, "workspace");
  await mkdir(workspace);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface PluginSpec {
  code: string;
  stages?: StageName[];
  entry?: string;
  id?: string;
  files?: Record<string, string>;
}

async function writePlugin(spec: PluginSpec): Promise<{ pluginDir: string; manifest: PluginManifest }> {
  const pluginDir = path.join(root, `plugin-${++counter}`);
  await mkdir(pluginDir);
  const manifest: PluginManifest = {
    schemaVersion: 1,
    id: spec.id ?? "test/plugin",
    version: "1.0.0",
    entry: spec.entry ?? "index.mjs",
    runtime: "node",
    stages: spec.stages ?? ["before"],
    permissions: { network: false, env: [], paths: [] },
    description: "test plugin",
  };
  await writeFile(path.join(pluginDir, "manifest.json"), JSON.stringify(manifest));
  await writeFile(path.join(pluginDir, manifest.entry), spec.code);
  for (const [name, text] of Object.entries(spec.files ?? {})) await writeFile(path.join(pluginDir, name), text);
  return { pluginDir, manifest };
}

async function start(spec: PluginSpec, opts: Partial<PluginProcessOptions> = {}): Promise<PluginProcess> {
  const plugin = await writePlugin(spec);
  const proc = await PluginProcess.start({ ...plugin, workRoot, jobWorkspace: workspace, ...opts });
  open.push(proc);
  return proc;
}

async function startError(spec: PluginSpec, opts: Partial<PluginProcessOptions> = {}): Promise<ArcadeError> {
  const err = await start(spec, opts).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArcadeError);
  return err as ArcadeError;
}

function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
}

// A killed grandchild is reparented and reaped by init; until then kill(pid, 0) still finds it.
async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
    if (!exists(pid)) return true;
  }
  return false;
}

const hang = "await new Promise(() => {})";
const job = { id: "job-1" };

describe("PluginProcess", () => {
  it("runs all four stages and passes config, job, plugin identity and logs", async () => {
    const proc = await start({
      stages: ["before", "after", "on_success", "on_failure"],
      code: `
        export async function before(ctx) {
          ctx.log("starting " + ctx.stage);
          ctx.log("second line");
          return { config: ctx.config, job: ctx.job, plugin: ctx.plugin };
        }
        export const after = async (ctx) => "after:" + ctx.job.status;
        export const on_success = async (ctx) => ({ status: ctx.job.status });
        export const on_failure = async () => undefined;
      `,
    });
    expect(proc.stages).toEqual(["before", "after", "on_success", "on_failure"]);

    const before = await proc.runStage("before", { channel: "#ci", n: 3 }, job);
    expect(before.ok).toBe(true);
    expect(JSON.parse(before.result!)).toEqual({
      config: { channel: "#ci", n: 3 },
      job: { id: "job-1", workspace },
      plugin: { id: "test/plugin", version: "1.0.0" },
    });
    expect(before.logs).toEqual(["starting before", "second line"]);
    expect(before.completedAt).toBeGreaterThanOrEqual(before.startedAt);

    expect(await proc.runStage("on_success", {}, job)).toMatchObject({ ok: true, result: '{"status":"succeeded"}' });
    expect(await proc.runStage("on_failure", {}, job)).toMatchObject({ ok: true, result: null });
    expect(await proc.runStage("after", {}, { ...job, status: "failed" })).toMatchObject({ ok: true, result: "after:failed" });
  });

  it("loads handlers from a CommonJS module and from a default export", async () => {
    const cjs = await start({ entry: "main.cjs", code: `module.exports = { before: async (ctx) => "cjs " + ctx.config.x };` });
    expect(await cjs.runStage("before", { x: 1 }, job)).toMatchObject({ ok: true, result: "cjs 1" });
    const def = await start({ code: `export default { name: "default", async before() { return this.name; } };` });
    expect(await def.runStage("before", {}, job)).toMatchObject({ ok: true, result: "default" });
  });

  it("fails a throwing stage with its message and keeps the process usable", async () => {
    const proc = await start({
      stages: ["before", "after"],
      code: `
        export async function before() { throw new Error("cannot reach slack"); }
        export function after(ctx) { setTimeout(() => { throw new Error("late boom"); }, 1); return new Promise(() => {}); }
      `,
    });
    const failed = await proc.runStage("before", {}, job);
    expect(failed).toMatchObject({ ok: false, result: null, error: { code: ErrorCode.PLUGIN_FAILED, message: "cannot reach slack" } });
    // An uncaught error in plugin code fails the running stage instead of hanging it.
    const stray = await proc.runStage("after", {}, { ...job, status: "succeeded" });
    expect(stray.error).toEqual({ code: ErrorCode.PLUGIN_FAILED, message: "uncaught exception: late boom" });
    expect(proc.alive).toBe(true);
  });

  it("times out a hanging stage and kills the whole process group", async () => {
    // The group kill itself, without the sandbox layers (they forbid starting the grandchild).
    const proc = await start(
      {
        code: `
          import { spawn } from "node:child_process";
          export async function before(ctx) {
            const child = spawn("sleep", ["1000"], { stdio: "ignore" });
            ctx.log(String(child.pid));
            ${hang};
          }
        `,
      },
      { limits: { stageTimeoutMs: 500 }, layers: BASE_LAYERS },
    );
    const outcome = await proc.runStage("before", {}, job);
    expect(outcome.ok).toBe(false);
    expect(outcome.error?.code).toBe(ErrorCode.PLUGIN_TIMEOUT);
    expect(outcome.completedAt - outcome.startedAt).toBeLessThan(3000);
    const grandchild = Number(outcome.logs[0]);
    expect(grandchild).toBeGreaterThan(0);
    expect(() => process.kill(proc.pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
    expect(await waitGone(grandchild)).toBe(true);

    const later = await proc.runStage("before", {}, job);
    expect(later.ok).toBe(false);
    expect(later.error?.message).toMatch(/not running.*PLUGIN_TIMEOUT/);
    expect(later.completedAt - later.startedAt).toBeLessThan(100);
  });

  it("fails a running stage when the plugin is closed under it", async () => {
    // The plugin says it is inside the stage by writing a marker; the test waits for that, not a time.
    const marker = path.join(workspace, `running-${counter + 1}`);
    const proc = await start({
      code: `export async function before() {
        await (await import("node:fs/promises")).writeFile(${JSON.stringify(marker)}, "");
        ${hang};
      }`,
    });
    const running = proc.runStage("before", {}, job);
    for (const until = Date.now() + 10_000; !fs.existsSync(marker) && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
    expect(fs.existsSync(marker)).toBe(true);
    await proc.close();
    const outcome = await running;
    expect(outcome.error).toEqual({ code: ErrorCode.PLUGIN_FAILED, message: "the plugin was closed while a stage was running" });
    expect(exists(proc.pid)).toBe(false);
  });

  it("kills a plugin that writes a non-JSON line on the protocol fd", async () => {
    const proc = await start({
      code: `import fs from "node:fs"; export async function before() { fs.writeSync(3, "hello agent\\n"); ${hang}; }`,
    });
    const outcome = await proc.runStage("before", {}, job);
    expect(outcome.error?.code).toBe(ErrorCode.PLUGIN_PROTOCOL);
    expect(outcome.error?.message).toMatch(/non-JSON/);
    expect(exists(proc.pid)).toBe(false);
  });

  it("kills a plugin that writes a line over the 1 MiB cap", async () => {
    const proc = await start({
      code: `
        import fs from "node:fs";
        export async function before() {
          // fd 3 is non-blocking in the host, so retry partial writes until the agent kills us.
          const buf = Buffer.alloc(2 * 1024 * 1024, "x");
          for (let off = 0; off < buf.length; ) {
            try { off += fs.writeSync(3, buf, off); } catch (e) { if (e.code !== "EAGAIN") throw e; }
          }
          ${hang};
        }
      `,
    });
    const outcome = await proc.runStage("before", {}, job);
    expect(outcome.error).toEqual({ code: ErrorCode.PLUGIN_PROTOCOL, message: `protocol line longer than ${1024 * 1024} bytes` });
  });

  it("reports a plugin that exits mid-stage, then refuses further stages", async () => {
    const proc = await start({
      stages: ["before", "after"],
      code: `export async function before() { console.error("bye"); process.exit(3); } export async function after() { return 1; }`,
    });
    const outcome = await proc.runStage("before", {}, job);
    expect(outcome.ok).toBe(false);
    expect(outcome.error?.code).toBe(ErrorCode.PLUGIN_FAILED);
    expect(outcome.error?.message).toMatch(/exited with code 3; stderr: bye/);
    const later = await proc.runStage("after", {}, { ...job, status: "failed" });
    expect(later).toMatchObject({ ok: false, error: { code: ErrorCode.PLUGIN_FAILED } });
  });

  it("caps captured stdout, keeping the tail", async () => {
    const proc = await start(
      {
        code: `export async function before() { process.stdout.write("x".repeat(1024 * 1024)); process.stdout.write("END"); return "ok"; }`,
      },
      { limits: { maxOutputBytes: 4096 } },
    );
    expect(await proc.runStage("before", {}, job)).toMatchObject({ ok: true, result: "ok" });
    const out = await proc.close();
    expect(out.stdoutTruncated).toBe(true);
    expect(out.stdout).toMatch(/^\[\.\.\. \d+ earlier bytes truncated \.\.\.\]\n/);
    expect(out.stdout.slice(-20)).toBe(`${"x".repeat(17)}END`);
    expect(out.stdout.length).toBeLessThan(4096 + 100);
  });

  it("caps results and log lines", async () => {
    const proc = await start(
      { code: `export async function before(ctx) { for (let i = 0; i < 20; i++) ctx.log("line " + i); return "y".repeat(200_000); }` },
      { limits: { maxLogLines: 5 } },
    );
    const outcome = await proc.runStage("before", {}, job);
    expect(Buffer.byteLength(outcome.result!)).toBeLessThanOrEqual(DEFAULT_SANDBOX_LIMITS.maxResultBytes);
    expect(outcome.result!.endsWith("\n[truncated]")).toBe(true);
    expect(outcome.logs).toEqual(["line 0", "line 1", "line 2", "line 3", "line 4", "[15 more log lines dropped]"]);
  });

  it("gives the plugin only the allowlisted environment", async () => {
    process.env.ARCADE_TEST_SECRET = "s3cret-token";
    try {
      const proc = await start({ code: `export async function before() { return process.env; }` }, { env: { SLACK_CHANNEL: "#builds" } });
      const result = (await proc.runStage("before", {}, job)).result!;
      expect(result).not.toContain("s3cret-token");
      const env = JSON.parse(result) as Record<string, string>;
      // bwrap always sets PWD to the directory it starts the plugin in: the work dir.
      expect(Object.keys(env).filter((k) => !["PATH", "HOME", "TMPDIR", "LANG", "TZ", "SLACK_CHANNEL", "PWD"].includes(k))).toEqual([]);
      expect(env).toMatchObject({ HOME: proc.workDir, TMPDIR: proc.workDir, SLACK_CHANNEL: "#builds" });
      if (env.PWD !== undefined) expect(env.PWD).toBe(proc.workDir);
    } finally {
      delete process.env.ARCADE_TEST_SECRET;
    }
    const bad = await startError({ code: "export const before = () => 1;" }, { env: { NODE_OPTIONS: "--require=/x.js" } });
    expect(bad.code).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it("makes a fresh 0700 work dir used as cwd and removes it on close", async () => {
    const proc = await start({ code: `export async function before() { return process.cwd(); }` });
    expect(path.dirname(proc.workDir)).toBe(workRoot);
    expect((await stat(proc.workDir)).mode & 0o777).toBe(0o700);
    expect((await proc.runStage("before", {}, job)).result).toBe(proc.workDir);
    await proc.close();
    await expect(stat(proc.workDir)).rejects.toMatchObject({ code: "ENOENT" });
    expect(exists(proc.pid)).toBe(false);
  });

  it("runs the optional selfTest handler", async () => {
    const withTest = await start({ code: `export const before = () => 1; export const selfTest = async () => "healthy";` });
    expect(withTest.hasSelfTest).toBe(true);
    expect(await withTest.selfTest()).toMatchObject({ ok: true, result: "healthy" });
    const without = await start({ code: `export const before = () => 1;` });
    expect(await without.selfTest()).toMatchObject({ ok: true, result: null });
  });

  it("reports a heap over the limit as a crash with a memory hint", async () => {
    const proc = await start(
      { code: `export async function before() { const a = []; for (;;) a.push(new Array(1e5).fill(Math.random())); }` },
      { limits: { maxOldSpaceMb: 32 } },
    );
    const outcome = await proc.runStage("before", {}, job);
    expect(outcome.error?.code).toBe(ErrorCode.PLUGIN_FAILED);
    expect(outcome.error?.message).toMatch(/out of memory \(heap limit 32 MiB\)/);
  });
});

describe("PluginProcess handshake", () => {
  it("refuses a plugin whose manifest id differs from the expected one", async () => {
    const plugin = await writePlugin({ code: `export const before = () => 1;` });
    const before = await readdir(workRoot).catch(() => []);
    const err = await PluginProcess.start({
      ...plugin,
      manifest: { ...plugin.manifest, id: "test/other" },
      workRoot,
      jobWorkspace: workspace,
    }).catch((e: unknown) => e as ArcadeError);
    expect(err).toBeInstanceOf(ArcadeError);
    expect((err as ArcadeError).code).toBe(ErrorCode.PLUGIN_PROTOCOL);
    expect((err as ArcadeError).message).toMatch(/test\/plugin@1\.0\.0, the agent expected test\/other@1\.0\.0/);
    // The failed start leaves no work dir behind.
    expect(await readdir(workRoot)).toEqual(before);
  });

  it("refuses a module missing a declared stage", async () => {
    const err = await startError({ stages: ["before", "on_failure"], code: `export const before = () => 1;` });
    expect(err.code).toBe(ErrorCode.PLUGIN_PROTOCOL);
    expect(err.message).toMatch(/stage\(s\) on_failure/);
  });

  it("refuses a hello that does not echo the nonce", async () => {
    const forged = JSON.stringify({
      type: "hello",
      protocol: 1,
      nonce: "guess",
      id: "test/plugin",
      version: "1.0.0",
      stages: ["before"],
      selfTest: false,
    });
    const err = await startError({
      code: `import fs from "node:fs"; fs.writeSync(3, ${JSON.stringify(forged + "\n")}); export const before = () => 1;`,
    });
    expect(err.code).toBe(ErrorCode.PLUGIN_PROTOCOL);
    expect(err.message).toMatch(/nonce/);
  });

  it("reports a module that throws while loading, with its stderr", async () => {
    const err = await startError({ code: `console.error("loading..."); throw new Error("missing dependency");` });
    expect(err.code).toBe(ErrorCode.PLUGIN_PROTOCOL);
    expect(err.message).toMatch(/missing dependency/);
    expect(err.details).toMatchObject({ pluginId: "test/plugin", stderr: expect.stringContaining("loading...") });
  });

  it("times out a module that never finishes loading", async () => {
    const t0 = Date.now();
    const err = await startError({ code: `${hang}; export const before = () => 1;` }, { limits: { handshakeTimeoutMs: 500 } });
    expect(err.code).toBe(ErrorCode.PLUGIN_TIMEOUT);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe("sandbox helpers", () => {
  it("splits lines and rejects an overlong line before it ends", () => {
    const d = new LineDecoder(10);
    expect(d.push(Buffer.from('{"a":1}\n{"b"'))).toEqual(['{"a":1}']);
    expect(d.push(Buffer.from(":2}\n"))).toEqual(['{"b":2}']);
    expect(() => d.push(Buffer.from("x".repeat(11)))).toThrow(LineTooLongError);
  });

  it("keeps the tail of output", () => {
    const t = new TailBuffer(5);
    t.push(Buffer.from("abc"));
    t.push(Buffer.from("defg"));
    expect(t.text()).toBe("[... 2 earlier bytes truncated ...]\ncdefg");
    expect(t.truncated).toBe(true);
  });

  it("truncates UTF-8 on a character boundary", () => {
    expect(truncateUtf8("héllo", 2)).toBe("h");
    expect(truncateUtf8("abc", 10)).toBe("abc");
  });

  it("builds the environment from an allowlist only", () => {
    const env = sandboxEnv("/w", { X: "1" }, { PATH: "/bin", LANG: "C.UTF-8", SECRET: "no", NODE_OPTIONS: "--inspect" });
    expect(env).toEqual({ PATH: "/bin", LANG: "C.UTF-8", X: "1", HOME: "/w", TMPDIR: "/w" });
    expect(() => sandboxEnv("/w", { HOME: "/root" })).toThrow(/HOME/);
    expect(() => sandboxEnv("/w", { LD_PRELOAD: "/x.so" })).toThrow(/LD_PRELOAD/);
  });

  it("stops SIGUSR1 from opening the inspector", () => {
    const guard = new URL("../../../dist/agent/sandbox/process-group.js", import.meta.url).href;
    const script = `
      import inspector from "node:inspector";
      import { disableInspectorActivation } from ${JSON.stringify(guard)};
      disableInspectorActivation();
      process.kill(process.pid, "SIGUSR1");
      setTimeout(() => console.log(String(inspector.url())), 300);
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(out.trim()).toBe("undefined");
  });

  it("installs one SIGUSR1 listener", () => {
    disableInspectorActivation();
    disableInspectorActivation();
    const n = process.listenerCount("SIGUSR1");
    disableInspectorActivation();
    expect(process.listenerCount("SIGUSR1")).toBe(n);
    expect(n).toBeGreaterThan(0);
  });
});
