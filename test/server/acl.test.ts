import semver from "semver";
import { describe, expect, it } from "vitest";
import {
  couldAnyAgentUse,
  formatSubject,
  grantAllows,
  grantApplies,
  isAllowed,
  parseLabels,
  parsePluginPattern,
  parseSubject,
  parseVersionRange,
  type AgentIdentity,
  type Grant,
} from "../../server/acl.js";
import { ErrorCode, isArcadeError } from "../../signing/errors.js";

function invalidArgument(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isArcadeError(e, ErrorCode.INVALID_ARGUMENT)).toBe(true);
    return (e as Error).message;
  }
  throw new Error("expected INVALID_ARGUMENT");
}

const a1: AgentIdentity = { agentId: "a1", labels: { os: "linux", arch: "amd64", pool: "build" } };
const a2: AgentIdentity = { agentId: "a2", labels: { os: "darwin", arch: "arm64" } };
const toAgent = (pluginPattern: string, versionRange?: string, agentId = "a1"): Grant => ({
  subject: { kind: "agent", agentId },
  pluginPattern,
  ...(versionRange === undefined ? {} : { versionRange }),
});
const ref = (s: string) => {
  const at = s.lastIndexOf("@");
  return { id: s.slice(0, at), version: s.slice(at + 1) };
};

describe("parsePluginPattern", () => {
  it.each(["notify/slack", "notify/*", "*", "a/b", "my-org.x/tool_1", "0/0"])("accepts %j unchanged", (p) => {
    expect(parsePluginPattern(p)).toBe(p);
  });

  it.each([
    ["empty or blank", ["", "  "]],
    ["whitespace", [" notify/*", "notify/slack\n", "notify /x", "notify/\tx"]],
    ["other wildcards", ["notify*", "*/slack", "notify/sl*", "notify/**", "**", "*/*"]],
    ["regex or glob syntax", ["notify/.+", "notify/[a-z]", "notify/slac?", "notify/{a,b}"]],
    ["malformed ids", ["notify", "notify/", "/slack", "notify/slack/x", "-notify/x", `${"a".repeat(65)}/x`]],
    ["uppercase", ["NOTIFY/x", "Notify/*", "notify/Slack"]],
    ["..", ["notify/../x", "../notify/x", "../*", "notify/..", "a..b/*"]],
    ["unicode look-alikes", ["n\u043etify/*", "notify\uff0fslack", "notify/\uff0a", "notify/sl\u0430ck", "\uff0a"]],
  ])("rejects %s", (_name, patterns) => {
    for (const p of patterns) {
      const message = invalidArgument(() => parsePluginPattern(p));
      expect(message, JSON.stringify(p)).toMatch(/notify\/slack.*notify\/\*.*\*/);
    }
  });
});

describe("plugin pattern matching", () => {
  const table: Record<string, Record<string, boolean>> = {
    "notify/*": { "notify/x": true, "notify/slack": true, "notify-evil/x": false, "notifyx/y": false, "notify.x/y": false },
    "notify/*\u200b": { "notify/x": false },
    "notify/slack": { "notify/slack": true, "notify/slack2": false, "notify/slac": false, "Notify/slack": false, "notify/*": false },
    "*": { "anything/goes": true, "notify/../x": false, "NOTIFY/x": false, "": false, "notify/": false },
    // Bad rows read back from storage match nothing instead of widening.
    "notify*": { "notify/x": false },
    "*/slack": { "notify/slack": false },
    "Notify/*": { "notify/x": false, "Notify/x": false },
    "": { "notify/x": false },
  };
  const rows = Object.entries(table).flatMap(([pattern, ids]) => Object.entries(ids).map(([id, ok]) => [pattern, id, ok] as const));
  const tricky = ["notify/../x", "NOTIFY/x", "n\u043etify/x", "notify\uff0fx", " notify/x", "notify/x ", "notify//x", "notify/"];

  it.each([...rows, ...tricky.map((id) => ["notify/*", id, false] as const)])("%j covers %j: %s", (pattern, id, expected) => {
    expect(grantAllows(toAgent(pattern), a1, { id, version: "1.0.0" })).toBe(expected);
  });
});

