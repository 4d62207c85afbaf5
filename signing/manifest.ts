// The plugin manifest (`manifest.json` at the root of every plugin tarball). The server derives a
// release's id and version from it and agents grant permissions from it, so it is validated by a
// strict schema: an unknown field is an error, never silently ignored, because a field one side
// understands and the other drops is how permission checks drift apart.

import semver from "semver";
import { z } from "zod";
import { ArcadeError, ErrorCode } from "./errors.js";

export const STAGES = ["before", "after", "on_success", "on_failure"] as const;
export type StageName = (typeof STAGES)[number];

/** Manifests are read into memory before anything is verified, so they are capped. */
export const MAX_MANIFEST_BYTES = 64 * 1024;

const ID_PART = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isValidPluginId(s: unknown): s is string {
  if (typeof s !== "string" || s.includes("..")) return false;
  const parts = s.split("/");
  return parts.length === 2 && parts.every((p) => ID_PART.test(p));
}

// Only the canonical form is accepted: `semver.valid` also takes "v1.2.3" and " 1.2.3", and ignores
// build metadata for precedence, so accepting those would give one release several keys.
export function isValidVersion(s: unknown): s is string {
  return typeof s === "string" && semver.valid(s) === s;
}

// Package-relative POSIX path in canonical form, so that "the entry exists" means the same thing
// to the packer, the extractor and the runner: no `.`/`..`/empty segments, no backslashes.
function isPackagePath(s: string): boolean {
  if (s.length === 0 || s.length > 1024 || s.startsWith("/") || /[\\\0]/.test(s)) return false;
  return s.split("/").every((seg) => seg !== "" && seg !== "." && seg !== "..");
}

// Schema-level messages win over the per-parse map, so they must handle "missing" themselves.
const must = (text: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? "is required" : text),
});

const permissionsSchema = z.strictObject({
  network: z.boolean().default(false),
  env: z
    .array(z.string().regex(ENV_NAME, "must be an environment variable name like SLACK_TOKEN"))
    .max(256)
    .default(() => []),
  paths: z
    .array(
      z
        .string()
        .min(1)
        .max(4096)
        .refine((p) => !p.includes("\0"), "must not contain NUL"),
    )
    .max(256)
    .default(() => []),
});

const manifestSchema = z.strictObject(
  {
    schemaVersion: z.literal(1, must("must be 1")),
    id: z.string().refine(isValidPluginId, "must be lowercase namespace/name, e.g. notify/slack"),
    version: z.string().refine(isValidVersion, "must be a canonical semantic version like 1.2.3 or 1.2.3-rc.1 (no 'v', no build metadata)"),
    entry: z.string().refine(isPackagePath, "must be a relative path inside the package, like dist/index.js"),
    runtime: z.literal("node", must('must be "node"')),
    stages: z
      .array(z.enum(STAGES, must(`must be one of ${STAGES.join(", ")}`)))
      .min(1, "must list at least one stage")
      .superRefine((stages, ctx) => {
        stages.forEach((s, i) => {
          if (stages.indexOf(s) !== i) ctx.addIssue({ code: "custom", path: [i], message: `duplicate stage "${s}"` });
        });
      }),
    permissions: permissionsSchema.default(() => ({ network: false, env: [], paths: [] })),
    description: z.string().max(1024),
    configSchema: z.record(z.string(), z.unknown(), must("must be a JSON object")).optional(),
  },
  must("must be a JSON object"),
);

export type PluginManifest = z.output<typeof manifestSchema>;

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)) out += out ? `.${key}` : key;
    // Unknown keys come from the uploader; quote them so newlines cannot forge log lines.
    else out += `[${JSON.stringify(String(key).slice(0, 64))}]`;
  }
  return out;
}

export function parseManifest(json: unknown): PluginManifest {
  const result = manifestSchema.safeParse(json, {
    error: (issue) => (issue.input === undefined && issue.code === "invalid_type" ? "is required" : undefined),
  });
  if (result.success) return result.data;
  const problems: { path: string; message: string }[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) problems.push({ path: formatPath([...issue.path, key]), message: "unknown field" });
    } else {
      problems.push({ path: formatPath(issue.path), message: issue.message });
    }
  }
  const text = problems
    .slice(0, 5)
    .map((p) => (p.path ? `${p.path}: ${p.message}` : p.message))
    .join("; ");
  const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : "";
  throw new ArcadeError(ErrorCode.MANIFEST_INVALID, `manifest.json: ${text}${more}`, { issues: problems });
}

/** Parses manifest.json bytes as read from a directory or an archive entry. */
export function parseManifestBytes(bytes: Uint8Array): PluginManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new ArcadeError(ErrorCode.MANIFEST_INVALID, `manifest.json: is ${bytes.length} bytes; the limit is ${MAX_MANIFEST_BYTES}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new ArcadeError(ErrorCode.MANIFEST_INVALID, `manifest.json: not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  return parseManifest(json);
}

export function pluginKey(id: string, version: string): string {
  return `${id}@${version}`;
}

export function parsePluginRef(ref: string): { id: string; version: string } {
  const at = typeof ref === "string" ? ref.indexOf("@") : -1;
  const id = at > 0 ? ref.slice(0, at) : "";
  const version = at > 0 ? ref.slice(at + 1) : "";
  if (!isValidPluginId(id) || !isValidVersion(version)) {
    throw new ArcadeError(
      ErrorCode.INVALID_ARGUMENT,
      `invalid plugin reference ${JSON.stringify(String(ref).slice(0, 200))}: expected namespace/name@version, e.g. notify/slack@1.2.0`,
    );
  }
  return { id, version };
}
