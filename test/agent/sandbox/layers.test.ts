// The sandbox layers as plan rewriters, on a made-up detection report: what each one adds to the
// command, in which order, and how options and the manifest change it. No process is started.

import { describe, expect, it } from "vitest";

import { formatDoctor } from "../../../agent/doctor.js";
import { formatSandboxReport, hostFiles, type SandboxReport } from "../../../agent/sandbox/detect.js";
import { sandboxLayers, type SandboxOptions } from "../../../agent/sandbox/layers.js";
import { describeExit } from "../../../agent/sandbox/process-group.js";
import { TailBuffer } from "../../../agent/sandbox/output.js";
import { BASE_LAYERS, buildSpawnPlan, planCommand, resolveHostScript, resolveLimits } from "../../../agent/sandbox/spawn-plan.js";
import { ArcadeError, ErrorCode } from "../../../signing/errors.js";
import type { PluginManifest } from "../../../signing/manifest.js";

const bwrap = {
  tool: "bwrap" as const,
  path: "/usr/bin/bwrap",
  version: "0.8.0",
  kinds: ["net", "pid", "mount", "ipc", "uts", "user", "cgroup"],
  disableUserns: true,
  tmpfsSize: true,
};
const unshare = {
  tool: "unshare" as const,
  path: "/usr/bin/unshare",
  kinds: ["net", "pid", "ipc", "uts", "mount(proc only)"],
  setpriv: "/usr/bin/setpriv",
};
const hard = { cpu: Infinity, data: Infinity, fsize: Infinity, nofile: 1024, nproc: Infinity };

function fullReport(): SandboxReport {
  return {
    node: { version: "v20.20.2", execPath: "/usr/bin/node" },
    uid: 0,
    layers: {
      permissionModel: { flag: "--experimental-permission", extraFlags: [] },
      rlimits: { prlimit: "/usr/bin/prlimit", hard },
      uidDrop: { base: 61000, slots: 1000 },
      namespaces: bwrap,
    },
    namespaceTools: { bwrap, unshare },
    off: {},
    notes: [],
    detectMs: 1,
  };
}

function bareReport(): SandboxReport {
  return {
    node: { version: "v18.0.0", execPath: "/usr/bin/node" },
    uid: 1000,
    layers: {},
    namespaceTools: {},
    off: {
      "permission-model": "node v18.0.0 has no permission model",
      rlimits: "prlimit not installed (util-linux)",
      "uid-drop": "not root",
      bwrap: "not installed",
      unshare: "not installed (util-linux)",
      namespaces: "bubblewrap: not installed; unshare: not installed (util-linux)",
    },
    notes: [],
    detectMs: 1,
  };
}

const manifest = (network = false): PluginManifest => ({
  schemaVersion: 1,
  id: "test/plugin",
  version: "1.0.0",
  entry: "index.mjs",
  runtime: "node",
  stages: ["before"],
  permissions: { network, env: [], paths: [] },
  description: "",
});

function plan(report: SandboxReport, opts: SandboxOptions = {}, network = false) {
  const ctx = {
    manifest: manifest(network),
    pluginDir: "/var/lib/arcade/cache/downloaded/test/plugin@1.0.0",
    workDir: "/var/lib/arcade/jobs/j1/plugin-abc",
    jobWorkspace: "/var/lib/arcade/jobs/j1/workspace",
    hostScript: resolveHostScript(),
    limits: resolveLimits(),
  };
  const p = buildSpawnPlan(ctx, { PATH: "/usr/bin" }, [...BASE_LAYERS, ...sandboxLayers(report, opts)]);
  return { plan: p, ctx, ...planCommand(p) };
}

