// The seed's five agent metrics. `status` on downloads is "success" or the error code that
// stopped it (CHECKSUM_MISMATCH, BLOB_CORRUPT, ...), so alerts can match on the reason.
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class AgentMetrics {
  readonly registry = new Registry();
  readonly downloads = new Counter({
    name: "plugin_download_total",
    help: "Plugin downloads by the agent, by outcome",
    labelNames: ["plugin_id", "version", "status"] as const,
    registers: [this.registry],
  });
  readonly downloadDuration = new Histogram({
    name: "plugin_download_duration_seconds",
    help: "Time to download, verify and install one plugin",
    labelNames: ["plugin_id"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly downloadSize = new Histogram({
    name: "plugin_download_size_bytes",
    help: "Size of downloaded plugins",
    labelNames: ["plugin_id"] as const,
    buckets: [1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28, 1 << 30],
    registers: [this.registry],
  });
  readonly cacheHits = new Counter({
    name: "plugin_cache_hit_total",
    help: "Plugins a job needed that were already in the cache",
    labelNames: ["plugin_id"] as const,
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: "plugin_cache_miss_total",
    help: "Plugins a job needed that had to be downloaded",
    labelNames: ["plugin_id"] as const,
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: "agent_job_total",
    help: "Jobs run by this agent, by outcome",
    labelNames: ["status"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
