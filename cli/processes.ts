// Starts `arcade server start` / `arcade agent start` as real child processes and follows
// their JSON logs. Used by the demo, the end-to-end tests and the benchmarks. Waits match the
// stable `event` field of a line (signing/events.ts), never its human message.
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { EVENT, type EventName } from "../signing/events.js";

export type LogLine = { level?: number; msg?: string; step?: string; event?: string; [k: string]: unknown };

/** dist/cli/main.js, also when called from sources under vitest (cli/processes.ts). */
export function cliPath(): string {
  const here = fileURLToPath(import.meta.url);
  const root = here.includes(`${path.sep}dist${path.sep}`)
    ? path.resolve(path.dirname(here), "..", "..")
    : path.resolve(path.dirname(here), "..");
  return path.join(root, "dist", "cli", "main.js");
}

export class ArcadeProcess {
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  private listeners = new Set<(l: LogLine) => void>();
  readonly exited: Promise<number | null>;
  /** Like `exited`, but once its output is closed too: every line it wrote is in `lines`. */
  readonly closed: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on("line", (raw) => {
      let l: LogLine;
      try {
        l = JSON.parse(raw) as LogLine;
      } catch {
        l = { msg: raw };
      }
      this.lines.push(l);
      for (const f of this.listeners) f(l);
    });
    readline.createInterface({ input: child.stderr! }).on("line", (raw) => this.stderr.push(raw));
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    this.closed = new Promise((resolve) => child.on("close", (code) => resolve(code)));
  }

  onLine(f: (l: LogLine) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /**
   * Resolves with the first line (past or future) carrying `event` whose fields equal `fields`;
   * rejects with the event's name if the process exits first or none comes within the timeout.
   */
  waitForEvent(event: EventName, fields: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<LogLine> {
    const want = Object.entries(fields);
    const what = `log event ${event}${want.length ? ` with ${JSON.stringify(fields)}` : ""}`;
    return this.waitFor((l) => l.event === event && want.every(([k, v]) => l[k] === v), timeoutMs, what);
  }

  /** Resolves with the first log line (past or future) that matches; rejects if the process exits first. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 60_000, what = "a log line"): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${this.stderr.join("\n")}`));
      }, timeoutMs);
      const off = this.onLine((l) => {
        if (pred(l)) {
          clearTimeout(t);
          off();
          resolve(l);
        }
      });
      void this.exited.then((code) => {
        clearTimeout(t);
        off();
        reject(new Error(`process exited (${code}) before ${what}; stderr: ${this.stderr.join("\n")}`));
      });
    });
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export function spawnArcade(args: string[], env: NodeJS.ProcessEnv = {}): ArcadeProcess {
  const child = spawn(process.execPath, [cliPath(), ...args], {
    env: { ...process.env, ARCADE_LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new ArcadeProcess(child);
}

export async function startServerProcess(
  configFile: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ proc: ArcadeProcess; grpc: string; metrics: string }> {
  const proc = spawnArcade(["server", "start", "--config", configFile], env);
  const ready = await proc.waitForEvent(EVENT.SERVER_READY);
  return { proc, grpc: String(ready.grpc), metrics: String(ready.metrics) };
}

export async function startAgentProcess(
  configFile: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ proc: ArcadeProcess; metrics: string }> {
  const proc = spawnArcade(["agent", "start", "--config", configFile], env);
  const ready = await proc.waitForEvent(EVENT.AGENT_READY);
  return { proc, metrics: String(ready.metrics) };
}
