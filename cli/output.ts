// What the CLI prints: errors as "error CODE: message" plus a hint naming the flag to pass,
// and --json output where proto enums appear by name ("stage":"after"), never as numbers.
// Loaded on every command, so it imports nothing heavy.
import { ArcadeError, errorCodeOf, errorMessageOf } from "../signing/errors.js";
import { neutralizeBlock } from "../signing/text.js";

/**
 * What to pass on the command line when a client command fails with this code. The codes are
 * matched as strings: the TLS_* codes come from proto/rpc.ts's classification of handshake
 * failures.
 */
const HINTS: Record<string, string> = {
  TLS_CLIENT_CERT_REQUIRED:
    "this server requires a client certificate: pass --cert/--key (or set ARCADE_CERT/ARCADE_KEY), one issued by the CA the server trusts (`arcade certs init` issues them)",
  TLS_CLIENT_CERT_REJECTED:
    "the server refused this client certificate: pass --cert/--key issued by the CA the server trusts (its [tls] client_ca)",
  TLS_SERVER_UNTRUSTED:
    "the server's certificate is not signed by the CA given: pass --ca <the CA that issued the server's certificate> (or set ARCADE_CA)",
  SERVER_UNAVAILABLE:
    "check --server (or ARCADE_SERVER) and that the server is running; for TLS pass --ca, and --cert/--key if it requires client certificates",
  UNAUTHENTICATED: "pass --token, set ARCADE_ADMIN_TOKEN, or point --data-dir at the server's data directory",
};

export function hintFor(code: string): string | undefined {
  return HINTS[code];
}

/**
 * Text from elsewhere (server messages, file contents) made safe for a terminal: control and
 * bidi characters other than newline and tab are shown as escapes, so no escape sequence runs.
 */
export function printable(s: string): string {
  return neutralizeBlock(s);
}

/** The one place a failed command is reported; exit code 1. */
export function reportError(e: unknown): void {
  const code = errorCodeOf(e);
  const message = printable(errorMessageOf(e));
  console.error(`error ${code}: ${message}`);
  const hint = hintFor(code);
  if (hint && !message.includes(hint)) console.error(`hint: ${hint}`);
  if (!(e instanceof ArcadeError) && process.env.ARCADE_DEBUG) console.error(e);
}

type EnumNamer = (n: number) => string | undefined;

/**
 * A proto message (or a list of them) as plain JSON: every field kept (defaults included, so
 * scripts need not guess), enum fields by name, `detailsJson` strings parsed into `details`.
 * `enums` maps a field name to the function that names its values.
 */
export function toJson(value: unknown, enums: Record<string, EnumNamer> = {}): unknown {
  if (Array.isArray(value)) return value.map((v) => toJson(v, enums));
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue;
    const namer = enums[k];
    if (namer && typeof v === "number") out[k] = namer(v) ?? `unknown(${v})`;
    else if (k === "detailsJson" && typeof v === "string") out.details = parseOr(v);
    else out[k] = toJson(v, enums);
  }
  return out;
}

function parseOr(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s;
  }
}

/** Prints one JSON document on stdout. */
export function printJson(value: unknown, enums?: Record<string, EnumNamer>): void {
  console.log(JSON.stringify(toJson(value, enums)));
}

/** `STEP_STATUS_SUCCEEDED` -> `succeeded`: a generated xxxToJSON with its prefix dropped. */
export function enumNamer(toName: (n: number) => string, prefix: string): EnumNamer {
  return (n) => {
    const name = toName(n);
    return name.startsWith(prefix) ? name.slice(prefix.length).toLowerCase() : undefined;
  };
}
