// Runs one plugin for one job in its own child Node process, never inside the agent: spawn with
// an allowlisted environment and a fresh 0700 work dir, handshake, run stages, shut down. The
// child is untrusted: every failure it can cause (crash, hang, garbage on the protocol channel)
// becomes a failed StageOutcome, and the whole process group is killed when we are done with it.

import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import type { Readable, Writable } from "node:stream";

import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import type { StageName } from "../../signing/manifest.js";
import { launch, type PluginProcessOptions } from "./launch.js";
import { parseHostMessage, ProtocolViolation } from "./messages.js";
import { TailBuffer } from "./output.js";
import { LineDecoder, LineTooLongError, PROTOCOL_VERSION, SELF_TEST, TRUNCATED_MARKER, truncateUtf8 } from "./protocol.js";
import type { HandlerName, HelloMessage, HostMessage, JobStatus, ResultMessage } from "./protocol.js";
import { resolveLimits, type ExitHints, type SandboxLimits } from "./spawn-plan.js";
import { describeExit, killGroup, trackGroup, untrackGroup } from "./process-group.js";

export { BASE_LAYERS, DEFAULT_SANDBOX_LIMITS, type SandboxLimits, type SpawnLayer, type SpawnPlan } from "./spawn-plan.js";
export { disableInspectorActivation } from "./process-group.js";
export type { PluginProcessOptions } from "./launch.js";
export { detectSandbox, formatSandboxReport, type SandboxLayerName, type SandboxReport } from "./detect.js";
export { DEFAULT_RLIMITS, killSlotProcesses, sandboxLayers, type RlimitOptions, type SandboxOptions } from "./layers.js";

export interface StageOutcome {
  ok: boolean;
  result: string | null;
  error?: { code: ErrorCode; message: string };
  logs: string[];
  startedAt: number;
  completedAt: number;
}

export interface StageJobInput {
  id: string;
  /** Must equal the jobWorkspace given to start() when present; filled in from it otherwise. */
  workspace?: string;
  status?: JobStatus;
}

