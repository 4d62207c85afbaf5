// The sandbox layers, each a SpawnLayer that rewrites the plan of one plugin process, applied in
// this order on top of the base layer (heap cap):
//
//   permission-model  node --permission/--experimental-permission: reads of the host's own files,
//                     the plugin dir, the work dir and the job workspace; writes to the last two;
//                     no child processes, workers, addons, WASI or inspector. A seat belt, not a
//                     boundary (Node says so): the layers below are what contain a plugin.
//   rlimits           prlimit as a wrapper: CPU seconds, data size, file size, open files, no core
//                     dumps, and a thread/process cap when the plugin has a uid of its own.
//   uid-drop          as root: uid and gid 61000+slot, a fresh work dir owned by it, the workspace
//                     shared with it through its group.
//   namespaces        bwrap (a private filesystem view, pid/net/ipc/uts/user/cgroup namespaces, no
//                     nested user namespaces) or else unshare (net, pid, ipc, uts, its own /proc)
//                     with setpriv for the uid drop. The network is unshared unless the manifest
//                     asks for it and the agent's policy allows it.
//
// sandboxLayers() picks every layer detectSandbox() found working unless told otherwise.

import { chmod, chown, readdir, readFile, realpath, stat } from "node:fs/promises";
import { lstatSync, readlinkSync } from "node:fs";
import path from "node:path";

import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import {
  MAX_SLOTS,
  SLOT_UID_BASE,
  hostFiles,
  packageScope,
  type HardLimits,
  type NamespaceTool,
  type SandboxLayerName,
  type SandboxReport,
} from "./detect.js";
import type { SpawnContext, SpawnLayer, SpawnPlan } from "./spawn-plan.js";

export interface RlimitOptions {
  /** CPU time of the plugin process over its whole life (all its stages), in seconds. */
  cpuSeconds: number;
  /** RLIMIT_DATA: heap, mmap'd memory and array buffers (address space limits break node). */
  dataBytes: number;
  /** Largest file the plugin may write; a bigger write fails with EFBIG. */
  fileBytes: number;
  openFiles: number;
}

export const DEFAULT_RLIMITS: Readonly<RlimitOptions> = Object.freeze({
  cpuSeconds: 900,
  dataBytes: 1024 * 1024 * 1024,
  fileBytes: 256 * 1024 * 1024,
  openFiles: 256,
});

/**
 * Below this RLIMIT_DATA node cannot start: measured, node 24 aborts (SIGTRAP) under 576 MiB
 * whatever its heap size; node 20 starts with 128 MiB.
 */
export const MIN_DATA_BYTES = 768 * 1024 * 1024;

/**
 * Threads and processes of one slot's uid, all its plugins together (RLIMIT_NPROC counts the
 * threads of every process of the real uid; node needs about 11, bwrap 2). Not set without a uid
 * drop: the agent's own uid has other processes, and root ignores the limit.
 */
export const SLOT_NPROC = 512;

export interface SandboxOptions {
  /** Concurrency slot: the plugin runs as uid/gid 61000+slot when the agent is root. Default 0. */
  slot?: number;
  /** Agent policy: a plugin whose manifest asks for the network may have it. Default false. */
  allowNetwork?: boolean;
  /** Refuse to start a plugin (SANDBOX_UNAVAILABLE) when no namespace layer can cut its network. */
  requireNetworkIsolation?: boolean;
  rlimits?: Partial<RlimitOptions>;
  /** Layers to leave out even though they work (diagnosis, benchmarks). */
  disable?: readonly SandboxLayerName[];
  /** Use this namespace tool; by default bwrap, else unshare. */
  namespaceTool?: "bwrap" | "unshare";
}

