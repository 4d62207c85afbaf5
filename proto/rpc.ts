// Client-side helpers shared by the agent and the CLI: channel options, bearer metadata, and
// gRPC failures turned back into typed errors with the server's code.
import fs from "node:fs";
import { Metadata, credentials, status, type ChannelCredentials, type ChannelOptions, type ServiceError } from "@grpc/grpc-js";
import { ArcadeError, ErrorCode, fromWireMessage } from "../signing/errors.js";

export const CLIENT_OPTIONS: ChannelOptions = {
  // Node's HTTP/2 default window is 64 KiB; raising it roughly doubles download throughput
  // (measured in the grpc toolchain note). Client-side only: grpc-js servers ignore it.
  "grpc-node.flow_control_window": 8 * 1024 * 1024,
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 20_000,
};

export function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

const TRANSIENT = new Set<number>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
  status.ABORTED,
  status.CANCELLED,
]);

/**
 * What the caller knows about its own connection, for what the error alone cannot tell: a server
 * that refuses a client certificate under TLS 1.3 just closes the connection after the handshake.
 */
export type CallContext = { clientCert?: boolean };

/** A gRPC failure as an ArcadeError; `transient` tells whether retrying could help. */
export function fromServiceError(e: unknown, ctx: CallContext = {}): ArcadeError {
  if (e instanceof ArcadeError) return e;
  const se = e as Partial<ServiceError>;
  if (typeof se.code !== "number") return new ArcadeError(ErrorCode.INTERNAL, String((e as Error)?.message ?? e));
  const wire = fromWireMessage(se.details ?? "");
  if (wire.code !== ErrorCode.INTERNAL || /^INTERNAL: /.test(se.details ?? "")) {
    // A server that is locking out a source says how long for: that passes, so it is transient.
    const retryAfterMs = Number(se.metadata?.get(RETRY_AFTER_HEADER)[0] ?? NaN);
    if (retryAfterMs >= 0) return new ArcadeError(wire.code, wire.message, { grpcStatus: se.code, transient: true, retryAfterMs });
    return new ArcadeError(wire.code, wire.message, { grpcStatus: se.code });
  }
  const detail = cleanDetails(se.details ?? "");
  if (se.code === status.UNAVAILABLE) {
    const tls = classifyTls(detail, ctx);
    if (tls) return tls;
    return new ArcadeError(ErrorCode.SERVER_UNAVAILABLE, `cannot reach the server: ${detail}`, { grpcStatus: se.code, transient: true });
  }
  if (se.code === status.DEADLINE_EXCEEDED) {
    return new ArcadeError(ErrorCode.DOWNLOAD_TIMEOUT, `deadline exceeded: ${detail}`, { grpcStatus: se.code, transient: true });
  }
  return new ArcadeError(ErrorCode.INTERNAL, `gRPC ${status[se.code] ?? se.code}: ${detail}`, {
    grpcStatus: se.code,
    transient: TRANSIENT.has(se.code),
  });
}

/** Metadata key a server sets on a refusal that will pass by itself (milliseconds to wait). */
export const RETRY_AFTER_HEADER = "arcade-retry-after-ms";

/**
 * grpc-js appends " Resolution note: <text>" (empty unless name resolution had something to
 * say) and a timestamp to its connection errors: drop the empty note and the time.
 */
function cleanDetails(details: string): string {
  return details
    .replace(/\s*Resolution note:\s*$/, "")
    .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

// OpenSSL alerts the server sends about our certificate (RFC 8446 §6.2), and Node's own
// verification errors about the server's certificate.
const CLIENT_CERT_REQUIRED = /alert certificate required|peer did not return a certificate/i;
const CLIENT_CERT_REJECTED =
  /alert (unknown ca|bad certificate|certificate unknown|unsupported certificate|certificate revoked|certificate expired|access denied|decrypt error)/i;
const SERVER_UNTRUSTED =
  /self[- ]signed certificate|unable to (verify|get (local )?issuer)|certificate (has expired|is not yet valid|signature failure)|Hostname\/IP does not match|altnames|ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|CERT_HAS_EXPIRED|CERT_UNTRUSTED/i;
// A connection that closed before the server said anything, with no error of its own.
const CLOSED_SILENTLY = /Last error: Failed to connect\.?\s*$/;

/** TLS handshake failures are not transient: retrying with the same files never helps. */
function classifyTls(detail: string, ctx: CallContext): ArcadeError | undefined {
  const d = { grpcStatus: status.UNAVAILABLE, transient: false, tlsReason: detail };
  if (CLIENT_CERT_REQUIRED.test(detail))
    return new ArcadeError(
      ErrorCode.TLS_CLIENT_CERT_REQUIRED,
      "TLS handshake refused: the server requires a client certificate (mTLS) and none was presented",
      d,
    );
  if (CLIENT_CERT_REJECTED.test(detail))
    return new ArcadeError(
      ErrorCode.TLS_CLIENT_CERT_REJECTED,
      `TLS handshake refused: the server does not accept this client certificate (${detail.replace(/^.*alert /i, "").replace(/:.*$/, "")})`,
      d,
    );
  if (SERVER_UNTRUSTED.test(detail))
    return new ArcadeError(
      ErrorCode.TLS_SERVER_UNTRUSTED,
      `TLS handshake failed: the server's certificate does not verify against the trusted CA, or does not name this address (${detail.replace(/^.*Last error: (Error: )?/, "")})`,
      d,
    );
  // Under TLS 1.3 the client's side of the handshake is done before the server checks our
  // certificate; Node then closes the connection without an alert. With a certificate presented,
  // that silence is the server refusing it, but a server going down at that very moment looks
  // the same: `uncertain` asks callers that give up on permanent errors to see it repeat first.
  if (ctx.clientCert && CLOSED_SILENTLY.test(detail))
    return new ArcadeError(
      ErrorCode.TLS_CLIENT_CERT_REJECTED,
      "TLS: the server closed the connection right after the handshake, which is how it refuses a client certificate it does not accept (not issued by its client CA, expired, or for another use)",
      { ...d, uncertain: true },
    );
  return undefined;
}

export function isTransient(e: ArcadeError): boolean {
  return e.details.transient === true;
}

type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: { deadline: Date },
  cb: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Promise form of a generated unary method, with a deadline and typed errors. */
export function call<Req, Res>(
  method: UnaryMethod<Req, Res>,
  thisArg: unknown,
  req: Req,
  md: Metadata,
  timeoutMs = 30_000,
  ctx: CallContext = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(thisArg, req, md, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) =>
      err ? reject(fromServiceError(err, ctx)) : resolve(res),
    );
  });
}

export type TlsFiles = { ca?: string; cert?: string; key?: string };

/** TLS when a CA is given (with a client certificate for mTLS when cert and key are), else plaintext. */
export function channelCredentials(t: TlsFiles | undefined): ChannelCredentials {
  if (!t?.ca) {
    if (t?.cert || t?.key)
      throw new ArcadeError(ErrorCode.CONFIG_INVALID, "tls: a client certificate needs the server's CA too (tls.ca / --ca)");
    return credentials.createInsecure();
  }
  const read = (f: string) => {
    try {
      return fs.readFileSync(f);
    } catch (e) {
      throw new ArcadeError(ErrorCode.CONFIG_INVALID, `tls: cannot read ${f}: ${(e as Error).message}`);
    }
  };
  if (Boolean(t.cert) !== Boolean(t.key))
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, "tls: give both a client certificate and its key, or neither");
  return credentials.createSsl(read(t.ca), t.key ? read(t.key) : null, t.cert ? read(t.cert) : null);
}
