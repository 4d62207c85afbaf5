import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const dirs: string[] = [];
const made = (d: string) => (dirs.push(d), d);
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
import { loadAgentConfig } from "../../agent/config.js";

/** A config file; a trust keyring is added unless the body configures trust itself. */
function write(body: string): string {
  const dir = made(fs.mkdtempSync(path.join(os.tmpdir(), "arcade-cfg-")));
  const f = path.join(dir, "agent.yaml");
  fs.writeFileSync(f, body.includes("trust:") || body.startsWith("-") ? body : `${body}\ntrust:\n  keyring: publishers.asc\n`);
  return f;
}

describe("agent config", () => {
  it("reads the seed's keys with units converted", () => {
    const f = write(
      `id: build-7\nserver: 127.0.0.1:50051\nplugins:\n  directory: cache\n  download_timeout: 30\n  cache_size: 10\n  builtin: [notify/slack@1.2.0]\n`,
    );
    const c = loadAgentConfig(f, {});
    expect(c).toMatchObject({
      id: "build-7",
      server: "127.0.0.1:50051",
      downloadTimeoutMs: 30_000,
      cacheSizeBytes: 10 * 1024 * 1024,
      builtin: ["notify/slack@1.2.0"],
    });
    expect(c.pluginsDir).toBe(path.join(path.dirname(f), "cache"));
  });

  it("takes ARCADE_AGENT_* overrides, validated like the file", () => {
    const f = write(`id: a\nserver: 127.0.0.1:1\n`);
    expect(loadAgentConfig(f, { ARCADE_AGENT_PLUGINS_CACHE_SIZE: "5", ARCADE_AGENT_ID: "b" })).toMatchObject({
      id: "b",
      cacheSizeBytes: 5 * 1024 * 1024,
    });
    expect(() => loadAgentConfig(f, { ARCADE_AGENT_PLUGINS_CACHE_SIZE: "lots" })).toThrow(/plugins\.cache_size/);
  });

  it("allows a non-loopback server only with insecure: true", () => {
    expect(() => loadAgentConfig(write(`id: a\nserver: 192.0.2.1:50051\n`), {})).toThrow(/insecure/);
    expect(loadAgentConfig(write(`id: a\nserver: 192.0.2.1:50051\ninsecure: true\n`), {}).insecure).toBe(true);
  });

  it.each([
    [`id: "bad id"\nserver: 127.0.0.1:1\n`, "id"],
    [`id: a\nserver: nowhere\n`, "server"],
    [`id: a\nserver: 127.0.0.1:1\nplugins:\n  max_parallel_downloads: 0\n`, "plugins.max_parallel_downloads"],
    [`- a\n- b\n`, "mapping"],
    [`id: a\nserver: 127.0.0.1:1\ntrust: {}\n`, "trust.keyring: required"],
    [`id: a\nserver: 127.0.0.1:1\ntls:\n  cert: c.pem\n  key: k.pem\n`, "tls.ca: required"],
    [`id: a\nserver: 127.0.0.1:1\nplugins:\n  verify_interval: 2592000\n`, "plugins.verify_interval"],
  ])("names the offending key: %s", (yaml, key) => {
    expect(() => loadAgentConfig(write(yaml), {})).toThrow(
      expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining(key) }),
    );
  });
});
