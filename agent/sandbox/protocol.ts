// The wire protocol between the agent (runner.ts) and the plugin host (plugin-host.ts): one JSON
// object per line on fd 3. This file is imported by the host, which runs inside the sandbox, so it
// must stay free of npm dependencies: later isolation layers grant the child read access to the
// host's own files only, not to the agent's node_modules.

export const PROTOCOL_VERSION = 1;

/** The fd the protocol travels on in the child: stdio is ['ignore', 'pipe', 'pipe', 'pipe']. */
export const PROTOCOL_FD = 3;

export const STAGE_NAMES = ["before", "after", "on_success", "on_failure"] as const;
export type StageName = (typeof STAGE_NAMES)[number];
/** The optional handler run once before a plugin is cached; not a job stage. */
export const SELF_TEST = "selfTest";
export type HandlerName = StageName | typeof SELF_TEST;

export type JobStatus = "succeeded" | "failed";
export interface StageJob {
  id: string;
  workspace: string;
  status?: JobStatus;
}

/** Caps the host applies before framing, so an honest plugin's big value is cut, not fatal. */
export interface HostLimits {
  maxResultBytes: number;
  maxLogMessageBytes: number;
  maxErrorBytes: number;
}

// agent → host
export interface InitMessage {
  type: "init";
  protocol: number;
  nonce: string;
  pluginDir: string;
  entry: string;
  id: string;
  version: string;
  limits: HostLimits;
}
export interface RunMessage {
  type: "run";
  stage: HandlerName;
  config: Record<string, unknown>;
  job: StageJob;
}
export interface ShutdownMessage {
  type: "shutdown";
}
export type AgentMessage = InitMessage | RunMessage | ShutdownMessage;

// host → agent
export interface HelloMessage {
  type: "hello";
  protocol: number;
  nonce: string;
  id: string;
  version: string;
  stages: StageName[];
  selfTest: boolean;
}
export interface LogMessage {
  type: "log";
  message: string;
}
export type ResultMessage =
  | { type: "result"; stage: HandlerName; ok: true; result: string | null }
  | { type: "result"; stage: HandlerName; ok: false; error: string };
/** The host could not start the plugin (bad entry, identity mismatch, missing stage...). */
export interface ErrorMessage {
  type: "error";
  message: string;
}
export type HostMessage = HelloMessage | LogMessage | ResultMessage | ErrorMessage;

export class LineTooLongError extends Error {
  constructor(readonly limit: number) {
    super(`protocol line longer than ${limit} bytes`);
  }
}

/**
 * Splits a byte stream into lines, refusing any line over `maxBytes` as soon as the pending bytes
 * pass the limit, so a child that never sends a newline cannot make us buffer without bound.
 */
export class LineDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      if (this.pendingBytes + (end - start) > this.maxBytes) throw new LineTooLongError(this.maxBytes);
      if (nl === -1) {
        if (end > start) {
          this.pending.push(chunk.subarray(start));
          this.pendingBytes += end - start;
        }
        return lines;
      }
      const piece = chunk.subarray(start, nl);
      const line = this.pending.length === 0 ? piece : Buffer.concat([...this.pending, piece]);
      this.pending = [];
      this.pendingBytes = 0;
      lines.push(line.toString("utf8"));
      start = nl + 1;
    }
  }

  /** Bytes received after the last newline; a message cut off by the child's death. */
  get hasPartialLine(): boolean {
    return this.pendingBytes > 0;
  }
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number, marker = ""): string {
  if (Buffer.byteLength(text, "utf8") <= maxBytes) return text;
  const room = Math.max(0, maxBytes - Buffer.byteLength(marker, "utf8"));
  let cut = Buffer.from(text, "utf8").subarray(0, room);
  // Drop a trailing partial multi-byte sequence so the result decodes cleanly.
  let i = cut.length - 1;
  while (i >= 0 && (cut[i]! & 0xc0) === 0x80) i--;
  if (i >= 0) {
    const lead = cut[i]!;
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (cut.length - i < need) cut = cut.subarray(0, i);
  }
  return cut.toString("utf8") + marker;
}

export const TRUNCATED_MARKER = "\n[truncated]";
