// The log event vocabulary (signing/events.ts) is an interface: tests, the demo, benchmarks and
// operators' alerts wait on these names. This fails when an event someone waits on is no longer
// emitted by any log call (the waits themselves also fail fast, naming the event).
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { EVENT } from "../../signing/events.js";
import { REPO } from "../helpers/harness.js";

function tsFiles(dir: string): string[] {
  return fs
    .readdirSync(path.join(REPO, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => path.join(e.parentPath, e.name));
}

const names = (files: string[]) =>
  new Set(files.flatMap((f) => [...fs.readFileSync(f, "utf8").matchAll(/\bEVENT\.([A-Z_]+)\b/g)].map((m) => m[1]!)));

// Whoever waits on events: tests, the process helpers, the demo, benchmarks.
const waiters = [
  ...tsFiles("test").filter((f) => !f.endsWith(path.join("signing", "events.test.ts"))),
  path.join(REPO, "cli", "processes.ts"),
  path.join(REPO, "cli", "demo.ts"),
  ...tsFiles("bench"),
];
// Whoever logs them: the daemons and the CLI actions that start them.
const emitters = [...tsFiles("server"), ...tsFiles("agent"), ...tsFiles("cli")].filter((f) => !waiters.includes(f));

describe("log events", () => {
  it("every event waited on is emitted by some log call", () => {
    const emitted = names(emitters);
    const waited = [...names(waiters)];
    expect(waited.length).toBeGreaterThan(5);
    expect(waited.filter((n) => !emitted.has(n))).toEqual([]);
  });

  it("every defined event is emitted, and names are unique, dotted lower-case", () => {
    const emitted = names(emitters);
    expect(Object.keys(EVENT).filter((k) => !emitted.has(k))).toEqual([]);
    const values = Object.values(EVENT);
    expect(new Set(values).size).toBe(values.length);
    for (const v of values) expect(v).toMatch(/^[a-z]+(\.[a-z_]+)+$/);
  });

  it("emitters set it as the `event` field", () => {
    // a constant merely mentioned (not logged as `event:`) would make the first check pass wrongly
    const src = emitters.map((f) => fs.readFileSync(f, "utf8")).join("\n");
    for (const k of Object.keys(EVENT)) expect(src, k).toMatch(new RegExp(`event: (?:[^,}]*\\? )?(?:EVENT\\.\\w+ : )?EVENT\\.${k}\\b`));
  });
});
