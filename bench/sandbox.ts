// `node dist/bench/sandbox.js [rounds]`: what each sandbox layer costs a plugin's start-up. Times
// PluginProcess.start() (work dir, layer preparation, spawn, handshake up to the plugin's hello)
// and then one stage plus close(), for layer stacks from a bare process to the full sandbox. The
// variants run interleaved, in a rotated order each round, because this box is shared and noisy:
// compare medians and the ratios to the bare process, not single runs. Needs the build (dist/).
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { detectSandbox, formatSandboxReport, type SandboxLayerName } from "../agent/sandbox/detect.js";
import type { SandboxOptions } from "../agent/sandbox/layers.js";
import { PluginProcess } from "../agent/sandbox/runner.js";
import type { PluginManifest } from "../signing/manifest.js";

const rounds = Math.max(1, Number(process.argv[2] ?? 20) || 20);
const ALL: SandboxLayerName[] = ["permission-model", "rlimits", "uid-drop", "namespaces"];
const without = (...keep: SandboxLayerName[]) => ALL.filter((l) => !keep.includes(l));

const report = await detectSandbox();
const variants: { name: string; needs: SandboxLayerName[]; tool?: "bwrap" | "unshare"; sandbox: SandboxOptions }[] = [
  { name: "process only", needs: [], sandbox: { disable: ALL } },
  { name: "+ permission model", needs: ["permission-model"], sandbox: { disable: without("permission-model") } },
  { name: "+ prlimit", needs: ["permission-model", "rlimits"], sandbox: { disable: without("permission-model", "rlimits") } },
  { name: "+ uid drop", needs: ["permission-model", "rlimits", "uid-drop"], sandbox: { disable: ["namespaces"] } },
  { name: "+ bwrap (full)", needs: ALL, tool: "bwrap", sandbox: { namespaceTool: "bwrap" } },
  { name: "full, unshare for bwrap", needs: ALL, tool: "unshare", sandbox: { namespaceTool: "unshare" } },
  { name: "bwrap only", needs: ["namespaces"], tool: "bwrap", sandbox: { disable: without("namespaces"), namespaceTool: "bwrap" } },
];
const layerOn: Record<SandboxLayerName, boolean> = {
  "permission-model": !!report.layers.permissionModel,
  rlimits: !!report.layers.rlimits,
  "uid-drop": !!report.layers.uidDrop,
  namespaces: !!report.layers.namespaces,
};
const runnable = variants.filter((v) => v.needs.every((l) => layerOn[l]) && (!v.tool || report.namespaceTools[v.tool]));

const root = await fsp.mkdtemp(path.join(os.tmpdir(), "arcade-bench-sandbox-"));
try {
  const pluginDir = path.join(root, "plugin");
  const workspace = path.join(root, "workspace");
  await fsp.mkdir(pluginDir);
  await fsp.mkdir(workspace, { mode: 0o700 });
  const manifest: PluginManifest = {
    schemaVersion: 1,
    id: "bench/noop",
    version: "1.0.0",
    entry: "index.mjs",
    runtime: "node",
    stages: ["before"],
    permissions: { network: false, env: [], paths: [] },
    description: "bench",
  };
  await fsp.writeFile(path.join(pluginDir, "manifest.json"), JSON.stringify(manifest));
  await fsp.writeFile(path.join(pluginDir, "index.mjs"), "export async function before(ctx) { return ctx.job.id; }\n");

  const samples = new Map(runnable.map((v) => [v.name, { start: [] as number[], rest: [] as number[] }]));
  const once = async (v: (typeof runnable)[number]) => {
    const t0 = performance.now();
    const proc = await PluginProcess.start({
      pluginDir,
      manifest,
      workRoot: path.join(root, "work"),
      jobWorkspace: workspace,
      sandbox: v.sandbox,
    });
    const t1 = performance.now();
    const outcome = await proc.runStage("before", {}, { id: "bench" });
    await proc.close();
    if (!outcome.ok) throw new Error(`${v.name}: stage failed: ${outcome.error?.message}`);
    const s = samples.get(v.name)!;
    s.start.push(t1 - t0);
    s.rest.push(performance.now() - t1);
  };
  for (const v of runnable) await once(v); // warm-up, not counted
  for (const s of samples.values()) {
    s.start.length = 0;
    s.rest.length = 0;
  }
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < runnable.length; i++) await once(runnable[(i + r) % runnable.length]!);
  }

  const quantile = (xs: number[], q: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  };
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const base = median(samples.get("process only")?.start ?? [NaN]);
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(2)}, ${rounds} rounds`);
  console.log(formatSandboxReport(report));
  console.log(
    `${"layers".padEnd(26)} ${"start→hello median".padStart(18)} ${"p90".padStart(8)} ${"ratio".padStart(6)} ${"stage+close".padStart(12)}`,
  );
  for (const v of runnable) {
    const s = samples.get(v.name)!;
    const m = median(s.start);
    console.log(
      `${v.name.padEnd(26)} ${`${m.toFixed(1)} ms`.padStart(18)} ${`${quantile(s.start, 0.9).toFixed(1)}`.padStart(8)} ${(m / base).toFixed(2).padStart(6)} ${`${median(s.rest).toFixed(1)} ms`.padStart(12)}`,
    );
  }
  const skipped = variants.filter((v) => !runnable.includes(v)).map((v) => v.name);
  if (skipped.length > 0) console.log(`not available here: ${skipped.join(", ")}`);
} finally {
  await fsp.rm(root, { recursive: true, force: true });
}
