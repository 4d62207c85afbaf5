import { describe, expect, it } from "vitest";
import { ArcadeError } from "../../signing/errors.js";
import {
  STAGES,
  isValidPluginId,
  isValidVersion,
  parseManifest,
  parseManifestBytes,
  parsePluginRef,
  pluginKey,
} from "../../signing/manifest.js";
import { validManifest } from "./tar-helpers.js";

function invalid(json: unknown): ArcadeError {
  try {
    parseManifest(json);
  } catch (e) {
    expect(e).toBeInstanceOf(ArcadeError);
    expect((e as ArcadeError).code).toBe("MANIFEST_INVALID");
    return e as ArcadeError;
  }
  throw new Error("expected MANIFEST_INVALID");
}

describe("parseManifest", () => {
  it("accepts a valid manifest and fills permission defaults", () => {
    const m = parseManifest(validManifest({ permissions: { network: true }, configSchema: { type: "object" } }));
    expect(m).toMatchObject({ id: "notify/slack", version: "1.2.0", stages: ["after", "on_failure"] });
    expect(m.permissions).toEqual({ network: true, env: [], paths: [] });
    expect(m.configSchema).toEqual({ type: "object" });
  });

  it("defaults a missing permissions block to no permissions", () => {
    const { permissions: _omit, ...rest } = validManifest();
    expect(parseManifest(rest).permissions).toEqual({ network: false, env: [], paths: [] });
    expect(STAGES).toEqual(["before", "after", "on_success", "on_failure"]);
  });

  it.each([
    [{ schemaVersion: 2 }, "manifest.json: schemaVersion: must be 1"],
    [{ id: "Notify/slack" }, "manifest.json: id: "],
    [{ version: "1.2" }, "manifest.json: version: "],
    [{ entry: "../index.js" }, "manifest.json: entry: "],
    [{ entry: "/index.js" }, "manifest.json: entry: "],
    [{ entry: "./index.js" }, "manifest.json: entry: "],
    [{ runtime: "deno" }, 'manifest.json: runtime: must be "node"'],
    [{ stages: [] }, "manifest.json: stages: must list at least one stage"],
    [{ stages: ["after", "sometimes"] }, "manifest.json: stages[1]: must be one of"],
    [{ stages: ["after", "before", "after"] }, 'manifest.json: stages[2]: duplicate stage "after"'],
    [{ permissions: { network: "yes" } }, "manifest.json: permissions.network: "],
    [{ permissions: { env: ["OK", "NOT-OK"] } }, "manifest.json: permissions.env[1]: must be an environment variable name"],
    [{ permissions: { paths: [""] } }, "manifest.json: permissions.paths[0]: "],
    [{ description: "x".repeat(1025) }, "manifest.json: description: "],
    [{ configSchema: [1, 2] }, "manifest.json: configSchema: "],
    [{ configSchema: null }, "manifest.json: configSchema: "],
  ])("rejects %j naming the field", (over, prefix) => {
    expect(invalid(validManifest(over)).message.startsWith(prefix)).toBe(true);
  });

  it("names missing required fields", () => {
    const { version: _v, ...rest } = validManifest();
    expect(invalid(rest).message).toBe("manifest.json: version: is required");
  });

  it("rejects unknown fields, top-level and nested, by name", () => {
    expect(invalid(validManifest({ extra: 1 })).message).toBe("manifest.json: extra: unknown field");
    expect(invalid(validManifest({ permissions: { root: true } })).message).toBe("manifest.json: permissions.root: unknown field");
    expect(invalid(validManifest({ "bad\nkey": 1 })).message).toBe('manifest.json: ["bad\\nkey"]: unknown field');
  });

  it("rejects non-objects and reports several problems at once", () => {
    expect(invalid("a string").message).toMatch(/^manifest\.json: /);
    expect(invalid(null).code).toBe("MANIFEST_INVALID");
    const e = invalid(validManifest({ id: "x", runtime: "bun" }));
    expect(e.message).toContain("id: ");
    expect(e.message).toContain("runtime: ");
    expect((e.details.issues as unknown[]).length).toBe(2);
  });

  it("parses manifest bytes, rejecting bad JSON and oversized files", () => {
    expect(parseManifestBytes(Buffer.from(JSON.stringify(validManifest()))).id).toBe("notify/slack");
    expect(() => parseManifestBytes(Buffer.from("{nope"))).toThrow(/MANIFEST|not valid UTF-8 JSON/);
    expect(() => parseManifestBytes(Buffer.alloc(64 * 1024 + 1, 0x20))).toThrow(/limit is 65536/);
  });
});

describe("plugin ids and versions", () => {
  it.each(["notify/slack", "a/b", "0/9", "my-org.x/some_plugin-2", `${"a".repeat(64)}/${"b".repeat(64)}`])("accepts id %s", (id) => {
    expect(isValidPluginId(id)).toBe(true);
  });

  it.each([
    "Notify/slack",
    "notify/../x",
    "notify/a..b",
    "notify",
    "a/b/c",
    "/slack",
    "notify/",
    "-a/b",
    "a/.b",
    "a/_b",
    "a b/c",
    `${"a".repeat(65)}/b`,
    "",
  ])("rejects id %j", (id) => {
    expect(isValidPluginId(id)).toBe(false);
  });

  it("accepts only canonical semver", () => {
    for (const v of ["1.2.3", "0.0.0", "1.2.3-rc.1", "10.20.30-alpha.beta"]) expect(isValidVersion(v)).toBe(true);
    for (const v of ["1.2", "v1.2.3", " 1.2.3", "01.2.3", "1.2.3+build.5", "latest", "", "1.2.3.4"]) {
      expect(isValidVersion(v)).toBe(false);
    }
    expect(invalid(validManifest({ version: "v1.2.3" })).message).toMatch(/^manifest\.json: version: /);
  });

  it("builds and parses plugin refs", () => {
    expect(pluginKey("notify/slack", "1.2.0")).toBe("notify/slack@1.2.0");
    expect(parsePluginRef("notify/slack@1.2.0-rc.1")).toEqual({ id: "notify/slack", version: "1.2.0-rc.1" });
    for (const bad of ["notify/slack", "notify/slack@", "@1.2.0", "Notify/slack@1.2.0", "notify/slack@1.2", "a/b@1.0.0@2"]) {
      expect(() => parsePluginRef(bad)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });
});
