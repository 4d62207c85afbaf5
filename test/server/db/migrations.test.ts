// The committed migrations, the migrator and the Prisma schemas must agree, on both databases.
// Postgres cases run when TEST_PG_URL is set: `scripts/with-postgres.sh npx vitest run test/server/db`.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createInterface } from "node:readline";
import Database from "libsql";
import pg from "pg";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import type { SchemaEngine } from "@prisma/schema-engine-wasm";
import { Prisma } from "../../../prisma/generated/sqlite/client.js";
import { migrate, SQLITE_BUSY_TIMEOUT_MS } from "../../../server/db/migrate.js";
import { migrationsDirFor, openDatabase, providerOf, type Db } from "../../../server/db/client.js";
import { ErrorCode, isArcadeError } from "../../../signing/errors.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SQLITE_SCHEMA = path.join(ROOT, "prisma/schema.prisma");
const PG_SCHEMA = path.join(ROOT, "prisma/postgres/schema.prisma");
const PG = process.env.TEST_PG_URL; // server-level URL; each run creates and drops its own database
const quiet = () => {};

// Dev tooling in plain JS (scripts/ is not part of the TypeScript build), typed here for the test only.
type EngineTools = {
  openEngine(o: { schemaPath: string; url: string }): Promise<{ engine: SchemaEngine; provider: string }>;
  migrationsList(dir: string, provider: string): Parameters<SchemaEngine["applyMigrations"]>[0]["migrationsList"];
  noFilter: Parameters<SchemaEngine["applyMigrations"]>[0]["filters"];
  diffMigrationsToSchema(o: {
    schemaPath: string;
    migrationsDir: string;
    url: string;
  }): Promise<{ exitCode: number; stdout: string | null }>;
};
const tools = (await import(/* @vite-ignore */ pathToFileURL(path.join(ROOT, "scripts/schema-engine-wasm.mjs")).href)) as EngineTools;