describe("parseVersionRange", () => {
  it.each([
    ["^1", ">=1.0.0 <2.0.0-0"],
    ["~1.2", ">=1.2.0 <1.3.0-0"],
    [">=1.2.0 <2", ">=1.2.0 <2.0.0-0"],
    ["  >=1.2.0   <2  ", ">=1.2.0 <2.0.0-0"],
    ["1.2.3", "1.2.3"],
    ["=1.2.3", "1.2.3"],
    ["*", "*"],
    ["^1 || ^3", ">=1.0.0 <2.0.0-0||>=3.0.0 <4.0.0-0"],
    [">=1.2.0-rc.1", ">=1.2.0-rc.1"],
  ])("normalises %j to %j", (r, expected) => {
    expect(parseVersionRange(r)).toBe(expected);
  });

  it.each(["", "   ", "latest", "^01.2.3", "1.2.3.4", ">=", "=>1.2", "1.2.3 <", "x".repeat(300)])("rejects junk %j", (r) => {
    expect(invalidArgument(() => parseVersionRange(r))).toMatch(/semver range/);
  });

  it.each([">2 <1", "<0.0.0", ">=2.0.0 <1.0.0"])("rejects %j, which no version satisfies", (r) => {
    expect(invalidArgument(() => parseVersionRange(r))).toMatch(/matches no version/);
  });

  it("enforces the normalised form exactly as the original", () => {
    const versions = ["0.9.0", "1.0.0", "1.2.0", "1.2.0-rc.2", "1.9.9", "2.0.0-rc.1", "2.0.0", "3.1.0"];
    for (const r of ["^1", "~1.2", ">=1.2.0 <2", "^1 || ^3", ">=1.2.0-rc.1 <2", "1.x"]) {
      for (const v of versions) expect(semver.satisfies(v, parseVersionRange(r)), `${v} in ${r}`).toBe(semver.satisfies(v, r));
    }
  });
});

describe("version matching", () => {
  const ANY = "(no range)";
  const table: Record<string, Record<string, boolean>> = {
    ">=1.2.0 <2": { "1.2.0": true, "1.1.9": false, "1.9.9": true, "2.0.0": false, "2.0.0-rc.1": false, "1.5.0-beta": false },
    ">=1.2.0 <2.0.0": { "1.3.0-rc.1": false, "1.2.0-rc.1": false, "1.2.1": true },
    ">=1.2.0-rc.1 <2": { "1.2.0-rc.1": true, "1.2.0-rc.2": true, "1.2.0-beta": false, "1.3.0-rc.1": false, "1.2.0": true },
    "^1.2.0": { "1.2.0": true, "1.99.0": true, "1.1.0": false, "2.0.0": false, "2.0.0-rc.1": false },
    "^0.2.3": { "0.2.3": true, "0.2.9": true, "0.3.0": false },
    "~1.2.3": { "1.2.3": true, "1.2.9": true, "1.3.0": false },
    "1.2.3": { "1.2.3": true, "1.2.4": false, "1.2.3-rc.1": false },
    // Plugin versions are canonical or nothing.
    [ANY]: { "1.0.0": true, "0.0.1-alpha": true, "v1.0.0": false, "1.0": false, "": false, "1.0.0+build": false },
    "^1": { "v1.5.0": false, "=1.5.0": false, " 1.5.0": false },
    // Stored junk fails closed; "" would otherwise parse as "*".
    "": { "1.0.0": false },
    latest: { "1.0.0": false },
    ">2 <1": { "1.5.0": false },
  };
  const rows = Object.entries(table).flatMap(([range, vs]) => Object.entries(vs).map(([v, ok]) => [range, v, ok] as const));

  it.each(rows)("range %j allows %j: %s", (range, version, expected) => {
    expect(grantAllows(toAgent("notify/slack", range === ANY ? undefined : range), a1, { id: "notify/slack", version })).toBe(expected);
  });
});

describe("labels and subjects", () => {
  it("parses label selectors", () => {
    expect(parseLabels("os=linux")).toEqual({ os: "linux" });
    expect(parseLabels("os=linux, arch=amd64")).toEqual({ os: "linux", arch: "amd64" });
    expect(parseLabels("zone.name=EU-West_1")).toEqual({ "zone.name": "EU-West_1" });
    expect(parseLabels("constructor=x")).toEqual({ constructor: "x" });
  });

  it.each([
    ["empty", ["", " ", "os", "os=", "=linux", "os=linux,,arch=amd64", "os=linux,"]],
    ["duplicate keys", ["os=linux,os=darwin", "os=linux, os=linux"]],
    ["uppercase keys", ["OS=linux", "Os=linux"]],
    ["bad characters", ["os=a=b", "os=red hat", "os=l\u0456nux", "\u043es=linux", "__proto__=x", "os=-x", "os:linux"]],
    ["too long", [`os=${"a".repeat(64)}`, `${"k".repeat(64)}=v`]],
  ])("rejects label selectors with %s", (_name, selectors) => {
    for (const s of selectors) invalidArgument(() => parseLabels(s));
  });

  it.each([
    ["agent:a1", { kind: "agent", agentId: "a1" }],
    ["a1", { kind: "agent", agentId: "a1" }],
    ["agent:Build-Host.01", { kind: "agent", agentId: "Build-Host.01" }],
    ["labels:os=linux,arch=amd64", { kind: "labels", selector: { os: "linux", arch: "amd64" } }],
  ])("parses subject %j", (s, expected) => {
    expect(parseSubject(s)).toEqual(expected);
    expect(parseSubject(formatSubject(parseSubject(s)))).toEqual(expected);
  });

  it("formats subjects canonically", () => {
    expect(formatSubject({ kind: "agent", agentId: "a1" })).toBe("agent:a1");
    expect(formatSubject({ kind: "labels", selector: { os: "linux", arch: "amd64" } })).toBe("labels:arch=amd64,os=linux");
  });

  it.each(["", "agent:", "labels:", "user:a1", "agent:a 1", "agent:-a1", "a/1", "agent:a1:x", "agent:\u0430gent"])(
    "rejects subject %j",
    (s) => {
      invalidArgument(() => parseSubject(s));
    },
  );

  it.each([
    ["subset of labels", { os: "linux" }, true],
    ["all labels", { os: "linux", arch: "amd64", pool: "build" }, true],
    ["different value", { os: "darwin" }, false],
    ["value case differs", { os: "Linux" }, false],
    ["missing label", { os: "linux", gpu: "yes" }, false],
    ["inherited property", { constructor: "x" }, false],
    ["empty selector from a bad row", {}, false],
  ])("label selector with %s applies: %s", (_name, selector, expected) => {
    expect(grantApplies({ subject: { kind: "labels", selector }, pluginPattern: "*" }, a1)).toBe(expected);
  });

  it("an agent subject applies to that agent only", () => {
    expect(grantApplies(toAgent("*", undefined, "a1"), a1)).toBe(true);
    expect(grantApplies(toAgent("*", undefined, "a1"), a2)).toBe(false);
    expect(grantApplies(toAgent("*", undefined, "A1"), a1)).toBe(false);
    expect(grantApplies(toAgent("*", undefined, ""), { agentId: "", labels: {} })).toBe(false);
  });
});

