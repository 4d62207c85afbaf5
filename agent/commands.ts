// The job's own shell commands, run one after another in the job workspace until one fails.
// Output is captured into one capped buffer (the tail is kept: the end of a log says why it
// failed); the whole process group is killed on timeout.
import { spawn } from "node:child_process";
import { ArcadeError, ErrorCode } from "../signing/errors.js";

export type CommandsOutcome = { exitCode: number; output: string; error?: ArcadeError };

export class CappedBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;
  constructor(private readonly max: number) {}

  push(b: Buffer | string): void {
    const buf = typeof b === "string" ? Buffer.from(b) : b;
    this.chunks.push(buf);
    this.size += buf.length;
    while (this.size > this.max && this.chunks.length > 1) {
      const first = this.chunks.shift()!;
      this.size -= first.length;
      this.dropped += first.length;
    }
  }

  toString(): string {
    const all = Buffer.concat(this.chunks);
    const tail = all.length > this.max ? all.subarray(all.length - this.max) : all;
    const skipped = this.dropped + (all.length - tail.length);
    return (skipped > 0 ? `[... ${skipped} bytes of earlier output dropped]\n` : "") + tail.toString("utf8");
  }
}

export async function runCommands(
  commands: string[],
  o: {
    cwd: string;
    env: Record<string, string>;
    deadline: number;
    maxOutputBytes: number;
    onStart?: (cmd: string) => void;
    signal?: AbortSignal;
  },
): Promise<CommandsOutcome> {
  const out = new CappedBuffer(o.maxOutputBytes);
  for (const cmd of commands) {
    o.onStart?.(cmd);
    out.push(`$ ${cmd}\n`);
    const remaining = o.deadline - Date.now();
    if (remaining <= 0) return { exitCode: -1, output: out.toString(), error: timeout() };
    if (o.signal?.aborted) return { exitCode: -1, output: out.toString(), error: cancelled() };
    const code = await runOne(cmd, o.cwd, o.env, remaining, out, o.signal);
    if (code === "timeout") return { exitCode: -1, output: out.toString(), error: timeout() };
    if (code === "cancelled") return { exitCode: -1, output: out.toString(), error: cancelled() };
    if (code !== 0) {
      return {
        exitCode: code,
        output: out.toString(),
        error: new ArcadeError(ErrorCode.COMMAND_FAILED, `command exited with ${code}: ${cmd}`),
      };
    }
  }
  return { exitCode: 0, output: out.toString() };
}

function runOne(
  cmd: string,
  cwd: string,
  env: Record<string, string>,
  timeoutMs: number,
  out: CappedBuffer,
  signal?: AbortSignal,
): Promise<number | "timeout" | "cancelled"> {
  return new Promise((resolve) => {
    const child = spawn("/bin/sh", ["-c", cmd], { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => out.push(b));
    let timedOut = false;
    let aborted = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    const onAbort = () => {
      aborted = true;
      killGroup(child.pid);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    child.on("error", (e) => {
      out.push(`${e.message}\n`);
    });
    child.on("close", (code, killedBy) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      killGroup(child.pid); // anything the command left running in the background goes too
      if (aborted) resolve("cancelled");
      else if (timedOut) resolve("timeout");
      else resolve(code ?? (killedBy ? 128 : 1));
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

function cancelled(): ArcadeError {
  return new ArcadeError(ErrorCode.JOB_CANCELLED, "the agent was stopped while the job ran; its processes were killed");
}

function timeout(): ArcadeError {
  return new ArcadeError(ErrorCode.JOB_TIMEOUT, "the job ran past its timeout; its processes were killed");
}