/** The sandbox layers for one plugin process, per the detection report and the options. */
export function sandboxLayers(report: SandboxReport, opts: SandboxOptions = {}): SpawnLayer[] {
  const slot = opts.slot ?? 0;
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_SLOTS) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `sandbox slot must be an integer from 0 to ${MAX_SLOTS - 1}, got ${slot}`);
  }
  const rlimits = { ...DEFAULT_RLIMITS, ...opts.rlimits };
  for (const [key, value] of Object.entries(rlimits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `sandbox rlimit ${key} must be a positive integer, got ${value}`);
    }
  }
  if (rlimits.dataBytes < MIN_DATA_BYTES) {
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      `sandbox rlimit dataBytes must be at least ${MIN_DATA_BYTES / 1024 / 1024} MiB (node 24 needs about 580 MiB to start), got ${rlimits.dataBytes}`,
    );
  }
  for (const name of opts.disable ?? []) {
    if (!["permission-model", "rlimits", "uid-drop", "namespaces"].includes(name)) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `unknown sandbox layer ${name}`);
    }
  }
  const on = (name: SandboxLayerName) => !(opts.disable ?? []).includes(name);
  const { layers: found } = report;

  let ns: NamespaceTool | undefined;
  if (on("namespaces")) {
    if (opts.namespaceTool) {
      ns = report.namespaceTools[opts.namespaceTool];
      if (!ns) {
        const reason = report.off[opts.namespaceTool] ?? "not detected";
        throw new ArcadeError(ErrorCode.SANDBOX_UNAVAILABLE, `namespace tool ${opts.namespaceTool} is not available: ${reason}`);
      }
    } else {
      ns = found.namespaces;
    }
  }
  if (opts.requireNetworkIsolation && !ns) {
    const reason = on("namespaces") ? (report.off.namespaces ?? "not detected") : "the namespaces layer is disabled";
    throw new ArcadeError(
      ErrorCode.SANDBOX_UNAVAILABLE,
      `network isolation is required but no namespace layer is available (${reason}); install bubblewrap`,
    );
  }

  const layers: SpawnLayer[] = [];
  if (found.permissionModel && on("permission-model")) layers.push(permissionModelLayer(found.permissionModel));
  const uid = found.uidDrop && on("uid-drop") ? found.uidDrop.base + slot : undefined;
  if (found.rlimits && on("rlimits")) layers.push(rlimitLayer(found.rlimits.prlimit, rlimits, found.rlimits.hard, uid !== undefined));
  if (uid !== undefined) layers.push(uidDropLayer(uid, uid));
  if (ns) {
    const network = (ctx: SpawnContext) => opts.allowNetwork === true && ctx.manifest.permissions.network === true;
    layers.push(ns.tool === "bwrap" ? bwrapLayer(ns, network) : unshareLayer(ns, network));
  }
  return layers;
}

// ---------------------------------------------------------------------------------------------
// permission-model

const hostFileCache = new Map<string, string[]>();
function cachedHostFiles(script: string): string[] {
  let files = hostFileCache.get(script);
  if (!files) hostFileCache.set(script, (files = hostFiles(script)));
  return files;
}