describe("sandbox layers", () => {
  it("stacks prlimit, then bwrap, then node with the permission flags, spawned as the slot's uid", () => {
    const { plan: p, ctx, command, args } = plan(fullReport(), { slot: 3 });
    expect(command).toBe("/usr/bin/prlimit");
    expect([p.uid, p.gid]).toEqual([61003, 61003]);
    const seps = args.flatMap((a, i) => (a === "--" ? [i] : []));
    expect(seps).toHaveLength(2);
    expect(args.slice(0, seps[0])).toEqual([
      `--cpu=900:901`,
      `--data=${1024 ** 3}`,
      `--fsize=${256 * 1024 ** 2}`,
      "--nofile=256",
      "--core=0",
      "--nproc=512",
    ]);
    const bw = args.slice(seps[0]! + 1, seps[1]);
    expect(bw[0]).toBe("/usr/bin/bwrap");
    expect(bw).toEqual(
      expect.arrayContaining(["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]),
    );
    expect(bw).not.toContain("--share-net");
    const pairs = (op: string) => bw.flatMap((a, i) => (a === op ? [bw[i + 1]] : []));
    expect(pairs("--ro-bind")).toEqual(expect.arrayContaining(["/usr", ctx.pluginDir, ctx.hostScript]));
    expect(pairs("--bind")).toEqual([ctx.workDir, ctx.jobWorkspace].sort((a, b) => a.split("/").length - b.split("/").length));
    expect(bw.slice(-2)).toEqual(["--chdir", ctx.workDir]);
    const node = args.slice(seps[1]! + 1);
    expect(node[0]).toBe(process.execPath);
    expect(node.at(-1)).toBe(ctx.hostScript);
    expect(node).toEqual(
      expect.arrayContaining([
        "--max-old-space-size=256",
        "--experimental-permission",
        `--allow-fs-read=${ctx.hostScript}`,
        `--allow-fs-read=${ctx.pluginDir}`,
        `--allow-fs-read=${ctx.jobWorkspace}`,
        `--allow-fs-read=${ctx.workDir}`,
        `--allow-fs-write=${ctx.workDir}`,
        `--allow-fs-write=${ctx.jobWorkspace}`,
      ]),
    );
    expect(node.filter((a) => /^--allow-(child-process|worker|addons|wasi|inspector)/.test(a))).toEqual([]);
    expect(p.exit).toEqual({ signalsAsCodes: true, cpuSeconds: 900, dataBytes: 1024 ** 3, fileBytes: 256 * 1024 ** 2 });
  });

  it("shares the network only when the manifest asks and the policy allows", () => {
    const shared = (opts: SandboxOptions, network: boolean) => plan(fullReport(), opts, network).args.includes("--share-net");
    expect(shared({ allowNetwork: true }, true)).toBe(true);
    expect(shared({ allowNetwork: true }, false)).toBe(false);
    expect(shared({ allowNetwork: false }, true)).toBe(false);
    expect(shared({}, true)).toBe(false);
  });

  it("with unshare, drops the uid inside with setpriv under a shell init, spawned as the agent", () => {
    const { plan: p, args } = plan(fullReport(), { namespaceTool: "unshare", slot: 1 });
    expect(p.uid).toBeUndefined();
    const i = args.indexOf("/usr/bin/unshare");
    expect(args.slice(i, i + 9)).toEqual([
      "/usr/bin/unshare",
      "--pid",
      "--fork",
      "--kill-child",
      "--mount-proc",
      "--ipc",
      "--uts",
      "--net",
      "--",
    ]);
    expect(args).toEqual(
      expect.arrayContaining(["/usr/bin/setpriv", "--reuid=61001", "--regid=61001", "--clear-groups", "--no-new-privs"]),
    );
    expect(args).toEqual(expect.arrayContaining(["/bin/sh", "-c", '"$@"; exit $?', "arcade-init"]));
    expect(plan(fullReport(), { namespaceTool: "unshare", allowNetwork: true }, true).args).not.toContain("--net");
  });

  it("leaves out disabled layers and caps rlimits at the agent's own hard limits", () => {
    const { plan: p, command } = plan(fullReport(), { disable: ["uid-drop", "namespaces"], rlimits: { openFiles: 4096 } });
    expect(p.uid).toBeUndefined();
    expect(command).toBe("/usr/bin/prlimit");
    expect(p.wrapper).toContain("--nofile=1024");
    expect(p.wrapper.some((a) => a.startsWith("--nproc"))).toBe(false); // no own uid: no thread cap
    expect(p.wrapper).not.toContain("/usr/bin/bwrap");
    const bare = plan(fullReport(), { disable: ["permission-model", "rlimits", "uid-drop", "namespaces"] });
    expect(bare.command).toBe(process.execPath);
    expect(bare.plan.nodeFlags).toEqual(["--max-old-space-size=256"]);
  });

  it("fails closed when network isolation is required and no namespace layer exists", () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as ArcadeError;
      }
      throw new Error("did not throw");
    };
    const e1 = err(() => sandboxLayers(bareReport(), { requireNetworkIsolation: true }));
    expect(e1.code).toBe(ErrorCode.SANDBOX_UNAVAILABLE);
    expect(e1.message).toMatch(/bubblewrap: not installed/);
    expect(err(() => sandboxLayers(fullReport(), { requireNetworkIsolation: true, disable: ["namespaces"] })).code).toBe(
      ErrorCode.SANDBOX_UNAVAILABLE,
    );
    expect(err(() => sandboxLayers(bareReport(), { namespaceTool: "bwrap" })).code).toBe(ErrorCode.SANDBOX_UNAVAILABLE);
    expect(sandboxLayers(bareReport(), {})).toEqual([]);
    expect(err(() => sandboxLayers(fullReport(), { slot: 1000 })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(err(() => sandboxLayers(fullReport(), { slot: -1 })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(err(() => sandboxLayers(fullReport(), { rlimits: { cpuSeconds: 0 } })).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(err(() => sandboxLayers(fullReport(), { rlimits: { dataBytes: 512 * 1024 * 1024 } })).message).toMatch(/at least 768 MiB/);
  });

  it("formats the report as one line, and the doctor as a few", () => {
    expect(formatSandboxReport(fullReport())).toBe(
      "sandbox: process+env, permission-model(--experimental-permission), rlimits(prlimit), uid-drop(61000+slot), " +
        "namespaces(bwrap: net,pid,mount,ipc,uts,user,cgroup), network: denied by default",
    );
    expect(formatSandboxReport(bareReport())).toBe(
      "sandbox: process+env, permission-model: off (node v18.0.0 has no permission model), " +
        "rlimits: off (prlimit not installed (util-linux)), uid-drop: off (not root), " +
        "namespaces: off (bubblewrap: not installed; unshare: not installed (util-linux)), network: NOT isolated",
    );
    const doctor = formatDoctor(bareReport());
    expect(doctor).toMatch(/OFF {2}namespaces: off .*install bubblewrap/);
    expect(doctor).toMatch(/network: NOT isolated/);
    expect(formatDoctor(fullReport())).toMatch(/fallback unshare: works/);
  });

  it("finds the host's run-time imports", () => {
    const files = hostFiles(resolveHostScript()).map((f) => f.split("/").pop());
    expect(files).toEqual(["plugin-host.js", "protocol.js"]);
  });

  it("explains exits reported as 128+N by a wrapper", () => {
    const limits = resolveLimits({ maxOldSpaceMb: 64 });
    const empty = new TailBuffer(100);
    const hints = { signalsAsCodes: true, cpuSeconds: 5, dataBytes: 1024 ** 3, fileBytes: 1024 ** 2 };
    expect(describeExit(152, null, limits, empty, hints)).toBe(
      "plugin process was killed by SIGXCPU (exit code 152): it used up its CPU time limit of 5 s",
    );
    expect(describeExit(134, null, limits, empty, hints)).toMatch(/out of memory \(heap limit 64 MiB\)/);
    expect(describeExit(139, null, limits, empty, hints)).toMatch(/killed by SIGSEGV .*data size limit \(1024 MiB\)/);
    expect(describeExit(137, null, limits, empty, {})).toBe("plugin process exited with code 137");
    expect(describeExit(null, "SIGXCPU", limits, empty, { cpuSeconds: 5 })).toBe(
      "plugin process was killed by SIGXCPU: it used up its CPU time limit of 5 s",
    );
  });
});
