// Soak (npm run test:soak, not part of npm test): kill -9 an agent at seeded random moments while
// it installs 200 plugins, restarting it each time, until everything is installed. A fresh start
// must always see exactly the complete, verified installs. Every random choice (plugin bytes,
// which plugins each job asks for, where and when the kill lands) comes from one seed, printed at
// the start: ARCADE_TEST_SEED=<seed> npm run test:soak replays a run.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ArcadeProcess } from "../../cli/processes.js";
import { Stage } from "../../proto/gen/arcade/v1/plugin.js";
import { call } from "../../proto/rpc.js";
import { EVENT, type EventName } from "../../signing/events.js";
import { expectOnlyCompleteVerifiedInstalls } from "../helpers/crash.js";
import { seeded, testSeed } from "../helpers/random.js";
import { cleanup, pack, startTestAgent, startTestServer, tempDir, writePlugin, type TestServer } from "../helpers/harness.js";

const INSTALLS = Number(process.env.ARCADE_SOAK_INSTALLS ?? 200);
const MAX_ROUNDS = INSTALLS * 3;
const CHECK_EVERY = 25;

let server: TestServer;
afterAll(cleanup);
beforeAll(async () => {
  server = await startTestServer(`[jobs]\nreap_interval = 1\nreport_grace = 0\n`);
});

/** Resolves at the n-th line with `event`, or at the end of the job, whichever comes first. */
function nthEventOrJobEnd(proc: ArcadeProcess, event: EventName, n: number): Promise<unknown> {
  let seen = 0;
  const nth = proc.waitFor((l) => l.event === event && ++seen === n, 120_000, `${n}× ${event}`);
  const end = proc.waitForEvent(EVENT.AGENT_JOB_FINISHED, {}, 120_000);
  // the loser rejects when the process is killed: that is expected
  nth.catch(() => undefined);
  end.catch(() => undefined);
  return Promise.race([nth, end]);
}

it(`kill -9 at seeded random moments during ${INSTALLS} installs leaves only complete, verified entries`, async () => {
  const rng = seeded(testSeed("crash soak"));
  const ids: string[] = [];
  for (let i = 0; i < INSTALLS; i++) {
    const p = await pack(
      writePlugin({
        id: `soak/p${i}`,
        version: "1.0.0",
        stages: ["before"],
        source: "export const before = async () => 1;\n",
        files: { "data.bin": rng.bytes(rng.int(4, 128) * 1024) },
      }),
    );
    await server.publish(p.file);
    ids.push(p.id);
  }
  const dir = tempDir("arcade-soak-");
  const agentId = `soak-${Date.now().toString(36)}`;
  const points: EventName[] = [EVENT.AGENT_DOWNLOAD_STARTED, EVENT.AGENT_PLUGIN_VERIFIED, EVENT.AGENT_PLUGIN_INSTALLED];
  let kills = 0;
  for (let round = 1; round <= MAX_ROUNDS; round++) {
    const agent = await startTestAgent(server, agentId, "", dir);
    // (read once the agent is ready: its start has swept what an interrupted install left)
    const have = new Set(listed(agent.pluginsDir));
    const missing = ids.filter((id) => !have.has(`${id}@1.0.0`));
    if (missing.length === 0) {
      await agent.proc.stop();
      break;
    }
    // which plugins: a random handful of the missing ones
    const batch = shuffle(missing, rng).slice(0, rng.int(1, 10));
    const { client, md } = server.admin;
    const plugins = batch.map((pluginId, i) => ({
      pluginId,
      version: "1.0.0",
      stage: Stage.STAGE_BEFORE,
      executionOrder: i,
      configJson: "{}",
    }));
    // where: after the n-th download start, verification or install, or a random time into the job
    const choice = rng.int(0, points.length);
    const n = rng.int(1, batch.length);
    const ms = rng.int(0, 1500);
    const jitter = rng.int(0, 30);
    await call(client.submitJob, client, { commands: ["true"], plugins, agentId, timeoutSeconds: 60 }, md);
    if (choice < points.length) await nthEventOrJobEnd(agent.proc, points[choice]!, n);
    else await new Promise((r) => setTimeout(r, ms)); // the kill moment itself is what is random here
    await new Promise((r) => setTimeout(r, jitter));
    await agent.proc.stop("SIGKILL");
    kills++;
    // The full check re-verifies every install: often enough to catch damage near where it happened.
    if (round % CHECK_EVERY === 0) await expectOnlyCompleteVerifiedInstalls(agent.pluginsDir);
  }
  const final = await expectOnlyCompleteVerifiedInstalls(path.join(dir, "plugins"));
  expect(final).toEqual(ids.map((id) => `${id}@1.0.0`).sort());
  expect(kills).toBeGreaterThan(INSTALLS / 10);
  console.log(`crash soak: ${INSTALLS} installs, ${kills} kills`);
});

function listed(pluginsDir: string): string[] {
  const file = path.join(pluginsDir, "index.json");
  if (!fs.existsSync(file)) return [];
  return Object.keys((JSON.parse(fs.readFileSync(file, "utf8")) as { entries: object }).entries);
}

/** Fisher-Yates with the seeded source: the same order for the same seed on every Node version. */
function shuffle<T>(items: T[], rng: { int(min: number, max: number): number }): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