export function permissionModelLayer(pm: { flag: string; extraFlags: readonly string[] }): SpawnLayer {
  return {
    name: `permission-model(${pm.flag})`,
    apply(plan, ctx) {
      // Node 20 does not let the entry script read itself: the host's files are granted one by one.
      const reads = [...cachedHostFiles(ctx.hostScript), ctx.pluginDir, ctx.jobWorkspace, ctx.workDir];
      const writes = [ctx.workDir, ctx.jobWorkspace];
      const flags = [
        pm.flag,
        ...pm.extraFlags,
        ...reads.map((p) => `--allow-fs-read=${p}`),
        ...writes.map((p) => `--allow-fs-write=${p}`),
        // Never --allow-child-process, --allow-worker, --allow-addons, --allow-wasi, --allow-inspector.
      ];
      return { ...plan, nodeFlags: [...plan.nodeFlags, ...flags] };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// rlimits

export function rlimitLayer(prlimit: string, limits: RlimitOptions, hard: HardLimits, ownUid: boolean): SpawnLayer {
  // A child may lower its limits but never raise them past the agent's hard limits.
  const cap = (value: number, max: number) => Math.min(value, max);
  // SIGXCPU at the soft limit says what happened; SIGKILL a second later if it is ignored.
  const cpuSoft = cap(limits.cpuSeconds, hard.cpu);
  const cpuHard = cap(limits.cpuSeconds + 1, hard.cpu);
  const data = cap(limits.dataBytes, hard.data);
  const fsize = cap(limits.fileBytes, hard.fsize);
  const args = [
    prlimit,
    `--cpu=${cpuSoft}:${cpuHard}`,
    `--data=${data}`,
    `--fsize=${fsize}`,
    `--nofile=${cap(limits.openFiles, hard.nofile)}`,
    "--core=0",
    ...(ownUid ? [`--nproc=${cap(SLOT_NPROC, hard.nproc)}`] : []),
    "--",
  ];
  return {
    name: "rlimits(prlimit)",
    apply: (plan) => ({
      ...plan,
      wrapper: [...plan.wrapper, ...args],
      exit: { ...plan.exit, cpuSeconds: cpuSoft, dataBytes: data, fileBytes: fsize },
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// uid-drop

/**
 * Runs the plugin as `uid`/`gid`. The work dir becomes its own (0700). The job workspace stays
 * owned by the agent but is handed to the slot's group, mode 2770: the plugin can create and
 * change files there, the job's commands (run by the agent) still own it, and the setgid bit keeps
 * what they create in the slot's group. The plugin dir only needs to be readable: its files are
 * 0444/0555 in 0755 dirs, but its top dir is the 0700 extraction dir, so it gets o+rx. Every
 * ancestor of the three must be searchable by the uid: the agent's own dirs get o+x (search, never
 * read); an ancestor the agent does not own that blocks the uid is an error.
 */
export function uidDropLayer(uid: number, gid: number): SpawnLayer {
  return {
    name: `uid-drop(${uid})`,
    async prepare(ctx) {
      for (const dir of [ctx.workDir, ctx.jobWorkspace, ctx.pluginDir]) await ensureAncestorsSearchable(dir, uid, gid);
      await chown(ctx.workDir, uid, gid);
      await chmod(ctx.workDir, 0o700);
      const ws = await stat(ctx.jobWorkspace);
      if (ws.uid !== uid && (ws.gid !== gid || (ws.mode & 0o7770) !== 0o2770)) {
        await chown(ctx.jobWorkspace, ws.uid, gid);
        await chmod(ctx.jobWorkspace, 0o2770);
      }
      const pd = await stat(ctx.pluginDir);
      if (!canAccess(pd, uid, gid, 0o5)) {
        if (pd.uid !== process.getuid?.()) {
          throw new ArcadeError(ErrorCode.SANDBOX_UNAVAILABLE, `uid drop: uid ${uid} cannot read the plugin dir ${ctx.pluginDir}`);
        }
        await chmod(ctx.pluginDir, (pd.mode & 0o7777) | 0o005);
      }
    },
    apply: (plan) => ({ ...plan, uid, gid }),
  };
}

/** Whether `uid` (with `gid` and no supplementary groups) has all of `bits` (rwx = 4/2/1). */
function canAccess(st: { uid: number; gid: number; mode: number }, uid: number, gid: number, bits: number): boolean {
  const shift = st.uid === uid ? 6 : st.gid === gid ? 3 : 0;
  return ((st.mode >> shift) & bits) === bits;
}

async function ensureAncestorsSearchable(target: string, uid: number, gid: number): Promise<void> {
  const me = process.getuid?.();
  // Both the path as given and its real path: a symlink on the way is followed through both.
  for (const p of new Set([path.resolve(target), await realpath(target)])) {
    for (let dir = path.dirname(p); ; dir = path.dirname(dir)) {
      const st = await stat(dir);
      if (!canAccess(st, uid, gid, 0o1)) {
        if (st.uid !== me) {
          throw new ArcadeError(
            ErrorCode.SANDBOX_UNAVAILABLE,
            `uid drop: uid ${uid} cannot reach ${target}: ${dir} (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}) blocks it`,
          );
        }
        await chmod(dir, (st.mode & 0o7777) | 0o001);
      }
      if (path.dirname(dir) === dir) break;
    }
  }
}

/**
 * SIGKILLs every process whose real or effective uid is the slot's. Only meaningful with the uid
 * drop: the slot's uid then belongs to plugins alone. Without a pid namespace, a plugin that can
 * start processes can setsid() one out of its process group; calling this after the last plugin
 * process of a job has closed takes such leftovers down. Returns how many processes it killed.
 */
export async function killSlotProcesses(slot: number, base = SLOT_UID_BASE): Promise<number> {
  const uid = base + slot;
  let killed = 0;
  // A process may fork while we scan; go again until a pass finds nothing.
  for (let pass = 0; pass < 10; pass++) {
    const pids = await processesOfUid(uid);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
        killed++;
      } catch {
        // gone already
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return killed;
}

/** Pids whose real or effective uid is `uid`, from /proc (Linux). */
export async function processesOfUid(uid: number): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const status = await readFile(`/proc/${name}/status`, "utf8").catch(() => "");
    const m = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
    // A zombie is already dead; it only waits for its parent to reap it.
    if (m && (Number(m[1]) === uid || Number(m[2]) === uid) && !/^State:\s+Z/m.test(status)) pids.push(Number(name));
  }
  return pids;
}

// ---------------------------------------------------------------------------------------------
// namespaces: bwrap

const TMPFS_BYTES = 64 * 1024 * 1024;
// What node itself may need from /etc: time zone always; name resolution and CAs with the network.
const ETC_ALWAYS = ["/etc/localtime"];
const ETC_NETWORK = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/gai.conf",
  "/etc/host.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
];

let systemDirArgs: string[] | undefined;
/** /bin, /lib... as on the host: symlinks into /usr on merged-/usr systems, else read-only binds. */
function systemDirs(): string[] {
  if (systemDirArgs) return systemDirArgs;
  const args: string[] = [];
  for (const dir of ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]) {
    try {
      const st = lstatSync(dir);
      if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(dir), dir);
      else if (st.isDirectory()) args.push("--ro-bind", dir, dir);
    } catch {
      // absent on this system
    }
  }
  return (systemDirArgs = args);
}

export interface BwrapView {
  network: boolean;
  node: string;
  readOnly: readonly string[];
  readWrite: readonly string[];
  cwd: string;
}

/** bwrap's arguments up to (not including) the `--` before the command. */
export function bwrapArgs(tool: NamespaceTool, view: BwrapView): string[] {
  const args = ["--unshare-all", "--unshare-user"];
  if (view.network) args.push("--share-net");
  if (tool.disableUserns) args.push("--disable-userns");
  args.push("--hostname", "arcade-plugin", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", ...systemDirs());
  for (const p of [...ETC_ALWAYS, ...(view.network ? ETC_NETWORK : [])]) args.push("--ro-bind-try", p, p);
  args.push("--proc", "/proc", "--dev", "/dev");
  if (tool.tmpfsSize) args.push("--size", String(TMPFS_BYTES));
  args.push("--tmpfs", "/tmp");
  const binds: [string, string][] = [
    ...(view.node.startsWith("/usr/") ? [] : [["--ro-bind", view.node] as [string, string]]),
    ...view.readOnly.map((p) => ["--ro-bind", p] as [string, string]),
    ...view.readWrite.map((p) => ["--bind", p] as [string, string]),
  ];
  // Parents before children, so a nested bind is not hidden by its parent's.
  const depth = (p: string) => p.split("/").length;
  binds.sort((a, b) => depth(a[1]) - depth(b[1]));
  for (const [op, p] of binds) args.push(op, p, p);
  args.push("--chdir", view.cwd);
  return args;
}

export function bwrapLayer(tool: NamespaceTool, network: (ctx: SpawnContext) => boolean): SpawnLayer {
  return {
    name: "namespaces(bwrap)",
    apply(plan, ctx) {
      const pkg = packageScope(ctx.hostScript);
      const args = bwrapArgs(tool, {
        network: network(ctx),
        node: plan.node,
        readOnly: [...cachedHostFiles(ctx.hostScript), ...(pkg ? [pkg] : []), ctx.pluginDir],
        readWrite: [ctx.workDir, ctx.jobWorkspace],
        cwd: plan.cwd,
      });
      // Spawned as the plugin's uid (plan.uid, if any): bwrap then builds an unprivileged user
      // namespace, so the plugin is that uid outside too, with no capabilities and no_new_privs.
      return { ...plan, wrapper: [...plan.wrapper, tool.path, ...args, "--"], exit: { ...plan.exit, signalsAsCodes: true } };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// namespaces: unshare

// Node as pid 1 of a pid namespace ignores signals it has no handler for, so an abort() on a full
// heap turns into a SIGSEGV and the CPU limit's SIGXCPU is lost: a shell is the namespace's init
// instead, and reports a child killed by signal N as exit code 128+N, like bwrap.
const INIT = ["/bin/sh", "-c", '"$@"; exit $?', "arcade-init"];

/** unshare [setpriv] sh, ready for node and its arguments to be appended. */
export function unshareWrapper(tool: NamespaceTool, o: { network: boolean; uid?: number | undefined; gid?: number | undefined }): string[] {
  const ns = ["--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", ...(o.network ? [] : ["--net"])];
  if (tool.mapCurrentUser !== undefined) ns.push(tool.mapCurrentUser ? "--map-current-user" : "--map-root-user");
  const drop =
    o.uid !== undefined && tool.setpriv
      ? [
          tool.setpriv,
          `--reuid=${o.uid}`,
          `--regid=${o.gid ?? o.uid}`,
          "--clear-groups",
          "--no-new-privs",
          "--inh-caps=-all",
          "--bounding-set=-all",
          "--",
        ]
      : [];
  return [tool.path, ...ns, "--", ...drop, ...INIT];
}

export function unshareLayer(tool: NamespaceTool, network: (ctx: SpawnContext) => boolean): SpawnLayer {
  return {
    name: "namespaces(unshare)",
    apply(plan: SpawnPlan, ctx) {
      if (plan.uid !== undefined && !tool.setpriv) {
        throw new ArcadeError(ErrorCode.SANDBOX_UNAVAILABLE, "unshare cannot drop the uid here (setpriv was not detected)");
      }
      // unshare needs root's CAP_SYS_ADMIN: it starts as the agent, setpriv drops the uid inside.
      const wrapper = unshareWrapper(tool, { network: network(ctx), uid: plan.uid, gid: plan.gid });
      return {
        ...plan,
        wrapper: [...plan.wrapper, ...wrapper],
        uid: undefined,
        gid: undefined,
        exit: { ...plan.exit, signalsAsCodes: true },
      };
    },
  };
}
