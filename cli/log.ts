// Structured logs: JSON lines when the output is a file or a pipe (what log shippers read),
// pretty when a person watches a terminal. Fields plugin_id, version, agent_id and job_id are
// used everywhere so `grep plugin_id` works on both forms.
import { pino, type Logger } from "pino";

/** `toStderr`: for commands whose stdout is their result (e.g. --json), logs go to stderr as JSON lines. */
export function createLogger(name: string, opts: { level?: string; pretty?: boolean; toStderr?: boolean } = {}): Logger {
  if (opts.toStderr)
    return pino({ name, level: opts.level ?? process.env.ARCADE_LOG_LEVEL ?? "info", base: { name } }, pino.destination(2));
  const level = opts.level ?? process.env.ARCADE_LOG_LEVEL ?? "info";
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && process.env.ARCADE_LOG_FORMAT !== "json");
  if (pretty) {
    return pino({
      name,
      level,
      transport: { target: "pino-pretty", options: { colorize: true, ignore: "pid,hostname", translateTime: "HH:MM:ss.l" } },
    });
  }
  return pino({ name, level, base: { name } });
}
