// The embedded SQLite through each Prisma driver adapter, side by side in one process: the
// queries the server makes for SubmitJob (submitJob: plugin look-ups, a nested job + plugin-rows
// create) and FetchJob (claimJob: candidate scan, ACL grants, conditional claim, the job with its
// plugins), plus opening a client. Rounds interleave the adapters and alternate which goes first.
// "libsql (stock)" is @prisma/adapter-libsql as published; "libsql (Arcade)" is server/db/libsql.ts,
// which keeps transactions on the client's one connection. Each adapter gets its own database file, migrated by server/db/migrate.ts, in WAL mode with the
// busy timeout, as server/db/client.ts opens it. Also prints the file descriptors each adapter
// holds on its database at the end (a driver that leaks a connection per transaction shows here).
//
// Usage: node dist/bench/sqlite.js [rounds=15] [jobs per round=20]
// The libSQL adapter is the project's; the better-sqlite3 one is the former baseline and is not a
// dependency any more: `npm install --no-save @prisma/adapter-better-sqlite3@7.10.0` first (it
// builds better-sqlite3 from C, or downloads its prebuilt binary). Without it only libSQL runs.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import type { SqlDriverAdapterFactory } from "@prisma/driver-adapter-utils";
import { PrismaLibSql } from "@prisma/adapter-libsql";
import { PrismaClient } from "../prisma/generated/sqlite/client.js";
import { AclStore } from "../server/acl-store.js";
import { migrationsDirFor } from "../server/db/client.js";
import { PrismaLibSqlOneConnection } from "../server/db/libsql.js";
import { migrate, SQLITE_BUSY_TIMEOUT_MS } from "../server/db/migrate.js";
import { claimJob, submitJob } from "../server/jobs.js";
import { Stage } from "../proto/gen/arcade/v1/plugin.js";

const rounds = Number(process.argv[2] ?? 15);
const jobs = Number(process.argv[3] ?? 20);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const limits = { defaultTimeoutSeconds: 600, maxCommands: 100, maxPlugins: 20, maxOutputBytes: 1 << 20, maxStepLogBytes: 65536 };
const who = { agentId: "bench-agent", labels: {} };

type Candidate = { name: string; factory: (file: string) => SqlDriverAdapterFactory };
const candidates: Candidate[] = [];
// A variable specifier keeps tsc from resolving a package that is normally not installed.
const baselinePkg = "@prisma/adapter-better-sqlite3";
try {
  const { PrismaBetterSqlite3 } = (await import(baselinePkg)) as {
    PrismaBetterSqlite3: new (o: { url: string; timeout: number }) => SqlDriverAdapterFactory;
  };
  candidates.push({ name: "better-sqlite3", factory: (file) => new PrismaBetterSqlite3({ url: file, timeout: SQLITE_BUSY_TIMEOUT_MS }) });
} catch {
  console.log(`(${baselinePkg} is not installed: libSQL only; see the header of bench/sqlite.ts)`);
}
const libsqlConfig = (file: string) => ({ url: pathToFileURL(path.resolve(file)).href, timeout: SQLITE_BUSY_TIMEOUT_MS });
candidates.push({ name: "libsql (stock)", factory: (file) => new PrismaLibSql(libsqlConfig(file)) });
candidates.push({ name: "libsql (Arcade)", factory: (file) => new PrismaLibSqlOneConnection(libsqlConfig(file)) });

const root = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-bench-sqlite-"));
const open = async (c: Candidate, file: string) => {
  const db = new PrismaClient({ adapter: c.factory(file) });
  await db.$queryRawUnsafe("PRAGMA journal_mode = WAL");
  return db;
};
/** Descriptors this process holds on `file` or its -wal/-shm side files. */
const fdsOn = (file: string) =>
  fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(path.resolve(file));
    } catch {
      return false;
    }
  }).length;

try {
  const state = [];
  for (const c of candidates) {
    const file = path.join(root, `${c.name}.db`);
    await migrate({ provider: "sqlite", url: `file:${file}`, migrationsDir: migrationsDirFor("sqlite"), log: () => {} });
    const db = await open(c, file);
    for (const id of ["bench/a", "bench/b"])
      await db.plugin.create({ data: { pluginId: id, version: "1.0.0", sha256: "ab".repeat(32), size: 3, storageKey: "ab".repeat(32) } });
    const acl = new AclStore(db as never);
    await acl.grant({ subject: `agent:${who.agentId}`, pluginPattern: "*", createdBy: "bench" });
    state.push({ c, file, db, acl, submit: [] as number[], claim: [] as number[], opening: [] as number[] });
  }
  const plugins = ["bench/a", "bench/b"].map((pluginId, i) => ({
    pluginId,
    version: "1.0.0",
    stage: Stage.STAGE_BEFORE,
    executionOrder: i,
    configJson: '{"k":"v"}',
  }));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? state : [...state].reverse();
    for (const s of order) {
      let t = performance.now();
      for (let i = 0; i < jobs; i++)
        await submitJob(s.db as never, { commands: ["echo hi"], plugins, agentId: "", timeoutSeconds: 0 }, limits);
      s.submit.push((performance.now() - t) / jobs);
      t = performance.now();
      for (let i = 0; i < jobs; i++) if (!(await claimJob(s.db as never, who, s.acl))) throw new Error(`${s.c.name}: no job to claim`);
      s.claim.push((performance.now() - t) / jobs);
      t = performance.now();
      const fresh = await open(s.c, s.file);
      await fresh.plugin.count();
      await fresh.$disconnect();
      s.opening.push(performance.now() - t);
    }
  }
  const base = state[0]!;
  const ratio = (xs: number[], b: number[]) => (state.length > 1 ? ` (${(median(xs) / median(b)).toFixed(2)}x)` : "");
  console.log(`node ${process.version}, ${rounds} rounds x ${jobs} jobs; medians per call in ms (ratio to ${base.c.name})`);
  console.log("adapter          SubmitJob   FetchJob    open client   fds on the db file at the end");
  for (const s of state) {
    console.log(
      `${s.c.name.padEnd(16)} ${median(s.submit).toFixed(3).padStart(6)}${ratio(s.submit, base.submit).padEnd(9)}` +
        ` ${median(s.claim).toFixed(3).padStart(6)}${ratio(s.claim, base.claim).padEnd(9)}` +
        ` ${median(s.opening).toFixed(2).padStart(6)}${ratio(s.opening, base.opening).padEnd(9)}` +
        `  ${fdsOn(s.file)} (after ${rounds * jobs} jobs)`,
    );
  }
  for (const s of state) await s.db.$disconnect();
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
