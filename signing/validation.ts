// Input validation shared by every component (manifests, server and agent configuration):
// zod issues turned into one message that names each offending field, and environment
// overrides applied to a parsed config document before it is validated.
import { z } from "zod";
import fs from "node:fs";
import { ArcadeError, ErrorCode, errorMessageOf } from "./errors.js";

export function issuePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), "");
}

/** `source: a.b: message; c: message` — every issue, each with the path of its field. */
export function formatIssues(source: string, error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = issuePath(i.path);
      const extra = i.code === "unrecognized_keys" ? ` (${i.keys.map((k) => (where ? `${where}.${k}` : k)).join(", ")})` : "";
      return `${source}: ${where || "(root)"}: ${i.message}${extra}`;
    })
    .join("; ");
}

/**
 * Reads a config document (TOML, YAML, ...) as a plain mapping; a missing file, a syntax error
 * or a non-mapping top level is CONFIG_INVALID naming the file. An empty document is {}.
 */
export function readConfigDocument(file: string, format: string, parse: (text: string) => unknown): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, `cannot read ${file}: ${errorMessageOf(e)}`);
  }
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (e) {
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, `${file}: not valid ${format}: ${errorMessageOf(e)}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed))
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, `${file}: expected a mapping of settings`);
  return parsed as Record<string, unknown>;
}

export function parseWith<T extends z.ZodType>(schema: T, input: unknown, source: string, code: ErrorCode): z.output<T> {
  const r = schema.safeParse(input);
  if (!r.success) throw new ArcadeError(code, formatIssues(source, r.error), { issues: r.error.issues });
  return r.data;
}

/**
 * Applies `PREFIX_SECTION_KEY=value` variables to a config document: each dotted key in `keys`
 * (e.g. "plugin.max_plugin_size") maps to one variable name (ARCADE_PLUGIN_MAX_PLUGIN_SIZE).
 * Values are read as JSON when they parse (numbers, booleans, arrays), else as strings, and
 * are then validated by the same schema as the file, so a bad value names its variable's key.
 */
export function applyEnvOverrides(
  doc: Record<string, unknown>,
  prefix: string,
  keys: readonly string[],
  env: NodeJS.ProcessEnv,
): { doc: Record<string, unknown>; applied: string[] } {
  const applied: string[] = [];
  for (const key of keys) {
    const name = `${prefix}_${key.replace(/\./g, "_").toUpperCase()}`;
    const raw = env[name];
    if (raw === undefined) continue;
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // not JSON: keep the string
    }
    const parts = key.split(".");
    let node = doc;
    for (const p of parts.slice(0, -1)) {
      const next = node[p];
      node = (next !== null && typeof next === "object" && !Array.isArray(next) ? next : (node[p] = {})) as Record<string, unknown>;
    }
    node[parts[parts.length - 1]!] = value;
    applied.push(name);
  }
  return { doc, applied };
}

/** Every dotted leaf key of a zod object schema, for env overrides. */
export function leafKeys(shape: Record<string, unknown>, prefix = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(shape)) {
    const inner = unwrap(v);
    const sub = inner && typeof inner === "object" && "shape" in inner ? (inner as { shape: Record<string, unknown> }).shape : undefined;
    if (sub) out.push(...leafKeys(sub, `${prefix}${k}.`));
    else out.push(`${prefix}${k}`);
  }
  return out;
}

function unwrap(s: unknown): unknown {
  let cur = s as { unwrap?: () => unknown; def?: { innerType?: unknown } } | undefined;
  for (let i = 0; i < 8 && cur; i++) {
    const inner = cur.def?.innerType;
    if (!inner) break;
    cur = inner as typeof cur;
  }
  return cur;
}

export const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected host:port, e.g. 127.0.0.1:50051");

export { isLoopback, splitHostPort } from "./address.js";
