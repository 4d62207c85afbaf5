// Start-up cost of `arcade`: --help and --version load commander and nothing heavy, client
// commands load the gRPC client but no server, database or signing library. Checked by the
// modules each command resolves (test/helpers/module-trace.mjs), not by wall-clock time, which
// flakes on a busy machine; docs/BENCHMARKS.md has the timings.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { cliPath } from "../../cli/processes.js";
import { EXAMPLES, REPO, cleanup, tempDir } from "../helpers/harness.js";

const run = promisify(execFile);
afterAll(cleanup);

/** The npm packages a command loads (by package name), and its exit code. */
async function packagesLoadedBy(args: string[]): Promise<{ code: number; packages: Set<string>; stderr: string }> {
  const trace = path.join(tempDir(), "modules.txt");
  const env = { ...process.env, MODULE_TRACE_FILE: trace, ARCADE_ADMIN_TOKEN: "x" };
  const hook = path.join(REPO, "test", "helpers", "module-trace.mjs");
  const r = await run(process.execPath, ["--import", hook, cliPath(), ...args], { env }).then(
    (x) => ({ code: 0, stderr: x.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
  const urls = fs.existsSync(trace) ? fs.readFileSync(trace, "utf8").split("\n") : [];
  const packages = new Set(urls.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((p) => p !== undefined));
  return { ...r, packages };
}

const HEAVY = ["@prisma/client", "openpgp", "@sigstore/verify", "pino", "pino-pretty", "prom-client", "better-sqlite3", "pg", "tar"];

describe("arcade start-up", () => {
  it.each([["--version"], ["--help"], ["plugin", "--help"]])("`arcade %s` loads only commander", async (...args) => {
    const r = await packagesLoadedBy(args);
    expect(r.code).toBe(0);
    expect([...r.packages]).toEqual(["commander"]);
  });

  it("a client command (acl list) loads the gRPC client, no server, database, signing or logging library", async () => {
    // Port 1 refuses at once: the command fails after loading everything it would use.
    const r = await packagesLoadedBy(["acl", "list", "--server", "127.0.0.1:1"]);
    expect(r.stderr).toMatch(/^error SERVER_UNAVAILABLE/);
    expect(r.packages).toContain("@grpc/grpc-js");
    for (const p of [...HEAVY, "zod", "yaml"]) expect(r.packages, p).not.toContain(p);
  });

  it("plugin inspect of an unsigned tarball loads no signing, database or gRPC library", async () => {
    const tgz = path.join(tempDir(), "n.tgz");
    await run(process.execPath, [cliPath(), "plugin", "pack", path.join(EXAMPLES, "notify-console"), "-o", tgz]);
    const r = await packagesLoadedBy(["plugin", "inspect", tgz]);
    expect(r.code).toBe(0);
    for (const p of HEAVY.filter((x) => x !== "tar").concat("@grpc/grpc-js")) expect(r.packages, p).not.toContain(p);
  });
});
