// The server's Prometheus metrics. The HTTP endpoint that exposes them is cli/metrics-endpoint.ts,
// shared with the agent.
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class ServerMetrics {
  readonly registry = new Registry();
  /** status: served | denied | not_found | corrupt | failed */
  readonly downloads = new Counter({
    name: "plugin_download_total",
    help: "Plugin downloads handled by the server, by outcome",
    labelNames: ["plugin_id", "version", "status"] as const,
    registers: [this.registry],
  });
  readonly downloadBytes = new Counter({
    name: "plugin_download_bytes_total",
    help: "Plugin bytes sent to agents",
    labelNames: ["plugin_id"] as const,
    registers: [this.registry],
  });
  readonly downloadDuration = new Histogram({
    name: "plugin_download_duration_seconds",
    help: "Time to stream one plugin to an agent",
    labelNames: ["plugin_id"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  /** status: created | existing | <error code> */
  readonly publishes = new Counter({
    name: "plugin_publish_total",
    help: "Plugin publish attempts, by outcome",
    labelNames: ["status"] as const,
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: "job_total",
    help: "Job state changes (submitted, dispatched, succeeded, failed)",
    labelNames: ["event"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
