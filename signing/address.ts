// host:port helpers with no heavy dependencies, so the CLI's client path can use them without
// loading zod (signing/validation.ts re-exports them for everyone else).
import { ArcadeError, ErrorCode, errorMessageOf } from "./errors.js";

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(listen.slice(i + 1)) };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const BIND_ERRNO: Record<string, string> = {
  EADDRINUSE: "the address is already in use (another process listens there)",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EADDRNOTAVAIL: "this host has no such address",
};

/**
 * A failure to listen on `listen`, set by config key `key` (e.g. server.listen, or the agent's
 * metrics_listen), as an error that names the key and its variable. grpc-js reports bind
 * failures as one Error whose message carries the errno name, hence the search for it there.
 */
export function bindError(e: unknown, key: string, env: string, listen: string): ArcadeError {
  const errno = (e as NodeJS.ErrnoException).code ?? Object.keys(BIND_ERRNO).find((c) => errorMessageOf(e).includes(c));
  const why = (errno && BIND_ERRNO[errno]) ?? errorMessageOf(e);
  return new ArcadeError(
    ErrorCode.LISTEN_FAILED,
    `cannot listen on ${listen} (${key}): ${why}; set ${key} (or ${env}) to a free address, e.g. 127.0.0.1:0 for any free port`,
    { key, listen, errno },
  );
}
