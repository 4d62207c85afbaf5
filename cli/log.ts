// Structured logs: JSON lines when the output is a file or a pipe (what log shippers read),
// pretty when a person watches a terminal. Fields plugin_id, version, agent_id and job_id are
// used everywhere so `grep plugin_id` works on both forms.
import { pino, type Logger } from "pino";

export function createLogger(name: string, opts: { level?: string; pretty?: boolean } = {}): Logger {
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
