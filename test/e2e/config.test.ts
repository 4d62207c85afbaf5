// Bad configuration stops the process at start with a message naming the key.
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { spawnArcade } from "../../cli/processes.js";
import { cleanup, tempDir } from "../helpers/harness.js";
import { publisher } from "../helpers/keys.js";

afterAll(cleanup);

async function startWith(kind: "server" | "agent", file: string, body: string, env: NodeJS.ProcessEnv = {}) {
  const dir = tempDir();
  const cfg = path.join(dir, file);
  fs.writeFileSync(cfg, body);
  const p = spawnArcade([kind, "start", "--config", cfg], env);
  const code = await p.closed; // (closed, not exited: all of stderr has been read)
  return { code, stderr: p.stderr.join("\n") };
}

describe("server config", () => {
  it.each([
    ["a wrong type", `[plugin]\nmax_plugin_size = "big"\n`, "plugin.max_plugin_size"],
    ["an unknown key", `[plugin]\nmax_size = 10\n`, "plugin.max_size"],
    ["an unknown section", `[plugins]\nstorage_path = "x"\n`, "plugins"],
    ["a bad listen address", `[server]\nlisten = "localhost"\n`, "server.listen"],
    ["require_checksum off in production", `[plugin]\nrequire_checksum = false\n`, "plugin.require_checksum"],
    ["invalid TOML", `[plugin\n`, "not valid TOML"],
  ])("refuses %s", async (_what, toml, expected) => {
    const r = await startWith("server", "config.toml", toml);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error CONFIG_INVALID");
    expect(r.stderr).toContain(expected);
  });

  it("refuses a bad value from an environment override, naming the key", async () => {
    const r = await startWith("server", "config.toml", `[server]\nlisten = "127.0.0.1:0"\n`, { ARCADE_PLUGIN_MAX_PLUGIN_SIZE: "-5" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/CONFIG_INVALID.*plugin\.max_plugin_size/);
  });

  it("refuses plaintext on a non-loopback address without --insecure", async () => {
    const dir = tempDir();
    const r = await startWith(
      "server",
      "config.toml",
      `[server]\nlisten = "0.0.0.0:0"\ndata_dir = "${dir}"\n[metrics]\nlisten = ""\n[trust]\nkeyring = "${(await publisher()).keyring}"\n`,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--insecure");
  });
});

describe("agent config", () => {
  it.each([
    ["a missing id", `server: 127.0.0.1:1\n`, "id"],
    ["an unknown key", `id: a1\nserver: 127.0.0.1:1\nplugins:\n  cache_sise: 10\n`, "plugins.cache_sise"],
    ["a wrong type", `id: a1\nserver: 127.0.0.1:1\nplugins:\n  download_timeout: soon\n`, "plugins.download_timeout"],
    ["a bad builtin reference", `id: a1\nserver: 127.0.0.1:1\nplugins:\n  builtin: ["slack"]\n`, "plugins.builtin[0]"],
    ["a non-loopback server without insecure", `id: a1\nserver: 10.0.0.1:50051\n`, "insecure"],
    ["duplicate keys", `id: a1\nid: a2\nserver: 127.0.0.1:1\n`, "not valid YAML"],
  ])("refuses %s", async (_what, yaml, expected) => {
    const r = await startWith("agent", "agent.yaml", yaml);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error CONFIG_INVALID");
    expect(r.stderr).toContain(expected);
  });

  it("refuses a listed built-in plugin that is not there", async () => {
    const dir = tempDir();
    const r = await startWith(
      "agent",
      "agent.yaml",
      `id: a1\nserver: 127.0.0.1:1\nplugins:\n  directory: ${dir}\n  builtin: ["notify/slack@1.0.0"]\nmetrics_listen: ""\ntrust:\n  keyring: ${(await publisher()).keyring}\n`,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("notify/slack@1.0.0");
  });
});
