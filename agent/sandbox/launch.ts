// Starting a plugin's child process: a fresh 0700 work dir, the allowlisted environment, the
// spawn plan after every isolation layer (the base layer plus the sandbox layers detection found
// working, see layers.ts), and the spawn itself. No protocol here (runner.ts).

import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";

import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import type { PluginManifest } from "../../signing/manifest.js";
import { detectSandbox } from "./detect.js";
import { sandboxLayers, type SandboxOptions } from "./layers.js";
import { disableInspectorActivation } from "./process-group.js";
import {
  BASE_LAYERS,
  buildSpawnPlan,
  planCommand,
  resolveHostScript,
  sandboxEnv,
  type SandboxLimits,
  type SpawnLayer,
  type SpawnPlan,
} from "./spawn-plan.js";

export interface PluginProcessOptions {
  pluginDir: string;
  manifest: PluginManifest;
  /** Parent directory under which this process's fresh 0700 work dir is made. */
  workRoot: string;
  jobWorkspace: string;
  /** Extra environment variables on top of the allowlist (PATH, HOME, TMPDIR, LANG, TZ). */
  env?: Record<string, string>;
  limits?: Partial<SandboxLimits>;
  /**
   * Isolation layers rewriting the spawn, used exactly as given (no sandbox detection). By default
   * the base layer (heap cap) followed by every sandbox layer that works here, per `sandbox`.
   */
  layers?: readonly SpawnLayer[];
  /** Sandbox policy: slot (uid), network, fail-closed isolation, rlimits. Ignored with `layers`. */
  sandbox?: SandboxOptions;
}

export async function launch(
  opts: PluginProcessOptions,
  limits: SandboxLimits,
): Promise<{ child: ChildProcess; workDir: string; plan: SpawnPlan }> {
  for (const [name, dir] of [
    ["pluginDir", opts.pluginDir],
    ["workRoot", opts.workRoot],
    ["jobWorkspace", opts.jobWorkspace],
  ] as const) {
    if (!path.isAbsolute(dir)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${name} must be an absolute path`);
  }
  const hostScript = resolveHostScript();
  // Before the work dir exists: a sandbox that cannot be had (fail closed) leaves nothing behind.
  const layers = opts.layers ?? [...BASE_LAYERS, ...sandboxLayers(await detectSandbox(), opts.sandbox)];
  disableInspectorActivation();
  await mkdir(opts.workRoot, { recursive: true, mode: 0o700 });
  const workDir = await mkdtemp(path.join(opts.workRoot, "plugin-"));
  try {
    await chmod(workDir, 0o700); // mkdtemp already uses 0700; the sandbox relies on it, so make it explicit
    const env = sandboxEnv(workDir, opts.env);
    const ctx = { manifest: opts.manifest, pluginDir: opts.pluginDir, workDir, jobWorkspace: opts.jobWorkspace, hostScript, limits };
    for (const layer of layers) await layer.prepare?.(ctx);
    const plan = buildSpawnPlan(ctx, env, layers);
    const { command, args } = planCommand(plan);
    const child = spawn(command, args, {
      cwd: plan.cwd,
      env: plan.env,
      uid: plan.uid,
      gid: plan.gid,
      // fd 3 carries the protocol; stdout and stderr are only ever logs.
      stdio: ["ignore", "pipe", "pipe", "pipe"],
      // Its own process group, so one kill(-pid) reaches everything the plugin started.
      detached: true,
    });
    if (child.pid === undefined) {
      const err = await new Promise<Error>((r) => child.once("error", r));
      throw new ArcadeError(ErrorCode.INTERNAL, `cannot start plugin process: ${err.message}`);
    }
    return { child, workDir, plan };
  } catch (e) {
    await rm(workDir, { recursive: true, force: true });
    throw e;
  }
}
