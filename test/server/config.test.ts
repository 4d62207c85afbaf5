import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const dirs: string[] = [];
const made = (d: string) => (dirs.push(d), d);
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
import { loadServerConfig } from "../../server/config.js";

/** A config file; a [trust] keyring is added unless the body configures trust itself. */
function write(body: string): string {
  const dir = made(fs.mkdtempSync(path.join(os.tmpdir(), "arcade-cfg-")));
  const f = path.join(dir, "config.toml");
  fs.writeFileSync(f, body.includes("[trust]") ? body : `${body}\n[trust]\nkeyring = "publishers.asc"\n`);
  return f;
}

describe("server config", () => {
  it("has safe defaults: loopback, checksums required, production mode, embedded SQLite under data_dir", () => {
    const f = write("");
    const c = loadServerConfig(f, {});
    expect(c.listen).toBe("127.0.0.1:50051");
    expect(c.requireChecksum).toBe(true);
    expect(c.mode).toBe("production");
    expect(c.maxPluginBytes).toBe(512 * 1024 * 1024);
    expect(c.databaseUrl).toBe(`file:${path.join(path.dirname(f), "arcade-data", "arcade.db")}`);
    expect(c.storagePath).toBe(path.join(path.dirname(f), "arcade-data", "plugins"));
  });

  it("reads the seed's [plugin] keys and resolves paths relative to the file", () => {
    const f = write(
      `[plugin]\nstorage_path = "blobs"\nmax_plugin_size = 100\nrequire_checksum = true\n[database]\nurl = "postgresql://u@127.0.0.1/db"\n`,
    );
    const c = loadServerConfig(f, {});
    expect(c.storagePath).toBe(path.join(path.dirname(f), "blobs"));
    expect(c.maxPluginBytes).toBe(100 * 1024 * 1024);
    expect(c.databaseUrl).toBe("postgresql://u@127.0.0.1/db");
  });

  it("lets ARCADE_<SECTION>_<KEY> override the file and reports which did", () => {
    const f = write(`[plugin]\nmax_plugin_size = 100\n`);
    const c = loadServerConfig(f, { ARCADE_PLUGIN_MAX_PLUGIN_SIZE: "7", ARCADE_SERVER_LISTEN: "127.0.0.1:6000", ARCADE_UNRELATED: "x" });
    expect(c.maxPluginBytes).toBe(7 * 1024 * 1024);
    expect(c.listen).toBe("127.0.0.1:6000");
    expect(c.overrides.sort()).toEqual(["ARCADE_PLUGIN_MAX_PLUGIN_SIZE", "ARCADE_SERVER_LISTEN"]);
  });

  it("resolves trusted key files relative to the config and allows unsigned plugins only in development on loopback", () => {
    const f = write(`[trust]\nkeyring = "keys/pub.asc"\nsigstore_keys = [{ hint = "acme", key = "keys/s.pem" }]\n`);
    expect(loadServerConfig(f, {}).trust).toEqual({
      keyring: path.join(path.dirname(f), "keys", "pub.asc"),
      sigstoreKeys: [{ hint: "acme", key: path.join(path.dirname(f), "keys", "s.pem") }],
      allowUnsigned: false,
    });
    expect(loadServerConfig(write(`[server]\nmode = "development"\n[trust]\nallow_unsigned = true\n`), {}).trust.allowUnsigned).toBe(true);
  });

  it("allows require_checksum = false only in development mode", () => {
    expect(() => loadServerConfig(write(`[plugin]\nrequire_checksum = false\n`), {})).toThrow(/production/);
    expect(loadServerConfig(write(`[server]\nmode = "development"\n[plugin]\nrequire_checksum = false\n`), {}).requireChecksum).toBe(false);
  });

  it.each([
    [`[plugin]\nmax_plugin_size = 0\n`, "plugin.max_plugin_size"],
    [`[plugin]\nmax_plugin_size = 4096\n`, "plugin.max_plugin_size"],
    [`[plugin]\nchunk_size = 8388608\n`, "plugin.chunk_size"],
    [`[server]\nmode = "prod"\n`, "server.mode"],
    [`[metrics]\nlisten = 9464\n`, "metrics.listen"],
    [`extra = 1\n`, "extra"],
    [`[trust]\n`, "trust.keyring: required"],
    [`[trust]\nallow_unsigned = true\n`, "trust.allow_unsigned"],
    [`[server]\nmode = "development"\nlisten = "0.0.0.0:1"\n[trust]\nallow_unsigned = true\n`, "trust.allow_unsigned"],
    [`[trust]\nkeyring = "k"\nsigstore_keys = [{ hint = "h" }]\n`, "trust.sigstore_keys[0].key"],
  ])("names the offending key: %s", (toml, key) => {
    expect(() => loadServerConfig(write(toml), {})).toThrow(
      expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining(key) }),
    );
  });
});
