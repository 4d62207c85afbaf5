// Process-level plumbing shared by every plugin process: killing a plugin's whole process group,
// remembering live groups so an exiting agent takes them down, and the agent's SIGUSR1 guard.

import { constants } from "node:os";

import type { ExitHints, SandboxLimits } from "./spawn-plan.js";
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
// here. (A SIGKILLed agent cannot do this; bwrap's --die-with-parent and the pid namespace do.)
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
export function describeExit(
  code: number | null,
  signal: NodeJS.Signals | null,
  limits: SandboxLimits,
  stderr: TailBuffer,
  hints: ExitHints = {},
): string {
  // bwrap and the unshare layer's init report "killed by signal N" as exit code 128+N.
  const byCode = hints.signalsAsCodes && code !== null && code > 128 && code < 128 + 65 ? signalName(code - 128) : undefined;
  const sig = signal ?? byCode;
  const how = signal ? `killed by ${signal}` : byCode ? `killed by ${byCode} (exit code ${code})` : `exited with code ${code}`;
  let what: string;
  if (sig === "SIGABRT" || code === 134) {
    what = `plugin process aborted; it most likely ran out of memory (heap limit ${limits.maxOldSpaceMb} MiB)`;
  } else if (sig === "SIGXCPU") {
    const limit = hints.cpuSeconds !== undefined ? ` of ${hints.cpuSeconds} s` : "";
    what = `plugin process was ${how}: it used up its CPU time limit${limit}`;
  } else if (sig === "SIGKILL" && hints.cpuSeconds !== undefined) {
    // SIGXCPU comes first; SIGKILL a second later only if the plugin handled that.
    what = `plugin process was ${how} (the kernel's out-of-memory killer, or the CPU time hard limit of ${hints.cpuSeconds + 1} s)`;
  } else if (sig === "SIGSEGV" && hints.dataBytes !== undefined) {
    what = `plugin process was ${how}; it may have hit the data size limit (${mib(hints.dataBytes)} MiB)`;
  } else if (sig === "SIGXFSZ") {
    const limit = hints.fileBytes !== undefined ? ` (${mib(hints.fileBytes)} MiB)` : "";
    what = `plugin process was ${how}: it wrote a file over the size limit${limit}`;
  } else if (sig) {
    what = `plugin process was ${how}`;
  } else {
    what = `plugin process exited with code ${code}`;
  }
  const last = stderr.tail(512).trim();
  return last ? `${what}; stderr: ${last}` : what;
}

function signalName(n: number): NodeJS.Signals | undefined {
  const entry = Object.entries(constants.signals).find(([, v]) => v === n);
  return entry?.[0] as NodeJS.Signals | undefined;
}

const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
