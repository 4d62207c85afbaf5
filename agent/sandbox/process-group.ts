// Process-level plumbing shared by every plugin process: killing a plugin's whole process group,
// remembering live groups so an exiting agent takes them down, and the agent's SIGUSR1 guard.

import type { SandboxLimits } from "./spawn-plan.js";
import type { TailBuffer } from "./output.js";

/**
 * Keeps a plugin from opening the agent's inspector. On Linux, SIGUSR1 to a Node process starts
 * its inspector on 127.0.0.1:9229, where any local process can run code as the agent, secrets
 * and all. Installing any listener turns that activation off. The agent's main calls this at
 * start-up; PluginProcess.start() calls it too, so no plugin runs without it.
 */
export function disableInspectorActivation(): void {
  if (!process.listeners("SIGUSR1").includes(ignoreSignal)) process.on("SIGUSR1", ignoreSignal);
}
function ignoreSignal(): void {}

/** SIGKILLs every process in the group led by `pid`; a group already gone is not an error. */
export function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
  }
}

// Detached children outlive the agent, so groups still running when the agent exits are killed
// here. (A SIGKILLed agent cannot do this; the pid-namespace layer will cover that case.)
const liveGroups = new Set<number>();
let exitHookInstalled = false;

export function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const g of liveGroups) killGroup(g);
    });
  }
}

export function untrackGroup(pid: number): void {
  liveGroups.delete(pid);
}

/** Why the plugin process ended, with a hint for the limits that end it that way. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null, limits: SandboxLimits, stderr: TailBuffer): string {
  let what: string;
  if (signal === "SIGABRT" || code === 134) {
    what = `plugin process aborted; it most likely ran out of memory (heap limit ${limits.maxOldSpaceMb} MiB)`;
  } else if (signal) {
    what = `plugin process was killed by ${signal}`;
  } else {
    what = `plugin process exited with code ${code}`;
  }
  const last = stderr.tail(512).trim();
  return last ? `${what}; stderr: ${last}` : what;
}
