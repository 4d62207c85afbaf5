// The program the agent runs in each plugin's child process: `node [flags] plugin-host.js`.
// It speaks the NDJSON protocol of protocol.ts on fd 3, loads one plugin and runs its stage
// handlers one at a time. Everything here shares a process with untrusted plugin code, so the
// agent treats whatever arrives on fd 3 as untrusted too; the checks below are for honest plugins
// with bugs (clear errors, no hangs), not a security boundary.

import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";

import {
  LineDecoder,
  PROTOCOL_FD,
  PROTOCOL_VERSION,
  SELF_TEST,
  STAGE_NAMES,
  TRUNCATED_MARKER,
  truncateUtf8,
  type AgentMessage,
  type HandlerName,
  type HostLimits,
  type HostMessage,
  type InitMessage,
  type RunMessage,
  type StageName,
} from "./protocol.js";

type Handler = (ctx: unknown) => unknown;

// Another process running as the same user could send SIGUSR1 to open this process's inspector
// and run code inside it; a listener turns that activation off.
process.on("SIGUSR1", () => {});

// The agent is trusted, so this cap only stops a broken agent from exhausting our memory.
const MAX_INBOUND_LINE_BYTES = 256 * 1024 * 1024;

let channel: net.Socket;
try {
  // A net.Socket rather than fs streams: fs reads on a socket would pin a libuv threadpool thread
  // (the plugin's fs and dns share that pool) for the life of the process.
  channel = new net.Socket({ fd: PROTOCOL_FD, readable: true, writable: true });
} catch {
  process.stderr.write(`plugin-host: fd ${PROTOCOL_FD} is not open; this program is started by the Arcade agent\n`);
  process.exit(2);
}

let limits: HostLimits = { maxResultBytes: 64 * 1024, maxLogMessageBytes: 8 * 1024, maxErrorBytes: 8 * 1024 };
let identity: { id: string; version: string } | undefined;
const handlers = new Map<HandlerName, Handler>();
let ready = false;
let current: { stage: HandlerName; token: object } | undefined;

function send(msg: HostMessage): void {
  channel.write(JSON.stringify(msg) + "\n");
}

// stdout/stderr are socketpairs, which Node writes asynchronously: exiting at once would drop
// what the plugin printed last, often the most useful part. The agent's kill bounds the wait.
function exitAfterFlush(code: number): void {
  const streams = [process.stdout, process.stderr].filter((s) => s.writableLength > 0);
  let pending = streams.length;
  if (pending === 0) process.exit(code);
  for (const s of streams) {
    s.write("", () => {
      if (--pending === 0) process.exit(code);
    });
  }
}

/** Refuses to start the plugin: thrown inside init(), reported to the agent before we exit. */
class Refused extends Error {}

let exiting = false;
function refuse(message: string): void {
  if (exiting) return;
  exiting = true;
  const line = JSON.stringify({ type: "error", message: truncateUtf8(message, limits.maxErrorBytes) }) + "\n";
  channel.write(line, () => exitAfterFlush(1));
}

function describe(err: unknown): string {
  try {
    if (err instanceof Error) return err.message || err.name || "Error";
    return typeof err === "string" ? err : `non-Error value thrown: ${String(err)}`;
  } catch {
    return "plugin threw a value that cannot be described";
  }
}

function pick(mod: Record<string, unknown>, name: string): { owner: unknown; value: unknown } {
  // Named export first, then the same key on the default export (also how CommonJS arrives).
  if (mod[name] !== undefined) return { owner: mod, value: mod[name] };
  const def = mod.default;
  const isObj = (typeof def === "object" || typeof def === "function") && def !== null;
  return { owner: def, value: isObj ? (def as Record<string, unknown>)[name] : undefined };
}

async function load(msg: InitMessage): Promise<void> {
  if (msg.protocol !== PROTOCOL_VERSION) throw new Refused(`unsupported protocol ${msg.protocol}, host speaks ${PROTOCOL_VERSION}`);
  limits = msg.limits;
  const pluginDir = path.resolve(msg.pluginDir);
  const entry = path.resolve(pluginDir, msg.entry);
  const rel = path.relative(pluginDir, entry);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) throw new Refused(`entry ${msg.entry} is outside the plugin`);

  let manifest: { id?: unknown; version?: unknown; stages?: unknown };
  try {
    manifest = JSON.parse(readFileSync(path.join(pluginDir, "manifest.json"), "utf8")) as typeof manifest;
  } catch (e) {
    throw new Refused(`cannot read manifest.json: ${describe(e)}`);
  }
  if (manifest.id !== msg.id || manifest.version !== msg.version) {
    throw new Refused(`plugin is ${String(manifest.id)}@${String(manifest.version)}, the agent expected ${msg.id}@${msg.version}`);
  }

  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
  } catch (e) {
    throw new Refused(`cannot load entry ${msg.entry}: ${describe(e)}`);
  }
  try {
    for (const [key, want] of [
      ["id", msg.id],
      ["version", msg.version],
    ] as const) {
      const own = pick(mod, key).value;
      if (typeof own === "string" && own !== want) throw new Refused(`module declares ${key} ${own}, the agent expected ${want}`);
    }
    for (const name of [...STAGE_NAMES, SELF_TEST] as const) {
      const { owner, value } = pick(mod, name);
      // Called as a method, so handlers on a default-export object can use `this`.
      if (typeof value === "function") handlers.set(name, (ctx) => (value as (this: unknown, c: unknown) => unknown).call(owner, ctx));
    }
  } catch (e) {
    if (e instanceof Refused) throw e;
    throw new Refused(`cannot inspect the module's exports: ${describe(e)}`);
  }
  const declared = Array.isArray(manifest.stages) ? (manifest.stages as unknown[]) : [];
  const missing = declared.filter((s) => typeof s !== "string" || !handlers.has(s as HandlerName));
  if (missing.length > 0) throw new Refused(`manifest declares stage(s) ${missing.join(", ")} but the entry does not export them`);

  identity = { id: msg.id, version: msg.version };
  ready = true;
  send({
    type: "hello",
    protocol: PROTOCOL_VERSION,
    nonce: msg.nonce,
    id: msg.id,
    version: msg.version,
    stages: STAGE_NAMES.filter((s): s is StageName => handlers.has(s)),
    selfTest: handlers.has(SELF_TEST),
  });
}