export interface CloseResult {
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

type Death = { code: ErrorCode; message: string };
type Waiter = { onMessage(msg: HostMessage): void; onDeath(death: Death): void };

// After the child exits, lines it wrote just before may still be unread; wait this long for them.
const DRAIN_MS = 200;
const MAX_ERROR_BYTES = 8 * 1024;
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export class PluginProcess {
  readonly pid: number;
  readonly workDir: string;
  /** Stages the module implements and the self-test flag, from its hello. */
  stages: readonly StageName[] = [];
  hasSelfTest = false;

  private readonly stdout: TailBuffer;
  private readonly stderr: TailBuffer;
  private readonly channel: Readable & Writable;
  private readonly decoder: LineDecoder;
  private readonly exited: Promise<void>;
  private death: Death | undefined;
  /** Once node has reaped the leader its pid may be reused, so the group must not be signalled again. */
  private reaped = false;
  private waiter: Waiter | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closing: Promise<CloseResult> | undefined;
  private outputsClosed: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly opts: PluginProcessOptions,
    private readonly limits: SandboxLimits,
    workDir: string,
    exitHints: ExitHints,
  ) {
    this.pid = child.pid!;
    this.workDir = workDir;
    trackGroup(this.pid);
    this.stdout = new TailBuffer(limits.maxOutputBytes);
    this.stderr = new TailBuffer(limits.maxOutputBytes);
    this.decoder = new LineDecoder(limits.maxMessageBytes);
    this.channel = child.stdio[3] as Readable & Writable;
    child.stdout!.on("data", (c: Buffer) => this.stdout.push(c));
    child.stderr!.on("data", (c: Buffer) => this.stderr.push(c));
    this.channel.on("data", (c: Buffer) => this.onData(c));
    const closed = (s: Readable) => new Promise<void>((r) => s.once("close", () => r()));
    const channelClosed = closed(this.channel);
    this.outputsClosed = Promise.all([closed(child.stdout!), closed(child.stderr!)]).then(() => {});
    // Writes to a dead child fail with EPIPE, and an unhandled 'error' would crash the agent; the
    // child's exit is what we report.
    for (const emitter of [this.channel, child, child.stdout!, child.stderr!]) emitter.on("error", () => {});
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        // Take grandchildren still in the group with it, while they still keep the group id taken.
        killGroup(this.pid);
        this.reaped = true;
        untrackGroup(this.pid);
        // stderr too: the exit message quotes its tail.
        void Promise.race([Promise.all([channelClosed, this.outputsClosed]), delay(DRAIN_MS)]).then(() => {
          this.death ??= { code: ErrorCode.PLUGIN_FAILED, message: describeExit(code, signal, limits, this.stderr, exitHints) };
          resolve();
        });
      });
    });
    void this.exited.then(() => this.waiter?.onDeath(this.death!));
  }

  static async start(opts: PluginProcessOptions): Promise<PluginProcess> {
    const limits = resolveLimits(opts.limits);
    const { child, workDir, plan } = await launch(opts, limits);
    const proc = new PluginProcess(child, opts, limits, workDir, plan.exit ?? {});
    try {
      await proc.handshake(randomBytes(16).toString("hex"));
      return proc;
    } catch (e) {
      const { stderr } = await proc.close();
      if (!(e instanceof ArcadeError)) throw e;
      const details = { ...e.details, pluginId: opts.manifest.id, version: opts.manifest.version, stderr: truncTail(stderr) };
      throw new ArcadeError(e.code, e.message, details);
    }
  }

  get alive(): boolean {
    return this.death === undefined;
  }

  /** Runs one stage; plugin failures of every kind are a failed outcome, never a throw. */
  async runStage(stage: StageName, config: Record<string, unknown>, job: StageJobInput): Promise<StageOutcome> {
    const status = stage === "on_success" ? "succeeded" : stage === "on_failure" ? "failed" : job.status;
    if (job.status !== undefined && job.status !== status) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `stage ${stage} cannot run with job status ${job.status}`);
    }
    if (stage === "after" && status === undefined) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "stage after needs the job status");
    }
    if (!this.opts.manifest.stages.includes(stage)) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `plugin ${this.opts.manifest.id} does not declare stage ${stage}`);
    }
    return this.enqueue(stage, config, job, stage === "before" ? undefined : status);
  }

  /** Runs the plugin's optional selfTest handler; a plugin without one passes with a null result. */
  async selfTest(config: Record<string, unknown> = {}, job: StageJobInput = { id: "self-test" }): Promise<StageOutcome> {
    if (this.alive && !this.hasSelfTest) {
      const now = Date.now();
      return { ok: true, result: null, logs: [], startedAt: now, completedAt: now };
    }
    return this.enqueue(SELF_TEST, config, job, undefined);
  }

  /** Asks the plugin to exit, kills its process group either way, and removes the work dir. */
  close(): Promise<CloseResult> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private enqueue(stage: HandlerName, config: Record<string, unknown>, job: StageJobInput, status?: JobStatus) {
    if (typeof config !== "object" || config === null || Array.isArray(config)) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "stage config must be a JSON object");
    }
    if (job.workspace !== undefined && job.workspace !== this.opts.jobWorkspace) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "job.workspace differs from the workspace the plugin was started for");
    }
    const run = { type: "run", stage, config, job: { id: job.id, workspace: this.opts.jobWorkspace, status } };
    let line: string;
    try {
      line = JSON.stringify(run) + "\n";
    } catch (e) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `stage config is not JSON-serializable: ${(e as Error).message}`);
    }
    const next = this.queue.then(() => this.exchangeStage(stage, line));
    this.queue = next.catch(() => {});
    return next;
  }

  private async exchangeStage(stage: HandlerName, line: string): Promise<StageOutcome> {
    const startedAt = Date.now();
    const logs: string[] = [];
    let dropped = 0;
    const outcome = (ok: boolean, result: string | null, error?: Death): StageOutcome => {
      if (dropped > 0) logs.push(`[${dropped} more log lines dropped]`);
      return { ok, result, ...(error ? { error } : {}), logs, startedAt, completedAt: Date.now() };
    };
    if (this.death || this.closing) {
      const why = this.death ? `${this.death.code}: ${this.death.message}` : "it is being closed";
      return outcome(false, null, { code: ErrorCode.PLUGIN_FAILED, message: `plugin process is not running (${why})` });
    }
    this.channel.write(line);
    const r = await this.exchange<ResultMessage>(this.limits.stageTimeoutMs, `stage ${stage}`, (msg) => {
      if (msg.type === "log") {
        if (logs.length < this.limits.maxLogLines) logs.push(truncateUtf8(msg.message, this.limits.maxLogMessageBytes));
        else dropped++;
        return undefined;
      }
      if (msg.type === "result" && msg.stage === stage) return msg;
      throw new ProtocolViolation(`unexpected ${msg.type} message during stage ${stage}`);
    });
    if ("death" in r) return outcome(false, null, r.death);
    const msg = r.value;
    if (msg.ok) return outcome(true, msg.result === null ? null : truncateUtf8(msg.result, this.limits.maxResultBytes, TRUNCATED_MARKER));
    return outcome(false, null, { code: ErrorCode.PLUGIN_FAILED, message: truncateUtf8(msg.error, MAX_ERROR_BYTES) });
  }

  private async handshake(nonce: string): Promise<void> {
    const { id, version, entry, stages } = this.opts.manifest;
    const hostLimits = {
      maxResultBytes: this.limits.maxResultBytes,
      maxLogMessageBytes: this.limits.maxLogMessageBytes,
      maxErrorBytes: MAX_ERROR_BYTES,
    };
    const init = {
      type: "init",
      protocol: PROTOCOL_VERSION,
      nonce,
      pluginDir: this.opts.pluginDir,
      entry,
      id,
      version,
      limits: hostLimits,
    };
    this.channel.write(JSON.stringify(init) + "\n");
    const r = await this.exchange<HelloMessage>(this.limits.handshakeTimeoutMs, "handshake", (msg) => {
      if (msg.type === "error") throw new ProtocolViolation(`plugin refused to start: ${msg.message}`);
      if (msg.type !== "hello") throw new ProtocolViolation(`expected hello, got ${msg.type}`);
      return msg;
    });
    if ("death" in r) {
      const code = r.death.code === ErrorCode.PLUGIN_TIMEOUT ? ErrorCode.PLUGIN_TIMEOUT : ErrorCode.PLUGIN_PROTOCOL;
      throw new ArcadeError(code, `plugin ${id}@${version} did not start: ${r.death.message}`);
    }
    const hello = r.value;
    const problem =
      hello.protocol !== PROTOCOL_VERSION
        ? `protocol ${hello.protocol}, expected ${PROTOCOL_VERSION}`
        : hello.nonce !== nonce
          ? "hello does not echo the nonce"
          : hello.id !== id || hello.version !== version
            ? `plugin says it is ${hello.id}@${hello.version}`
            : stages.filter((s) => !hello.stages.includes(s)).map((s) => `stage ${s} is declared but not implemented`)[0];
    if (problem) {
      this.condemn({ code: ErrorCode.PLUGIN_PROTOCOL, message: problem });
      throw new ArcadeError(ErrorCode.PLUGIN_PROTOCOL, `plugin ${id}@${version} failed the handshake: ${problem}`);
    }
    this.stages = hello.stages;
    this.hasSelfTest = hello.selfTest;
  }

  /** Waits for the message `accept` returns a value for; the process's death or a timeout ends it. */
  private exchange<T>(timeoutMs: number, what: string, accept: (msg: HostMessage) => T | undefined) {
    return new Promise<{ value: T } | { death: Death }>((resolve) => {
      const timer = setTimeout(() => {
        this.condemn({ code: ErrorCode.PLUGIN_TIMEOUT, message: `${what} did not finish within ${timeoutMs} ms` });
      }, timeoutMs);
      const done = (r: { value: T } | { death: Death }) => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(r);
      };
      this.waiter = {
        onMessage: (msg) => {
          const value = accept(msg);
          if (value !== undefined) done({ value });
        },
        onDeath: (death) => done({ death }),
      };
    });
  }

  private onData(chunk: Buffer): void {
    if (this.death) return;
    try {
      for (const line of this.decoder.push(chunk)) {
        if (this.death) return;
        if (line.trim() === "") continue;
        const msg = parseHostMessage(line);
        if (this.waiter) this.waiter.onMessage(msg);
        // A late ctx.log between stages is harmless; anything else unasked-for is not.
        else if (msg.type !== "log") throw new ProtocolViolation(`unexpected ${msg.type} message between stages`);
      }
    } catch (e) {
      // Never let the child's bytes throw inside the agent: that is the fork() IPC hazard.
      const ours = e instanceof ProtocolViolation || e instanceof LineTooLongError;
      this.condemn({ code: ours ? ErrorCode.PLUGIN_PROTOCOL : ErrorCode.INTERNAL, message: (e as Error).message });
    }
  }

  /** Kills the plugin for cause; the first cause is the one reported. */
  private condemn(death: Death): void {
    if (this.death) return;
    this.death = death;
    this.killGroup();
    // Exit normally follows SIGKILL at once; if it never comes, do not leave the caller hanging.
    void delay(this.limits.shutdownTimeoutMs).then(() => this.waiter?.onDeath(death));
  }

  private killGroup(): void {
    if (!this.reaped) killGroup(this.pid);
  }

  private async shutdown(): Promise<CloseResult> {
    if (this.waiter) this.condemn({ code: ErrorCode.PLUGIN_FAILED, message: "the plugin was closed while a stage was running" });
    if (!this.death) {
      this.channel.write(JSON.stringify({ type: "shutdown" }) + "\n");
      await Promise.race([this.exited, delay(this.limits.shutdownTimeoutMs)]);
    }
    this.killGroup();
    await Promise.race([this.exited, delay(this.limits.shutdownTimeoutMs)]);
    await Promise.race([this.outputsClosed, delay(DRAIN_MS)]);
    // A process that escaped the group (setsid) may still hold our pipes; stop reading them.
    for (const s of [this.child.stdout, this.child.stderr, this.channel]) s?.destroy();
    untrackGroup(this.pid);
    await rm(this.workDir, { recursive: true, force: true });
    return {
      stdout: this.stdout.text(),
      stderr: this.stderr.text(),
      stdoutTruncated: this.stdout.truncated,
      stderrTruncated: this.stderr.truncated,
    };
  }
}

function truncTail(text: string): string {
  return text.length > 4096 ? text.slice(-4096) : text;
}
