import type { Logger } from "pino";
import type { TrustStore } from "../signing/release.js";
import type { BlobStore } from "./blobstore.js";
import type { ServerConfig } from "./config.js";
import type { Db } from "./db/client.js";
import type { ServerMetrics } from "./metrics.js";

/** Everything a request handler needs, built once at start-up. */
export type ServerContext = {
  db: Db;
  store: BlobStore;
  config: ServerConfig;
  metrics: ServerMetrics;
  log: Logger;
  adminToken: string;
  /** Publisher keys every upload is verified against. */
  trust: TrustStore;
};
