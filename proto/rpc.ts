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

/** A gRPC failure as an ArcadeError; `transient` tells whether retrying could help. */
export function fromServiceError(e: unknown): ArcadeError {
  if (e instanceof ArcadeError) return e;
  const se = e as Partial<ServiceError>;
  if (typeof se.code !== "number") return new ArcadeError(ErrorCode.INTERNAL, String((e as Error)?.message ?? e));
  const wire = fromWireMessage(se.details ?? "");
  if (wire.code !== ErrorCode.INTERNAL || /^INTERNAL: /.test(se.details ?? "")) {
    return new ArcadeError(wire.code, wire.message, { grpcStatus: se.code });
  }
  if (se.code === status.UNAVAILABLE) {
    return new ArcadeError(
      ErrorCode.SERVER_UNAVAILABLE,
      `cannot reach the server (or its TLS handshake failed: check the address, --ca and the client certificate): ${se.details}`,
      { grpcStatus: se.code, transient: true },
    );
  }
  if (se.code === status.DEADLINE_EXCEEDED) {
    return new ArcadeError(ErrorCode.DOWNLOAD_TIMEOUT, `deadline exceeded: ${se.details}`, { grpcStatus: se.code, transient: true });
  }
  return new ArcadeError(ErrorCode.INTERNAL, `gRPC ${status[se.code] ?? se.code}: ${se.details}`, {
    grpcStatus: se.code,
    transient: TRANSIENT.has(se.code),
  });
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
export function call<Req, Res>(method: UnaryMethod<Req, Res>, thisArg: unknown, req: Req, md: Metadata, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(thisArg, req, md, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) =>
      err ? reject(fromServiceError(err)) : resolve(res),
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
