// Stable names for the log lines that tests, the demo, benchmarks and operators wait on or alert
// on. Each such line carries `event: EVENT.X` beside its human message; the message may be
// reworded freely, the event name may not (treat a rename like an API change). Defined here, at
// the bottom of the dependency graph, so server, agent and cli share one vocabulary.
// Names are dotted lower-case: <emitter>.<subject>.<what happened>.

export const EVENT = {
  // --- server ---
  /** `arcade server start` is listening and serving; carries `grpc` and `metrics` addresses. */
  SERVER_READY: "server.ready",
  SERVER_LISTENING: "server.listening",
  SERVER_INSECURE: "server.insecure",
  SERVER_DEVELOPMENT_MODE: "server.development_mode",
  SERVER_UNSIGNED_ALLOWED: "server.unsigned_allowed",
  SERVER_MIGRATION: "server.migration",
  SERVER_AGENT_REGISTERED: "server.agent.registered",
  SERVER_JOB_SUBMITTED: "server.job.submitted",
  SERVER_JOB_DISPATCHED: "server.job.dispatched",
  SERVER_JOB_COMPLETED: "server.job.completed",
  SERVER_JOB_TIMED_OUT: "server.job.timed_out",
  /** No agent took a pending job within jobs.pending_timeout; carries `job_id`. */
  SERVER_JOB_EXPIRED: "server.job.expired",
  SERVER_JOB_SWEEP_FAILED: "server.job.sweep_failed",
  SERVER_PLUGIN_PUBLISHED: "server.plugin.published",
  /** A download stream finished; carries `plugin_id`, `offset` and `bytes`. */
  SERVER_PLUGIN_SERVED: "server.plugin.served",
  SERVER_PLUGIN_DOWNLOAD_CANCELLED: "server.plugin.download_cancelled",
  SERVER_BLOB_CORRUPT: "server.blob.corrupt",
  SERVER_REQUEST_REFUSED: "server.request.refused",
  SERVER_INTERNAL_ERROR: "server.internal_error",
  SERVER_AUDIT_NOT_RECORDED: "server.audit.not_recorded",

  // --- agent ---
  AGENT_TRUST_LOADED: "agent.trust.loaded",
  /** Which sandbox layers work on this host; carries `sandbox`. */
  AGENT_SANDBOX_DETECTED: "agent.sandbox.detected",
  AGENT_BUILTIN_INSTALLED: "agent.builtin.installed",
  AGENT_ENROLLED: "agent.enrolled",
  /** A Register call succeeded (the first one and every re-registration). */
  AGENT_REGISTERED: "agent.registered",
  /** `arcade agent start` is registered and polling; logged once, after the first Register. */
  AGENT_READY: "agent.ready",
  /** The server could not be reached or refused for a reason that may pass; the agent retries. */
  AGENT_SERVER_UNREACHABLE: "agent.server.unreachable",
  /** The agent stops because retrying can never succeed; carries `code` and `reason`. */
  AGENT_FATAL: "agent.fatal",
  AGENT_JOB_RECEIVED: "agent.job.received",
  AGENT_JOB_REJECTED: "agent.job.rejected",
  AGENT_JOB_COMMANDS: "agent.job.commands",
  /** One job command started; carries `job_id` and `command`. */
  AGENT_COMMAND_STARTED: "agent.command.started",
  AGENT_JOB_FINISHED: "agent.job.finished",
  AGENT_JOB_ABORTED: "agent.job.aborted",
  AGENT_STAGE_FINISHED: "agent.stage.finished",
  AGENT_REPORT_FAILED: "agent.report.failed",
  AGENT_CACHE_HIT: "agent.cache.hit",
  AGENT_CACHE_MISS: "agent.cache.miss",
  /** Bytes have started to arrive for a download (after the signed header verified). */
  AGENT_DOWNLOAD_STARTED: "agent.download.started",
  AGENT_DOWNLOAD_RESUMING: "agent.download.resuming",
  /** Signature, digest, safe extraction and manifest checked; the self-test and install come next. */
  AGENT_PLUGIN_VERIFIED: "agent.plugin.verified",
  /** A plugin passed every check and is in the index: usable from now on. */
  AGENT_PLUGIN_INSTALLED: "agent.plugin.installed",
  AGENT_PLUGIN_REFUSED: "agent.plugin.refused",
  AGENT_PLUGIN_QUARANTINED: "agent.plugin.quarantined",
  AGENT_CACHE_ENTRY_REMOVED: "agent.cache.entry_removed",
  AGENT_CACHE_INDEX_UNREADABLE: "agent.cache.index_unreadable",
  AGENT_CACHE_SWEPT: "agent.cache.swept",
  /** A re-verification pass finished; carries `checked`, `ok`, `quarantined`. */
  AGENT_CACHE_REVERIFIED: "agent.cache.reverified",
  AGENT_CACHE_REVERIFY_FAILED: "agent.cache.reverify_failed",
} as const;

export type EventName = (typeof EVENT)[keyof typeof EVENT];
