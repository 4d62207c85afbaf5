// How a plugin process is started, as data: a SpawnPlan that isolation layers rewrite in turn.
// The base layer caps the heap; the sandbox layers of layers.ts (Node's permission model,
// prlimit, a uid drop, bwrap/unshare) are more SpawnLayers: node flags go in `nodeFlags`, wrapper
// programs that exec node in `wrapper`, ids in `uid`/`gid`, and a layer that must change the
// filesystem first (chown the work dir...) does it in `prepare`.

import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import type { PluginManifest } from "../../signing/manifest.js";

export interface SandboxLimits {
  handshakeTimeoutMs: number;
  /** Wall-clock limit of one stage, from sending `run` to its `result`. */
  stageTimeoutMs: number;
  /** How long close() waits for a clean exit before killing the process group. */
  shutdownTimeoutMs: number;
  /** Longest protocol line accepted on fd 3; a longer one kills the plugin. */
  maxMessageBytes: number;
  /** Tail of stdout and of stderr kept, each. */
  maxOutputBytes: number;
  maxOldSpaceMb: number;
  /** ctx.log lines kept per stage; later ones are counted and dropped. */
  maxLogLines: number;
  /** Step result cap: longer results are cut and marked. */
  maxResultBytes: number;
  maxLogMessageBytes: number;
}

export const DEFAULT_SANDBOX_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  handshakeTimeoutMs: 10_000,
  stageTimeoutMs: 300_000,
  shutdownTimeoutMs: 5_000,
  maxMessageBytes: 1024 * 1024,
  maxOutputBytes: 64 * 1024,
  maxOldSpaceMb: 256,
  maxLogLines: 1000,
  maxResultBytes: 64 * 1024,
  maxLogMessageBytes: 8 * 1024,
});

export function resolveLimits(overrides: Partial<SandboxLimits> = {}): SandboxLimits {
  const limits = { ...DEFAULT_SANDBOX_LIMITS, ...overrides };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `sandbox limit ${key} must be a positive integer, got ${value}`);
    }
  }
  // A capped result must still fit in one line once JSON-escaped (up to 6 bytes per byte: \u0000).
  if (limits.maxMessageBytes < Math.max(limits.maxResultBytes, limits.maxLogMessageBytes) * 6 + 1024) {
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "sandbox limit maxMessageBytes is too small for maxResultBytes");
  }
  return limits;
}

export interface SpawnContext {
  manifest: PluginManifest;
  pluginDir: string;
  workDir: string;
  jobWorkspace: string;
  hostScript: string;
  limits: SandboxLimits;
}

export interface SpawnPlan {
  /** Programs run before node, each exec-ing the rest (e.g. prlimit ..., bwrap ...). */
  wrapper: string[];
  node: string;
  nodeFlags: string[];
  script: string;
  env: Record<string, string>;
  cwd: string;
  uid?: number;
  gid?: number;
  /** What the runner needs to explain an exit; set by the layers that change how a process ends. */
  exit?: ExitHints;
}

export interface ExitHints {
  /** A wrapper (bwrap, the unshare init) reports a child killed by signal N as exit code 128+N. */
  signalsAsCodes?: boolean;
  cpuSeconds?: number;
  dataBytes?: number;
  fileBytes?: number;
}

export interface SpawnLayer {
  readonly name: string;
  /** Runs before `apply`, once per process, after the work dir exists (e.g. chown it). */
  prepare?(ctx: SpawnContext): Promise<void>;
  apply(plan: SpawnPlan, ctx: SpawnContext): SpawnPlan;
}

export const heapLayer: SpawnLayer = {
  name: "heap-limit",
  apply: (plan, ctx) => ({ ...plan, nodeFlags: [...plan.nodeFlags, `--max-old-space-size=${ctx.limits.maxOldSpaceMb}`] }),
};

export const BASE_LAYERS: readonly SpawnLayer[] = [heapLayer];

// Names a caller's extra map may not set: HOME/TMPDIR point at the work dir, and NODE_*/LD_*
// change how node itself starts (NODE_OPTIONS=--require, LD_PRELOAD), which no plugin may decide.
const RESERVED_ENV = /^(HOME|TMPDIR|NODE_.*|LD_.*)$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The child's whole environment: an allowlist, never a copy of the agent's (it holds secrets). */
export function sandboxEnv(workDir: string, extra: Record<string, string> = {}, agentEnv = process.env) {
  const env: Record<string, string> = { PATH: agentEnv.PATH || "/usr/local/bin:/usr/bin:/bin" };
  if (agentEnv.LANG) env.LANG = agentEnv.LANG;
  if (agentEnv.TZ) env.TZ = agentEnv.TZ;
  for (const [name, value] of Object.entries(extra)) {
    if (!ENV_NAME.test(name) || RESERVED_ENV.test(name)) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `environment variable ${name} may not be passed to a plugin`);
    }
    if (typeof value !== "string" || value.includes("\0")) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `environment variable ${name} must be a string without NUL`);
    }
    env[name] = value;
  }
  env.HOME = workDir;
  env.TMPDIR = workDir;
  return env;
}

export function buildSpawnPlan(ctx: SpawnContext, env: Record<string, string>, layers = BASE_LAYERS): SpawnPlan {
  const base: SpawnPlan = { wrapper: [], node: process.execPath, nodeFlags: [], script: ctx.hostScript, env, cwd: ctx.workDir };
  return layers.reduce((plan, layer) => layer.apply(plan, ctx), base);
}

export function planCommand(plan: SpawnPlan): { command: string; args: string[] } {
  const [command, ...rest] = [...plan.wrapper, plan.node, ...plan.nodeFlags, plan.script];
  return { command: command!, args: rest };
}

/**
 * The compiled plugin host. Built code finds it beside this file. Under vitest this file is the
 * .ts source, and plain node 20 cannot run a .ts host, so we use the build output in
 * <repo>/dist instead (`npm test` builds it first in `pretest`); it may be stale if sources
 * changed since the last build.
 */
export function resolveHostScript(): string {
  const here = fileURLToPath(import.meta.url);
  const script = here.endsWith(".ts")
    ? path.resolve(path.dirname(here), "../../dist/agent/sandbox/plugin-host.js")
    : path.join(path.dirname(here), "plugin-host.js");
  if (!existsSync(script)) {
    throw new ArcadeError(ErrorCode.INTERNAL, `plugin host ${script} is missing; run \`npm run build\` first`);
  }
  return script;
}
