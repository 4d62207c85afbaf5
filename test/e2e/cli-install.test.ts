// README "Install the `arcade` command": its shell blocks, run as written with npm's global
// prefix in a temp dir, put a working `arcade` on PATH without rebuilding or rewriting dist/.
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { REPO, cleanup, tempDir } from "../helpers/harness.js";

const run = promisify(execFile);
afterAll(cleanup);

/** The command lines of every ```sh block in the README subsection with this heading. */
function readmeCommands(heading: string): string[] {
  const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
  const start = readme.indexOf(`### ${heading}`);
  expect(start).toBeGreaterThan(0);
  const end = readme.slice(start + 4).search(/\n##/);
  const section = readme.slice(start, end < 0 ? undefined : start + 4 + end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) =>
    m[1]!
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean),
  );
}

describe("README: install the arcade command", () => {
  it("npm link puts arcade on PATH, leaves dist/ alone, and npm rm -g takes it away", { timeout: 120_000 }, async () => {
    const commands = readmeCommands("Install the `arcade` command");
    expect(commands).toEqual(["npm link", "arcade --version", "npm rm -g arcade-supply-chain"]);
    const prefix = tempDir("arcade-prefix-");
    const env = {
      ...process.env,
      npm_config_prefix: prefix,
      npm_config_update_notifier: "false",
      npm_config_audit: "false",
      npm_config_fund: "false",
      PATH: `${path.join(prefix, "bin")}${path.delimiter}${process.env.PATH}`,
    };
    const main = path.join(REPO, "dist", "cli", "main.js");
    const before = fs.statSync(main).mtimeMs;
    const sh = (cmd: string) => run("sh", ["-c", cmd], { cwd: REPO, env });

    await sh(commands[0]!);
    expect(fs.realpathSync(path.join(prefix, "bin", "arcade"))).toBe(fs.realpathSync(main));
    const version = JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string };
    expect((await sh(commands[1]!)).stdout.trim()).toBe(version.version);
    expect(fs.statSync(main).mtimeMs).toBe(before);

    await sh(commands[2]!);
    expect(fs.existsSync(path.join(prefix, "bin", "arcade"))).toBe(false);
  });

  it("the package name is not the unrelated public `arcade`, and its bin is arcade", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { name: string; bin: Record<string, string> };
    expect(pkg.name).toBe("arcade-supply-chain");
    expect(pkg.bin).toEqual({ arcade: "dist/cli/main.js" });
  });
});
