// Which sandbox layers work on this machine, found once per agent process by actually running
// node under each (a flag Node accepts, or a binary that exists, is not proof that it works:
// Docker's seccomp profile, AppArmor and sysctls turn namespaces off in ways only a try shows).
// The report says which layers are active and, for each one that is not, why.

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";

import { bwrapArgs, unshareWrapper } from "./layers.js";
import { resolveHostScript } from "./spawn-plan.js";

export type SandboxLayerName = "permission-model" | "rlimits" | "uid-drop" | "namespaces";
export const SANDBOX_LAYER_NAMES: readonly SandboxLayerName[] = ["permission-model", "rlimits", "uid-drop", "namespaces"];

/** Slot n runs its plugins as uid and gid SLOT_UID_BASE + n; the ids need no /etc/passwd entry. */
export const SLOT_UID_BASE = 61000;
export const MAX_SLOTS = 1000;

/** Hard limits of the agent itself: a child can lower a limit but not raise it past these. */
export interface HardLimits {
  cpu: number;
  data: number;
  fsize: number;
  nofile: number;
  nproc: number;
}

export interface NamespaceTool {
  tool: "bwrap" | "unshare";
  path: string;
  version?: string;
  /** The namespaces a plugin gets when its network is denied. */
  kinds: string[];
  /** bwrap: supports --disable-userns (no nested user namespaces) and --size for its tmpfs. */
  disableUserns?: boolean;
  tmpfsSize?: boolean;
  /** unshare as root: the uid drop happens inside, with setpriv. */
  setpriv?: string;
  /** unshare run unprivileged: its user namespace maps the agent's own uid. */
  mapCurrentUser?: boolean;
}

export interface SandboxReport {
  node: { version: string; execPath: string };
  /** The agent's uid. */
  uid: number;
  /** The active layers (PluginProcess.start uses every one unless told otherwise). */
  layers: {
    permissionModel?: { flag: "--permission" | "--experimental-permission"; extraFlags: string[] };
    rlimits?: { prlimit: string; hard: HardLimits };
    uidDrop?: { base: number; slots: number };
    namespaces?: NamespaceTool;
  };
  /** Every namespace tool that works, so a caller can pick the other one. */
  namespaceTools: { bwrap?: NamespaceTool; unshare?: NamespaceTool };
  /** Why a layer, or one namespace tool, is not available. */
  off: Partial<Record<SandboxLayerName | "bwrap" | "unshare", string>>;
  /** Things worth knowing that do not switch a layer off. */
  notes: string[];
  /** The plugin host and the files it imports at run time (what the sandbox must let it read). */
  host?: { script: string; files: string[]; packageJson?: string };
  detectMs: number;
}

let cached: Promise<SandboxReport> | undefined;

/** Detects once per process; later calls return the same report. */
export function detectSandbox(): Promise<SandboxReport> {
  cached ??= detect();
  return cached;
}

/** Forgets the cached report (tests, or after installing bubblewrap). */
export function resetSandboxDetection(): void {
  cached = undefined;
}

const PROBE_TIMEOUT_MS = 10_000;

async function detect(): Promise<SandboxReport> {
  const t0 = performance.now();
  const node = process.execPath;
  const uid = process.getuid?.() ?? -1;
  const report: SandboxReport = {
    node: { version: process.version, execPath: node },
    uid,
    layers: {},
    namespaceTools: {},
    off: {},
    notes: [],
    detectMs: 0,
  };
  try {
    const script = resolveHostScript();
    report.host = { script, files: hostFiles(script), packageJson: packageScope(script) };
  } catch (e) {
    report.notes.push(`plugin host: ${(e as Error).message}`);
  }
  if (process.platform !== "linux") {
    for (const name of ["rlimits", "uid-drop", "namespaces"] as const) report.off[name] = `not Linux (${process.platform})`;
  }
  const linux = process.platform === "linux";

  const [perm, rlimits, uidDrop] = await Promise.all([
    detectPermissionModel(node),
    linux ? detectRlimits(node) : undefined,
    linux ? detectUidDrop(node, uid, report.host?.script) : undefined,
  ]);
  if ("off" in perm) report.off["permission-model"] = perm.off;
  else report.layers.permissionModel = perm;
  if (rlimits) {
    if ("off" in rlimits) report.off.rlimits = rlimits.off;
    else report.layers.rlimits = rlimits;
  }
  if (uidDrop) {
    if ("off" in uidDrop) report.off["uid-drop"] = uidDrop.off;
    else report.layers.uidDrop = uidDrop;
  }

  if (linux) {
    const runAs = report.layers.uidDrop ? SLOT_UID_BASE : undefined;
    const [bwrap, unshare] = await Promise.all([detectBwrap(node, runAs, report.host), detectUnshare(node, uid, runAs)]);
    if ("off" in bwrap) report.off.bwrap = bwrap.off;
    else report.namespaceTools.bwrap = bwrap;
    if ("off" in unshare) report.off.unshare = unshare.off;
    else report.namespaceTools.unshare = unshare;
    report.layers.namespaces = report.namespaceTools.bwrap ?? report.namespaceTools.unshare;
    if (!report.layers.namespaces) report.off.namespaces = `bubblewrap: ${report.off.bwrap}; unshare: ${report.off.unshare}`;
  }
  if (report.layers.uidDrop) report.notes.push(...slotCollisions());
  report.detectMs = Math.round(performance.now() - t0);
  return report;
}