describe("isAllowed", () => {
  const grants: Grant[] = [
    { id: "g-slack", subject: { kind: "agent", agentId: "a1" }, pluginPattern: "notify/slack", versionRange: "^1.2.0" },
    { id: "g-linux", subject: { kind: "labels", selector: { os: "linux" } }, pluginPattern: "build/*" },
  ];

  it("denies by default with no grants", () => {
    const r = isAllowed([], a1, ref("notify/slack@1.2.0"));
    expect(r).toEqual({ allowed: false, reason: expect.stringContaining("no grant for agent a1 covers notify/slack@1.2.0") });
  });

  it("names the grant that allowed access", () => {
    const r = isAllowed(grants, a1, ref("notify/slack@1.3.0"));
    expect(r.allowed).toBe(true);
    expect(r.grant).toBe(grants[0]);
    expect(r.reason).toBe("grant g-slack allows agent a1 to use notify/slack@1.3.0");
    expect(isAllowed(grants, a1, ref("build/docker@9.0.0")).grant).toBe(grants[1]);
    const anon = isAllowed([toAgent("notify/*", "^1")], a1, ref("notify/x@1.0.0"));
    expect(anon.reason).toBe("grant agent:a1 notify/* (^1) allows agent a1 to use notify/x@1.0.0");
  });

  it("explains why nothing allowed it", () => {
    expect(isAllowed(grants, a2, ref("notify/slack@1.3.0")).reason).toMatch(
      /^no grant for agent a2 covers .*no grant applies to this agent/,
    );
    expect(isAllowed(grants, a1, ref("notify/slack@2.0.0")).reason).toBe(
      "no grant for agent a1 covers notify/slack@2.0.0 (grants for notify/slack exclude version 2.0.0)",
    );
    expect(isAllowed(grants, a1, ref("notify/teams@1.3.0")).reason).toBe("no grant for agent a1 covers notify/teams@1.3.0");
    expect(isAllowed(grants, a1, ref("notify/slack@v1.3.0"))).toEqual({ allowed: false, reason: expect.stringMatching(/invalid plugin/) });
  });

  it("lets * grant everything, but only to its subject", () => {
    const all = [toAgent("*")];
    for (const p of ["notify/slack@1.0.0", "x/y@0.0.1", "build/docker@2.0.0-rc.1"]) expect(isAllowed(all, a1, ref(p)).allowed).toBe(true);
    expect(isAllowed(all, a2, ref("notify/slack@1.0.0")).allowed).toBe(false);
  });
});

describe("couldAnyAgentUse", () => {
  const grants: Grant[] = [toAgent("notify/*", undefined, "a1"), toAgent("build/*", undefined, "a2"), toAgent("scan/tool", "^2", "a2")];
  const agents = [a1, a2];

  it.each([
    ["one plugin a1 holds", ["notify/slack@1.0.0"], true],
    ["two plugins a2 holds", ["build/docker@1.0.0", "scan/tool@2.1.0"], true],
    ["plugins held by different agents only", ["notify/slack@1.0.0", "build/docker@1.0.0"], false],
    ["a version outside the range", ["build/docker@1.0.0", "scan/tool@1.0.0"], false],
    ["a plugin no one holds", ["deploy/k8s@1.0.0"], false],
    ["no plugins", [], true],
  ])("%s: %s", (_name, plugins, expected) => {
    expect(couldAnyAgentUse(grants, agents, plugins.map(ref))).toBe(expected);
  });

  it("is false with no agents or no grants", () => {
    expect(couldAnyAgentUse(grants, [], [ref("notify/slack@1.0.0")])).toBe(false);
    expect(couldAnyAgentUse(grants, [], [])).toBe(false);
    expect(couldAnyAgentUse([], agents, [ref("notify/slack@1.0.0")])).toBe(false);
  });
});