let tmp: string;
beforeAll(() => void (tmp = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-migrations-"))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// findMany selects every scalar column, so a missing table or column in the migrations fails here.
async function touchEveryModel(db: Db) {
  for (const model of Object.values(Prisma.ModelName)) {
    const delegate = db[(model[0]!.toLowerCase() + model.slice(1)) as Uncapitalize<Prisma.ModelName>] as unknown as {
      findMany(args: { take: number }): Promise<unknown[]>;
    };
    expect(await delegate.findMany({ take: 1 }), model).toBeInstanceOf(Array);
  }
  const plugin = { pluginId: "demo", version: "1.0.0", sha256: "ab".repeat(32), size: 3, storageKey: "ab".repeat(32) };
  await db.plugin.create({ data: plugin });
  await expect(db.plugin.create({ data: plugin })).rejects.toMatchObject({ code: "P2002" }); // @@unique([pluginId, version])
  // Foreign keys are enforced: deleting a job cascades to its plugin runs.
  await db.job.create({
    data: {
      id: "j1",
      commands: "[]",
      plugins: {
        create: { id: "jp1", pluginId: "demo", version: "1.0.0", executionOrder: 0, executionStage: "before" },
      },
    },
  });
  await db.job.delete({ where: { id: "j1" } });
  expect(await db.jobPlugin.count()).toBe(0);
}

// Prisma's own engine must read our bookkeeping as fully migrated, with nothing failed or edited.
async function prismaAgrees(schemaPath: string, url: string) {
  const { engine, provider } = await tools.openEngine({ schemaPath, url });
  try {
    const migrationsList = tools.migrationsList(path.join(path.dirname(schemaPath), "migrations"), provider);
    const diag = await engine.diagnoseMigrationHistory({
      migrationsList,
      optInToShadowDatabase: false,
      filters: tools.noFilter,
    });
    expect([diag.history, diag.failedMigrationNames, diag.editedMigrationNames]).toEqual([null, [], []]);
    expect((await engine.applyMigrations({ migrationsList, filters: tools.noFilter })).appliedMigrationNames).toEqual([]);
  } finally {
    engine.free();
  }
}

describe("sqlite", () => {
  const migrationsDir = migrationsDirFor("sqlite");

  it("applies the migrations once, matches the client, and Prisma agrees with the history", async () => {
    const url = `file:${path.join(tmp, "apply.db")}`;
    expect((await migrate({ provider: "sqlite", url, migrationsDir, log: quiet })).length).toBeGreaterThan(0);
    expect(await migrate({ provider: "sqlite", url, migrationsDir, log: quiet })).toEqual([]);
    const { db, close } = await openDatabase(url, { log: quiet });
    try {
      await touchEveryModel(db);
    } finally {
      await close();
    }
    await prismaAgrees(SQLITE_SCHEMA, url);
  });

  it("is in sync with schema.prisma (Prisma diff against a scratch shadow database)", async () => {
    const r = await tools.diffMigrationsToSchema({ schemaPath: SQLITE_SCHEMA, migrationsDir, url: ":memory:" });
    expect(r.exitCode, `schema.prisma changed without a migration; run npm run db:migration -- <name>\n${r.stdout}`).toBe(0);
  });

  it("detects drift when the schema gains a column without a migration", async () => {
    const dir = path.join(tmp, "drift");
    fs.cpSync(path.dirname(SQLITE_SCHEMA), dir, {
      recursive: true,
      filter: (src) => !src.includes("generated") && !src.includes("postgres"),
    });
    const anchor = "model Agent {";
    const schema = fs.readFileSync(SQLITE_SCHEMA, "utf8");
    expect(schema).toContain(anchor);
    fs.writeFileSync(path.join(dir, "schema.prisma"), schema.replace(anchor, `${anchor}\n  views Int @default(0)`));
    const r = await tools.diffMigrationsToSchema({
      schemaPath: path.join(dir, "schema.prisma"),
      migrationsDir: path.join(dir, "migrations"),
      url: ":memory:",
    });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toContain('"views"');
  });

  it("records a failed migration and refuses to run again until it is resolved", async () => {
    const dir = path.join(tmp, "broken-migrations");
    fs.cpSync(migrationsDir, dir, { recursive: true });
    fs.mkdirSync(path.join(dir, "29990101000000_broken"));
    fs.writeFileSync(path.join(dir, "29990101000000_broken", "migration.sql"), 'ALTER TABLE "no_such_table" ADD COLUMN "x" INTEGER;\n');
    const url = `file:${path.join(tmp, "broken.db")}`;
    await expect(migrate({ provider: "sqlite", url, migrationsDir: dir, log: quiet })).rejects.toMatchObject({
      code: ErrorCode.INTERNAL,
      message: expect.stringContaining("29990101000000_broken failed"),
    });
    await expect(migrate({ provider: "sqlite", url, migrationsDir: dir, log: quiet })).rejects.toMatchObject({
      code: ErrorCode.INTERNAL,
      message: expect.stringContaining("P3009"),
    });
  });

  it("openDatabase creates a fresh file (and its directory) in WAL mode, and reopens it", async () => {
    const url = `file:${path.join(tmp, "nested", "dir", "fresh.db")}`;
    const logs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const opened = await openDatabase(url, { log: (m) => logs.push(m) });
      try {
        expect(opened.provider).toBe("sqlite");
        expect(await opened.db.$queryRawUnsafe("PRAGMA journal_mode")).toEqual([{ journal_mode: "wal" }]);
        expect(await opened.db.$queryRawUnsafe("PRAGMA busy_timeout")).toEqual([{ timeout: SQLITE_BUSY_TIMEOUT_MS }]);
        expect(await opened.db.plugin.count()).toBe(0);
      } finally {
        await opened.close();
      }
    }
    expect(logs.filter((m) => m.startsWith("applied"))).toHaveLength(fs.readdirSync(migrationsDirFor("sqlite")).length - 1); // minus the lock file
  });
});

// Holds SQLite's write lock in another process: BEGIN IMMEDIATE, print "locked", then on a line
// "<ms>" on stdin keep the lock that long (a long write transaction), COMMIT and print when.
const LOCK_HOLDER = `
import Database from "libsql";
const db = new Database(process.argv[1]);
db.exec("BEGIN IMMEDIATE");
console.log(JSON.stringify({ event: "locked" }));
process.stdin.once("data", (d) => setTimeout(() => {
  db.exec("COMMIT");
  console.log(JSON.stringify({ event: "released", at: Date.now() }));
  db.close();
  process.exit(0);
}, Number(String(d))));
`;

describe("sqlite under concurrent writers", () => {
  // Descriptors this process holds on the database file and its -wal/-shm side files (Linux).
  const fdsOn = (file: string) =>
    fs.readdirSync("/proc/self/fd").filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(file);
      } catch {
        return false;
      }
    }).length;
  const job = (id: string) => ({
    data: {
      id,
      commands: "[]",
      plugins: { create: { id: `${id}-p`, pluginId: "demo", version: "1.0.0", executionOrder: 0, executionStage: "before" } },
    },
  });

  it("a write waits for another process's write transaction instead of failing with SQLITE_BUSY", async () => {
    const file = path.join(tmp, "busy.db");
    const { db, close } = await openDatabase(`file:${file}`, { log: quiet });
    try {
      await db.plugin.create({
        data: { pluginId: "demo", version: "1.0.0", sha256: "ab".repeat(32), size: 3, storageKey: "ab".repeat(32) },
      });
      // The write below blocks this process's event loop while it waits, so the holder ends the
      // lock on its own after `hold` ms; if this machine is too slow to start the write within it,
      // try again with a longer one.
      for (const hold of [500, 2_000, 8_000]) {
        const holder = spawn(process.execPath, ["--input-type=module", "-e", LOCK_HOLDER, file], {
          cwd: ROOT,
          stdio: ["pipe", "pipe", "inherit"],
        });
        const events = createInterface({ input: holder.stdout })[Symbol.asyncIterator]();
        const next = async () => JSON.parse(String((await events.next()).value)) as { event: string; at?: number };
        expect(await next()).toEqual({ event: "locked" });
        // Control: without a busy timeout the same write fails at once, so the lock is really held.
        const bare = new Database(file);
        expect(() => bare.exec(`INSERT INTO "t_job" ("id", "commands") VALUES ('bare', '[]')`)).toThrow(/locked|busy/i);
        bare.close();
        holder.stdin.write(`${hold}\n`);
        const started = Date.now();
        // A job with its plugin rows: Prisma runs it as a transaction (server/db/libsql.ts).
        await db.job.create(job(`j-${hold}`));
        const ended = Date.now();
        const released = await next();
        expect(released.event).toBe("released");
        await new Promise((resolve) => holder.once("exit", resolve));
        if (started < released.at!) {
          expect(ended).toBeGreaterThanOrEqual(released.at!);
          expect(await db.jobPlugin.count({ where: { jobId: `j-${hold}` } })).toBe(1);
          return;
        }
      }
      throw new Error("could not start a write while another process held the lock, even with an 8 s hold");
    } finally {
      await close();
    }
  });

  it.skipIf(!fs.existsSync("/proc/self/fd"))("transactions reuse the client's connection: no descriptor per job", async () => {
    const file = path.join(tmp, "fds.db");
    const { db, close } = await openDatabase(`file:${file}`, { log: quiet });
    try {
      await db.plugin.create({
        data: { pluginId: "demo", version: "1.0.0", sha256: "ab".repeat(32), size: 3, storageKey: "ab".repeat(32) },
      });
      await db.job.create(job("warm-up"));
      const before = fdsOn(file);
      for (let i = 0; i < 50; i++) await db.job.create(job(`j${i}`));
      expect(await db.job.count()).toBe(51);
      // @libsql/client alone would open a new connection after each of these transactions and
      // keep the old one: two more descriptors per job.
      expect(fdsOn(file)).toBe(before);
    } finally {
      await close();
    }
  });

  it("opens a path with spaces, # and % at exactly that path", async () => {
    const dir = path.join(tmp, "a b#c%20d");
    const { db, close } = await openDatabase(`file:${path.join(dir, "x.db")}`, { log: quiet });
    try {
      expect(await db.plugin.count()).toBe(0);
    } finally {
      await close();
    }
    expect(fs.readdirSync(dir)).toContain("x.db");
  });
});

