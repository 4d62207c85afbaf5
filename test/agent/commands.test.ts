import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const dirs: string[] = [];
const made = (d: string) => (dirs.push(d), d);
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
import { CappedBuffer, runCommands } from "../../agent/commands.js";

const cwd = () => made(fs.mkdtempSync(path.join(os.tmpdir(), "arcade-cmd-")));
const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };

describe("job commands", () => {
  it("runs in order in the workspace and stops at the first failure", async () => {
    const dir = cwd();
    const r = await runCommands(["echo one > f", "cat f", "exit 4", "echo never"], {
      cwd: dir,
      env,
      deadline: Date.now() + 10_000,
      maxOutputBytes: 4096,
    });
    expect(r.exitCode).toBe(4);
    expect(r.error?.code).toBe("COMMAND_FAILED");
    expect(r.output).toContain("one");
    expect(r.output).not.toContain("never\n");
  });

  it("sees only the environment it is given", async () => {
    process.env.ARCADE_TEST_SECRET = "s3cret";
    const r = await runCommands(["env"], { cwd: cwd(), env, deadline: Date.now() + 10_000, maxOutputBytes: 65536 });
    delete process.env.ARCADE_TEST_SECRET;
    expect(r.output).not.toContain("s3cret");
  });

  it("kills the whole process group at the deadline", async () => {
    const dir = cwd();
    const started = Date.now();
    const r = await runCommands(["sleep 30 & echo $! > bg.pid; sleep 30"], {
      cwd: dir,
      env,
      deadline: Date.now() + 500,
      maxOutputBytes: 4096,
    });
    expect(r.error?.code).toBe("JOB_TIMEOUT");
    expect(Date.now() - started).toBeLessThan(5000);
    const bg = Number(fs.readFileSync(path.join(dir, "bg.pid"), "utf8"));
    // the background child is gone too (a killed orphan lingers until init reaps it: poll)
    const deadline = Date.now() + 3000;
    let alive = true;
    while (alive && Date.now() < deadline) {
      try {
        process.kill(bg, 0);
        await new Promise((res) => setTimeout(res, 50));
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
  });

  it("keeps the tail of long output and says how much was dropped", () => {
    const b = new CappedBuffer(10);
    for (let i = 0; i < 10; i++) b.push(`line${i}\n`);
    const s = b.toString();
    expect(s).toMatch(/^\[\.\.\. \d+ bytes of earlier output dropped\]\n/);
    expect(s.endsWith("line9\n")).toBe(true);
  });
});
