// Typed errors with stable codes. The code travels unchanged to the CLI, the logs, job reports
// and the `status` label of metrics, so users and alerts can match on it; the message says
// what failed and what to do about it.

export const ErrorCode = {
  // configuration and input
  CONFIG_INVALID: "CONFIG_INVALID",
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** A listen address that cannot be bound (in use, not ours, not permitted): the message names its config key. */
  LISTEN_FAILED: "LISTEN_FAILED",
  // package format
  MANIFEST_INVALID: "MANIFEST_INVALID",
  MANIFEST_MISSING: "MANIFEST_MISSING",
  MANIFEST_MISMATCH: "MANIFEST_MISMATCH",
  ARCHIVE_UNSAFE: "ARCHIVE_UNSAFE",
  // signatures and trust
  SIGNATURE_MISSING: "SIGNATURE_MISSING",
  SIGNATURE_INVALID: "SIGNATURE_INVALID",
  KEY_UNKNOWN: "KEY_UNKNOWN",
  KEY_REVOKED: "KEY_REVOKED",
  KEY_EXPIRED: "KEY_EXPIRED",
  KEYRING_INVALID: "KEYRING_INVALID",
  STATEMENT_INVALID: "STATEMENT_INVALID",
  // integrity
  CHECKSUM_MISSING: "CHECKSUM_MISSING",
  CHECKSUM_MISMATCH: "CHECKSUM_MISMATCH",
  SIZE_MISMATCH: "SIZE_MISMATCH",
  SIZE_LIMIT: "SIZE_LIMIT",
  BLOB_CORRUPT: "BLOB_CORRUPT",
  // publishing and lookup
  VERSION_IMMUTABLE: "VERSION_IMMUTABLE",
  PLUGIN_NOT_FOUND: "PLUGIN_NOT_FOUND",
  JOB_NOT_FOUND: "JOB_NOT_FOUND",
  JOB_PENDING_TIMEOUT: "JOB_PENDING_TIMEOUT",
  AGENT_NOT_FOUND: "AGENT_NOT_FOUND",
  // identity
  UNAUTHENTICATED: "UNAUTHENTICATED",
  PERMISSION_DENIED: "PERMISSION_DENIED",
  ACL_DENIED: "ACL_DENIED",
  // transport and runtime
  DOWNLOAD_FAILED: "DOWNLOAD_FAILED",
  SERVER_UNAVAILABLE: "SERVER_UNAVAILABLE",
  // TLS handshake failures: permanent until the configuration changes (proto/rpc.ts classifies them)
  /** The server requires a client certificate (mTLS) and none was sent. */
  TLS_CLIENT_CERT_REQUIRED: "TLS_CLIENT_CERT_REQUIRED",
  /** The server refused the client certificate (unknown CA, expired, bad certificate). */
  TLS_CLIENT_CERT_REJECTED: "TLS_CLIENT_CERT_REJECTED",
  /** The server's certificate does not verify against the trusted CA, or does not name the address. */
  TLS_SERVER_UNTRUSTED: "TLS_SERVER_UNTRUSTED",
  DOWNLOAD_TIMEOUT: "DOWNLOAD_TIMEOUT",
  DISK_FULL: "DISK_FULL",
  PLUGIN_FAILED: "PLUGIN_FAILED",
  PLUGIN_TIMEOUT: "PLUGIN_TIMEOUT",
  PLUGIN_PROTOCOL: "PLUGIN_PROTOCOL",
  SELF_TEST_FAILED: "SELF_TEST_FAILED",
  COMMAND_FAILED: "COMMAND_FAILED",
  JOB_TIMEOUT: "JOB_TIMEOUT",
  JOB_CANCELLED: "JOB_CANCELLED",
  INTERNAL: "INTERNAL",
  SANDBOX_UNAVAILABLE: "SANDBOX_UNAVAILABLE",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class ArcadeError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ArcadeError";
    this.code = code;
    this.details = details;
  }
}

export function isArcadeError(e: unknown, code?: ErrorCode): e is ArcadeError {
  return e instanceof ArcadeError && (code === undefined || e.code === code);
}

/** The code of any thrown value: ours, or INTERNAL for anything unexpected. */
export function errorCodeOf(e: unknown): ErrorCode {
  return e instanceof ArcadeError ? e.code : ErrorCode.INTERNAL;
}

export function errorMessageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// Errors cross gRPC as "CODE: message" in the status details, so the other side can rebuild them.
const WIRE = /^([A-Z][A-Z0-9_]+): ([\s\S]*)$/;

export function toWireMessage(e: unknown): string {
  return `${errorCodeOf(e)}: ${errorMessageOf(e)}`;
}

export function fromWireMessage(details: string): { code: ErrorCode; message: string } {
  const m = WIRE.exec(details);
  if (m && m[1]! in ErrorCode) return { code: m[1] as ErrorCode, message: m[2]! };
  return { code: ErrorCode.INTERNAL, message: details };
}