async function init(msg: InitMessage): Promise<void> {
  try {
    await load(msg);
  } catch (e) {
    refuse(e instanceof Refused ? e.message : `plugin host failed: ${describe(e)}`);
  }
}

function serialize(value: unknown): { ok: true; result: string | null } | { ok: false; error: string } {
  if (value === undefined || value === null) return { ok: true, result: null };
  let text: string | undefined;
  if (typeof value === "string") text = value;
  else {
    try {
      text = JSON.stringify(value);
    } catch (e) {
      return { ok: false, error: `stage result is not JSON-serializable: ${describe(e)}` };
    }
  }
  // JSON.stringify gives undefined for functions and symbols: nothing usable was returned.
  if (text === undefined) return { ok: true, result: null };
  return { ok: true, result: truncateUtf8(text, limits.maxResultBytes, TRUNCATED_MARKER) };
}

function finish(token: object, outcome: { ok: true; result: string | null } | { ok: false; error: string }): void {
  if (current?.token !== token) return; // a late settle after an uncaught error already failed the stage
  const stage = current.stage;
  current = undefined;
  if (outcome.ok) send({ type: "result", stage, ok: true, result: outcome.result });
  else send({ type: "result", stage, ok: false, error: truncateUtf8(outcome.error, limits.maxErrorBytes) });
}

function run(msg: RunMessage): void {
  if (!ready || !identity) {
    process.stderr.write("plugin-host: run before init\n");
    process.exit(1);
  }
  if (current) {
    process.stderr.write(`plugin-host: run ${msg.stage} while ${current.stage} is still running\n`);
    process.exit(1);
  }
  const token = {};
  current = { stage: msg.stage, token };
  const handler = handlers.get(msg.stage);
  if (!handler) return finish(token, { ok: false, error: `plugin does not implement stage ${msg.stage}` });
  const ctx = {
    stage: msg.stage,
    config: msg.config,
    job: msg.job,
    plugin: { ...identity },
    log(message: unknown): void {
      const text = truncateUtf8(typeof message === "string" ? message : describe(message), limits.maxLogMessageBytes);
      // After the stage has ended the agent no longer collects logs; stderr keeps them visible.
      if (current?.token === token) send({ type: "log", message: text });
      else process.stderr.write(`[late log from ${msg.stage}] ${text}\n`);
    },
  };
  Promise.resolve()
    .then(() => handler(ctx))
    .then(
      (value) => finish(token, serialize(value)),
      (err: unknown) => finish(token, { ok: false, error: describe(err) }),
    );
}

function onStray(kind: string, err: unknown): void {
  const text = `${kind}: ${describe(err)}`;
  if (current) return finish(current.token, { ok: false, error: text });
  if (!ready) return refuse(`while loading: ${text}`);
  // Between stages nobody is waiting; leave a trace in stderr and stay up for the next stage.
  process.stderr.write(`plugin-host: ${text}\n`);
}
process.on("uncaughtException", (err) => onStray("uncaught exception", err));
process.on("unhandledRejection", (reason) => onStray("unhandled rejection", reason));

const decoder = new LineDecoder(MAX_INBOUND_LINE_BYTES);
channel.on("data", (chunk: Buffer) => {
  let messages: AgentMessage[];
  try {
    messages = decoder
      .push(chunk)
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as AgentMessage);
  } catch (e) {
    process.stderr.write(`plugin-host: bad message from the agent: ${describe(e)}\n`);
    process.exit(1);
  }
  for (const msg of messages) {
    if (exiting) return;
    if (msg.type === "init") void init(msg);
    else if (msg.type === "run") run(msg);
    else if (msg.type === "shutdown") {
      exiting = true;
      exitAfterFlush(0);
    }
  }
});
// The agent went away or broke the channel: there is nobody left to report to.
channel.on("end", () => process.exit(1));
channel.on("error", () => process.exit(1));