describe("database.url", () => {
  it("maps URLs to providers and rejects anything else with CONFIG_INVALID", () => {
    expect(providerOf("file:./data/arcade.db")).toBe("sqlite");
    expect(providerOf("postgres://u@h/db")).toBe("postgresql");
    expect(providerOf("postgresql://u@h/db?schema=x")).toBe("postgresql");
    let err: unknown;
    try {
      providerOf("mysql://root:hunter2@db/arcade");
    } catch (e) {
      err = e;
    }
    expect(isArcadeError(err, ErrorCode.CONFIG_INVALID)).toBe(true);
    expect((err as Error).message).toContain("database.url");
    expect((err as Error).message).not.toContain("hunter2");
  });
});

it("the postgres schema mirrors the sqlite schema (only provider and output differ)", () => {
  const norm = (f: string) => fs.readFileSync(f, "utf8").replace(/^\s*(provider|output)\s*=.*$/gm, "");
  expect(norm(PG_SCHEMA)).toBe(norm(SQLITE_SCHEMA));
});

describe("postgresql", () => {
  it.skipIf(!PG)("applies the migrations once, matches the client, is in sync, and honours ?schema=", async () => {
    const admin = new pg.Client({ connectionString: PG });
    await admin.connect();
    const name = `arcade_mig_${process.pid}_${Date.now()}`;
    await admin.query(`CREATE DATABASE "${name}"`);
    const u = new URL(PG!);
    u.pathname = `/${name}`;
    const url = u.toString();
    const migrationsDir = migrationsDirFor("postgresql");
    try {
      expect((await migrate({ provider: "postgresql", url, migrationsDir, log: quiet })).length).toBeGreaterThan(0);
      expect(await migrate({ provider: "postgresql", url, migrationsDir, log: quiet })).toEqual([]);
      const opened = await openDatabase(url, { log: quiet });
      try {
        expect(opened.provider).toBe("postgresql");
        await touchEveryModel(opened.db);
      } finally {
        await opened.close();
      }
      await prismaAgrees(PG_SCHEMA, url);
      const r = await tools.diffMigrationsToSchema({ schemaPath: PG_SCHEMA, migrationsDir, url: PG! });
      expect(r.exitCode, `postgres/schema.prisma changed without a migration; run npm run db:migration:pg -- <name>\n${r.stdout}`).toBe(0);

      // A second, mixed-case schema in the same database: tables land there, and both Prisma and raw SQL find them.
      const scoped = await openDatabase(`${url}?schema=Arcade_Alt`, { log: quiet });
      try {
        await touchEveryModel(scoped.db);
        expect(await scoped.db.$queryRawUnsafe(`SELECT current_schema() AS s`)).toEqual([{ s: "Arcade_Alt" }]);
      } finally {
        await scoped.close();
      }
      const check = new pg.Client({ connectionString: url });
      await check.connect();
      const { rows } = await check.query(`SELECT count(*)::int AS n FROM "Arcade_Alt"."t_plugin"`).finally(() => check.end());
      expect(rows).toEqual([{ n: 1 }]);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    }
  });
});
