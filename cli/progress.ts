// Progress bars for long waits (publish uploads, `job ... --wait`), on stderr and only when
// stderr is a terminal: scripts, CI logs and tests (no TTY) get the plain output alone.
// cli-progress is loaded only when a bar is actually drawn.
import type { SingleBar } from "cli-progress";

/** Whether to draw: a TTY that can redraw a line, and nobody asked for silence. */
export function wantsProgress(stream: { isTTY?: boolean } = process.stderr, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && env.TERM !== "dumb" && !env.ARCADE_NO_PROGRESS;
}

export type Progress = {
  update(value: number, payload?: Record<string, string | number>): void;
  setTotal?(total: number): void;
  stop(): void;
};

const NONE: Progress = { update: () => undefined, stop: () => undefined };

async function bar(format: string, total: number, payload: Record<string, string | number>): Promise<Progress> {
  if (!wantsProgress()) return NONE;
  const { default: cliProgress } = await import("cli-progress");
  const b: SingleBar = new cliProgress.SingleBar(
    { format, stream: process.stderr, hideCursor: true, clearOnComplete: false, fps: 5, etaBuffer: 50 },
    cliProgress.Presets.shades_classic,
  );
  b.start(total, 0, payload);
  return { update: (v, p) => b.update(v, p), setTotal: (t) => b.setTotal(t), stop: () => b.stop() };
}

const mib = (n: number) => (n / (1024 * 1024)).toFixed(1);

/** Bytes sent of a file: "name [bar] 42% 3.1/7.4 MiB 12.0 MiB/s". */
export async function transferProgress(name: string, totalBytes: number): Promise<Progress> {
  const started = Date.now();
  const p = await bar(`${name} {bar} {percentage}% {sent}/{size} MiB {rate} MiB/s`, totalBytes, {
    sent: "0.0",
    size: mib(totalBytes),
    rate: "0.0",
  });
  return {
    update: (v) => p.update(v, { sent: mib(v), size: mib(totalBytes), rate: mib(v / Math.max((Date.now() - started) / 1000, 0.001)) }),
    stop: () => p.stop(),
  };
}

/** A job being waited for: "job <id> [bar] 2/5 steps | running". */
export async function jobProgress(jobId: string): Promise<Progress & { show(state: string, done: number, total: number): void }> {
  const p = await bar(`job ${jobId} {bar} {value}/{total} steps | {state}`, 1, { state: "submitted" });
  return {
    ...p,
    show: (state, done, total) => {
      p.setTotal?.(Math.max(total, 1));
      p.update(done, { state });
    },
  };
}