// ---------------------------------------------------------------------------------------------
// Probes

interface ProbeResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  error?: string;
}

function probe(command: string, args: string[], o: { uid?: number; gid?: number } = {}): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    const child = spawn(command, args, {
      cwd: "/",
      env: { PATH: process.env.PATH || "/usr/local/bin:/usr/bin:/bin" },
      stdio: ["ignore", "pipe", "pipe"],
      uid: o.uid,
      gid: o.gid,
      detached: true,
    });
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, PROBE_TIMEOUT_MS);
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr, error: e.message });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** One line saying why a probe failed. */
function why(r: ProbeResult): string {
  if (r.error) return r.error;
  const last = r.stderr.trim().split("\n").filter(Boolean).pop()?.slice(0, 200);
  const status = r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
  return last ? `${status}: ${last}` : status;
}

/** An executable named `name` on PATH (or the usual system dirs), as an absolute path. */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (!path.isAbsolute(dir)) continue;
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** The permission flag of this node: `--permission` from 22.13/23.5, `--experimental-permission` on 20. */
export function permissionFlag(): "--permission" | "--experimental-permission" | undefined {
  const flags = process.allowedNodeEnvironmentFlags;
  if (flags.has("--permission")) return "--permission";
  if (flags.has("--experimental-permission")) return "--experimental-permission";
  return undefined;
}

// Reading node's own binary must fail with ERR_ACCESS_DENIED: the flag is honoured, not just accepted.
const DENIAL_CHECK =
  "try { require('fs').readFileSync(process.execPath); process.exit(3) } catch (e) { process.exit(e.code === 'ERR_ACCESS_DENIED' ? 0 : 4) }";

/** Why a layer or tool is not available. */
type Off = { off: string };
type Layers = SandboxReport["layers"];

async function detectPermissionModel(node: string): Promise<NonNullable<Layers["permissionModel"]> | Off> {
  const flag = permissionFlag();
  if (!flag) return { off: `node ${process.version} has no permission model` };
  // On 20 every run prints an ExperimentalWarning to the plugin's stderr; the plugin's logs are
  // more useful without it.
  const extraFlags =
    flag === "--experimental-permission" && process.allowedNodeEnvironmentFlags.has("--disable-warning")
      ? ["--disable-warning=ExperimentalWarning"]
      : [];
  const r = await probe(node, [flag, ...extraFlags, "-e", DENIAL_CHECK]);
  if (r.code !== 0) return { off: `${flag} does not deny reads (${why(r)})` };
  return { flag, extraFlags };
}

function readHardLimits(): HardLimits {
  const limits: HardLimits = { cpu: Infinity, data: Infinity, fsize: Infinity, nofile: Infinity, nproc: Infinity };
  const rows: [keyof HardLimits, string][] = [
    ["cpu", "Max cpu time"],
    ["data", "Max data size"],
    ["fsize", "Max file size"],
    ["nofile", "Max open files"],
    ["nproc", "Max processes"],
  ];
  let text = "";
  try {
    text = readFileSync("/proc/self/limits", "utf8");
  } catch {
    return limits;
  }
  for (const line of text.split("\n")) {
    for (const [key, label] of rows) {
      if (!line.startsWith(label)) continue;
      const hard = line.slice(label.length).trim().split(/\s+/)[1];
      if (hard && hard !== "unlimited" && /^\d+$/.test(hard)) limits[key] = Number(hard);
    }
  }
  return limits;
}

