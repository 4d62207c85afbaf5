// Turns async handlers into grpc-js callbacks: typed errors become statuses with their code,
// unexpected ones are logged in full and reach the caller only as INTERNAL.
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ArcadeError, ErrorCode, errorCodeOf, errorMessageOf } from "../../signing/errors.js";
import type { ServerContext, SurfaceCall } from "../context.js";
import { toServiceError } from "./status.js";
import { EVENT } from "../../signing/events.js";
import type { AuditAction } from "../../signing/vocabulary.js";

export function publicError(e: unknown, log: Logger, rpc: string): ReturnType<typeof toServiceError> {
  if (errorCodeOf(e) === ErrorCode.INTERNAL) {
    log.error({ event: EVENT.SERVER_INTERNAL_ERROR, err: e, rpc }, "internal error");
    return toServiceError(new ArcadeError(ErrorCode.INTERNAL, "internal server error; the server log has the details"));
  }
  log.warn({ event: EVENT.SERVER_REQUEST_REFUSED, rpc, code: errorCodeOf(e), reason: (e as Error).message }, "request refused");
  return toServiceError(e);
}

export function unary<Req, Res>(log: Logger, rpc: string, fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>): void => {
    fn(call).then(
      (res) => cb(null, res),
      (e: unknown) => cb(publicError(e, log, rpc)),
    );
  };
}

export function peerOf(call: { getPeer(): string }): string {
  try {
    return call.getPeer();
  } catch {
    return "unknown";
  }
}

/**
 * Runs a credential check behind the per-host throttle: the source waits out what its earlier
 * failures earned, and a failure is counted and audited under `action` (auth.agent, auth.admin,
 * agent.enroll) before it is rethrown.
 */
export async function throttledAuth<T>(
  ctx: ServerContext,
  call: SurfaceCall,
  action: AuditAction,
  subject: string,
  check: () => Promise<T>,
  actor = "unknown",
): Promise<T> {
  const source = peerOf(call);
  await ctx.throttle.gate(source);
  try {
    const who = await check();
    ctx.throttle.recordSuccess(source);
    return who;
  } catch (e) {
    ctx.throttle.recordFailure(source);
    await ctx.audit.record({ actor, action, subject, outcome: "denied", reason: errorMessageOf(e), source });
    throw e;
  }
}
