import type { Logger } from "pino";
import type { ServerUnaryCall } from "@grpc/grpc-js";
import type { TrustStore } from "../signing/release.js";
import type { AclStore } from "./acl-store.js";
import type { AuditLog } from "./audit.js";
import type { AuthThrottle } from "./ratelimit.js";
import type { BlobStore } from "./blobstore.js";
import type { ServerConfig } from "./config.js";
import type { Db } from "./db/client.js";
import type { ServerMetrics } from "./metrics.js";

/** What every kind of server call offers: its peer, its TLS context and its metadata. */
export type SurfaceCall = Pick<ServerUnaryCall<unknown, unknown>, "getPeer" | "getAuthContext" | "metadata">;

/** Everything a request handler needs, built once at start-up. */
export type ServerContext = {
  db: Db;
  store: BlobStore;
  config: ServerConfig;
  metrics: ServerMetrics;
  log: Logger;
  /** Publisher keys every upload is verified against. */
  trust: TrustStore;
  acl: AclStore;
  audit: AuditLog;
  /** Slows down and locks out sources that keep failing authentication. */
  throttle: AuthThrottle;
  /** The agent id named by the call's client certificate (mTLS), or undefined without one. */
  peerAgentId(call: SurfaceCall): string | undefined;
};