async function detectRlimits(node: string): Promise<NonNullable<Layers["rlimits"]> | Off> {
  const prlimit = findProgram("prlimit");
  if (!prlimit) return { off: "prlimit not installed (util-linux)" };
  const hard = readHardLimits();
  const r = await probe(prlimit, [`--nofile=${Math.min(256, hard.nofile)}`, "--core=0", "--", node, "-e", "0"]);
  if (r.code !== 0) return { off: `prlimit does not work (${why(r)})` };
  return { prlimit, hard };
}

async function detectUidDrop(node: string, uid: number, hostScript: string | undefined): Promise<NonNullable<Layers["uidDrop"]> | Off> {
  if (uid !== 0) return { off: "not root" };
  // Running the real host as the slot uid proves node, the host's files and its package.json are
  // all reachable by that uid; without fd 3 it exits 2 with a known message.
  const args = hostScript ? [hostScript] : ["-e", "process.exit(2)"];
  const r = await probe(node, args, { uid: SLOT_UID_BASE, gid: SLOT_UID_BASE });
  if (r.code === 2 && (!hostScript || r.stderr.includes("is not open"))) return { base: SLOT_UID_BASE, slots: MAX_SLOTS };
  const blocked = await firstBlockedDir([node, ...(hostScript ? [hostScript] : [])], SLOT_UID_BASE);
  const detail = blocked ? `${blocked} is not searchable by uid ${SLOT_UID_BASE}` : why(r);
  return { off: `uid ${SLOT_UID_BASE} cannot run node and the plugin host (${detail})` };
}

/** The first ancestor directory of the given files that `uid` (not in any group) cannot search. */
async function firstBlockedDir(files: string[], uid: number): Promise<string | undefined> {
  for (const file of files) {
    let dir = path.dirname(file);
    const chain: string[] = [];
    for (;;) {
      chain.unshift(dir);
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
    for (const d of chain) {
      const st = await stat(d).catch(() => undefined);
      if (!st) continue;
      const bit = st.uid === uid ? 0o100 : st.gid === uid ? 0o010 : 0o001;
      if (!(st.mode & bit)) return `${d} (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")})`;
    }
  }
  return undefined;
}

// Exits 5 when the probe sees any network interface but loopback: the net namespace is real.
const NET_CHECK = "process.exit(Object.keys(require('os').networkInterfaces()).some((n) => n !== 'lo') ? 5 : 0)";

async function detectBwrap(node: string, runAs: number | undefined, host: SandboxReport["host"]): Promise<NamespaceTool | Off> {
  const bwrap = findProgram("bwrap");
  if (!bwrap) return { off: "not installed" };
  const help = await probe(bwrap, ["--help"]);
  const version = (await probe(bwrap, ["--version"])).stdout.trim().replace(/^bubblewrap\s*/, "") || undefined;
  const tool: NamespaceTool = {
    tool: "bwrap",
    path: bwrap,
    ...(version ? { version } : {}),
    kinds: ["net", "pid", "mount", "ipc", "uts", "user", "cgroup"],
    disableUserns: help.stdout.includes("--disable-userns"),
    tmpfsSize: help.stdout.includes("--size"),
  };
  const args = bwrapArgs(tool, {
    network: false,
    node,
    readOnly: host ? [...host.files, ...(host.packageJson ? [host.packageJson] : [])] : [],
    readWrite: [],
    cwd: "/",
  });
  const ids = runAs === undefined ? {} : { uid: runAs, gid: runAs };
  const r = await probe(bwrap, [...args, "--", node, "-e", NET_CHECK], ids);
  if (r.code !== 0) {
    const as = runAs === undefined ? "" : ` as uid ${runAs}`;
    return { off: r.code === 5 ? `no network isolation${as}` : `fails${as} (${why(r)})` };
  }
  return tool;
}

async function detectUnshare(node: string, uid: number, runAs: number | undefined): Promise<NamespaceTool | Off> {
  const unshare = findProgram("unshare");
  if (!unshare) return { off: "not installed (util-linux)" };
  if (!existsSync("/bin/sh")) return { off: "no /bin/sh to run as the namespace's init" };
  const tool: NamespaceTool = { tool: "unshare", path: unshare, kinds: ["net", "pid", "ipc", "uts", "mount(proc only)"] };
  if (uid === 0 && runAs !== undefined) {
    const setpriv = findProgram("setpriv");
    if (!setpriv) return { off: "setpriv (util-linux) is needed to drop the uid inside it" };
    tool.setpriv = setpriv;
  } else if (uid !== 0) {
    const help = await probe(unshare, ["--help"]);
    tool.mapCurrentUser = help.stdout.includes("--map-current-user");
    tool.kinds.push("user");
  }
  const wrapper = unshareWrapper(tool, { network: false, uid: runAs, gid: runAs });
  const [command, ...args] = wrapper;
  const r = await probe(command!, [...args, node, "-e", NET_CHECK]);
  if (r.code !== 0) return { off: r.code === 5 ? "no network isolation" : `fails (${why(r)})` };
  return tool;
}

/** Slot uids that belong to a real account: plugins would share files and signals with it. */
function slotCollisions(): string[] {
  let text = "";
  try {
    text = readFileSync("/etc/passwd", "utf8");
  } catch {
    return [];
  }
  const notes: string[] = [];
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    const n = Number(id);
    if (name && Number.isInteger(n) && n >= SLOT_UID_BASE && n < SLOT_UID_BASE + MAX_SLOTS) {
      notes.push(`uid ${n} (slot ${n - SLOT_UID_BASE}) belongs to user ${name} in /etc/passwd: do not use that slot`);
    }
  }
  return notes;
}

