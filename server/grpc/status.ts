// Maps our error codes to gRPC status codes. The details carry "CODE: message" so the client
// rebuilds the same typed error (signing/errors.ts fromWireMessage).
import { status, type ServiceError, Metadata } from "@grpc/grpc-js";
import { RETRY_AFTER_HEADER } from "../../proto/rpc.js";
import { ArcadeError, ErrorCode, errorCodeOf, toWireMessage } from "../../signing/errors.js";

const GRPC_STATUS: Partial<Record<ErrorCode, status>> = {
  CONFIG_INVALID: status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  MANIFEST_INVALID: status.INVALID_ARGUMENT,
  MANIFEST_MISSING: status.INVALID_ARGUMENT,
  MANIFEST_MISMATCH: status.INVALID_ARGUMENT,
  ARCHIVE_UNSAFE: status.INVALID_ARGUMENT,
  CHECKSUM_MISSING: status.INVALID_ARGUMENT,
  CHECKSUM_MISMATCH: status.INVALID_ARGUMENT,
  SIZE_MISMATCH: status.INVALID_ARGUMENT,
  SIZE_LIMIT: status.RESOURCE_EXHAUSTED,
  BLOB_CORRUPT: status.DATA_LOSS,
  SIGNATURE_MISSING: status.FAILED_PRECONDITION,
  SIGNATURE_INVALID: status.FAILED_PRECONDITION,
  KEY_UNKNOWN: status.FAILED_PRECONDITION,
  KEY_REVOKED: status.FAILED_PRECONDITION,
  KEY_EXPIRED: status.FAILED_PRECONDITION,
  STATEMENT_INVALID: status.FAILED_PRECONDITION,
  KEYRING_INVALID: status.FAILED_PRECONDITION,
  VERSION_IMMUTABLE: status.ALREADY_EXISTS,
  PLUGIN_NOT_FOUND: status.NOT_FOUND,
  JOB_NOT_FOUND: status.NOT_FOUND,
  AGENT_NOT_FOUND: status.NOT_FOUND,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  ACL_DENIED: status.PERMISSION_DENIED,
};

export function toServiceError(e: unknown): Partial<ServiceError> {
  const code = errorCodeOf(e);
  const md = new Metadata();
  md.set("arcade-error-code", code);
  // A refusal that passes by itself (a throttled source) says when, so clients retry instead of giving up.
  const retryAfterMs = e instanceof ArcadeError ? e.details.retryAfterMs : undefined;
  if (typeof retryAfterMs === "number") md.set(RETRY_AFTER_HEADER, String(Math.ceil(retryAfterMs)));
  return { code: GRPC_STATUS[code] ?? status.INTERNAL, details: toWireMessage(e), metadata: md };
}
