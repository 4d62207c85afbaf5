// `arcade job submit`: a job spec from flags or a YAML/JSON file (its own module: it needs zod and
// yaml, which `job status` does not).
import fs from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { JobPluginSpec, SubmitJobRequest } from "../proto/gen/arcade/v1/admin.js";
import { stageFromName } from "../proto/stages.js";
import { ArcadeError, ErrorCode, errorMessageOf } from "../signing/errors.js";
import { parsePluginRef } from "../signing/manifest.js";
import { parseWith } from "../signing/validation.js";

const JobFile = z.strictObject({
  commands: z.array(z.string().min(1)).default([]),
  plugins: z
    .array(
      z.strictObject({
        plugin: z.string().min(3),
        stage: z.enum(["before", "after", "on_success", "on_failure"]),
        order: z.number().int().min(0).default(0),
        config: z.record(z.string(), z.unknown()).default({}),
      }),
    )
    .default([]),
  agent: z.string().optional(),
  timeout: z.number().int().min(1).optional(),
});

export type SubmitFlags = { run?: string[]; plugin?: string[]; config?: string[]; file?: string; agent?: string; timeout?: string };

export function buildJobRequest(f: SubmitFlags): SubmitJobRequest {
  const req: SubmitJobRequest = { commands: [], plugins: [], agentId: f.agent ?? "", timeoutSeconds: f.timeout ? Number(f.timeout) : 0 };
  if (f.file) {
    let doc: unknown;
    try {
      doc = parseYaml(fs.readFileSync(f.file, "utf8"));
    } catch (e) {
      throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `${f.file}: ${errorMessageOf(e)}`);
    }
    const j = parseWith(JobFile, doc, f.file, ErrorCode.INVALID_ARGUMENT);
    req.commands.push(...j.commands);
    for (const p of j.plugins) req.plugins.push(spec(p.plugin, p.stage, p.order, JSON.stringify(p.config)));
    if (j.agent && !f.agent) req.agentId = j.agent;
    if (j.timeout && !f.timeout) req.timeoutSeconds = j.timeout;
  }
  req.commands.push(...(f.run ?? []));
  const configs = new Map<string, string>();
  for (const c of f.config ?? []) {
    const i = c.indexOf("=");
    if (i < 1) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `--config ${c}: expected <plugin id>=<JSON object>`);
    configs.set(c.slice(0, i), c.slice(i + 1));
  }
  for (const p of f.plugin ?? []) {
    const [ref, stage = "", order = "0"] = p.split(":");
    const { id } = parsePluginRef(ref!);
    req.plugins.push(spec(ref!, stage, Number(order), configs.get(id) ?? "{}"));
  }
  if (Number.isNaN(req.timeoutSeconds)) throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, "--timeout must be a number of seconds");
  return req;
}

function spec(ref: string, stage: string, order: number, configJson: string): JobPluginSpec {
  const { id, version } = parsePluginRef(ref);
  const s = stageFromName(stage);
  if (s === undefined)
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      `plugin ${ref}: stage must be before, after, on_success or on_failure (write ${ref}:before:1)`,
    );
  if (!Number.isInteger(order) || order < 0)
    throw new ArcadeError(ErrorCode.INVALID_ARGUMENT, `plugin ${ref}: order must be a whole number`);
  return { pluginId: id, version, stage: s, executionOrder: order, configJson };
}