// ---------------------------------------------------------------------------------------------
// What the plugin host reads at run time

const RELATIVE_IMPORT = /(?:^|[;\s])(?:import|export)\s(?:[^"';]*?\sfrom\s*)?["'](\.{1,2}\/[^"']+)["']/g;

/** The host script and every file it imports by a relative static import, transitively. */
export function hostFiles(script: string): string[] {
  const seen = new Set<string>();
  const queue = [path.resolve(script)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const m of readFileSync(file, "utf8").matchAll(RELATIVE_IMPORT)) queue.push(path.resolve(path.dirname(file), m[1]!));
  }
  return [...seen].sort();
}

/** The package.json that decides whether the host's .js files are ES modules (node reads it). */
export function packageScope(script: string): string | undefined {
  for (let dir = path.dirname(path.resolve(script)); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "package.json");
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting

/** Each layer as one short phrase, on or off, in the order they are applied. */
export function describeLayers(r: SandboxReport): { name: string; on: boolean; text: string }[] {
  const { permissionModel, rlimits, uidDrop, namespaces } = r.layers;
  const ns = namespaces ? `${namespaces.tool}: ${namespaces.kinds.join(",")}` : undefined;
  return [
    { name: "process+env", on: true, text: "process+env" },
    permissionModel
      ? { name: "permission-model", on: true, text: `permission-model(${permissionModel.flag})` }
      : { name: "permission-model", on: false, text: `permission-model: off (${r.off["permission-model"]})` },
    rlimits
      ? { name: "rlimits", on: true, text: "rlimits(prlimit)" }
      : { name: "rlimits", on: false, text: `rlimits: off (${r.off.rlimits})` },
    uidDrop
      ? { name: "uid-drop", on: true, text: `uid-drop(${uidDrop.base}+slot)` }
      : { name: "uid-drop", on: false, text: `uid-drop: off (${r.off["uid-drop"]})` },
    ns
      ? { name: "namespaces", on: true, text: `namespaces(${ns})` }
      : { name: "namespaces", on: false, text: `namespaces: off (${r.off.namespaces})` },
  ];
}

/**
 * One line for the agent's start-up log, e.g. `sandbox: process+env, permission-model(--permission),
 * rlimits(prlimit), uid-drop(61000+slot), namespaces(bwrap: net,pid,...), network: denied by default`.
 */
export function formatSandboxReport(r: SandboxReport): string {
  const network = r.layers.namespaces ? "network: denied by default" : "network: NOT isolated";
  return `sandbox: ${describeLayers(r)
    .map((l) => l.text)
    .join(", ")}, ${network}`;
}
