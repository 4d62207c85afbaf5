// /metrics and /healthz on their own port, so scraping never shares a listener with the gRPC
// API. Used for both the server and the agent.
import http from "node:http";
import type { Registry } from "prom-client";
import { bindError, splitHostPort } from "../signing/address.js";

/** Serves /metrics and /healthz; resolves with the bound address (port 0 picks a free one). */
export async function serveMetrics(
  registry: Registry,
  listen: string,
  healthy: () => Promise<boolean>,
  /** The config key that set `listen` and its variable, named when the port cannot be bound. */
  setting: { key: string; env: string } = { key: "metrics.listen", env: "ARCADE_METRICS_LISTEN" },
): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    void (async () => {
      if (req.method !== "GET") {
        res.writeHead(405).end();
      } else if (req.url === "/metrics") {
        res.writeHead(200, { "content-type": registry.contentType }).end(await registry.metrics());
      } else if (req.url === "/healthz") {
        const ok = await healthy().catch(() => false);
        res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "unhealthy\n");
      } else {
        res.writeHead(404).end();
      }
    })().catch(() => res.writeHead(500).end());
  });
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(bindError(e, setting.key, setting.env, listen)));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? `${host}:${addr.port}` : listen;
  return {
    address: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
