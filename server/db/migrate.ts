// Applies the committed prisma/**/migrations/<name>/migration.sql files the way `prisma migrate deploy`
// does, because Prisma 7's CLI needs a schema-engine binary we cannot download or ship. The
// `_prisma_migrations` bookkeeping (table DDL, sha256 checksums, name order, Postgres advisory lock)
// matches Prisma's, so a real `prisma migrate deploy/status` on a connected machine sees the same history.
import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ArcadeError, ErrorCode, errorMessageOf } from "../../signing/errors.js";

export type Provider = "sqlite" | "postgresql";
export type MigrateOptions = { provider: Provider; url: string; migrationsDir: string; log?: (msg: string) => void };
export type Migration = { name: string; sql: string; checksum: string };
type Row = { migration_name: string; checksum: string; finished_at: unknown; rolled_back_at: unknown };

/** The migrations in `dir`, in the order Prisma's CLI applies them. A missing directory means none. */
export function readMigrations(dir: string): Migration[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort((a, b) => a.localeCompare(b)) // Prisma 7's CLI order, so both tools agree on what comes next
    .map((name) => {
      const file = path.join(dir, name, "migration.sql");
      if (!fs.existsSync(file))
        throw new ArcadeError(ErrorCode.INTERNAL, `migration ${name} has no migration.sql (${file})`, {
          migration: name,
        });
      const sql = fs.readFileSync(file, "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    });
}

/** The URL without its password, for messages that end up in logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
}

/** `file:<path>` → path. Exported so the client opens exactly the file the migrator migrated. */
export function sqlitePathOf(url: string): string {
  const p = url.replace(/^file:/, "");
  // Refused rather than guessed: a query string would be read as part of the file name by one driver
  // and as connection options by another.
  if (!url.startsWith("file:") || p === "" || p.includes("?")) {
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, `database.url: expected file:<path> for SQLite, got "${url}"`, {
      setting: "database.url",
    });
  }
  return p;
}

function plan(migrations: Migration[], rows: Row[], log: (m: string) => void): Migration[] {
  const failed = rows.filter((r) => r.finished_at == null && r.rolled_back_at == null).map((r) => r.migration_name);
  if (failed.length > 0) {
    throw new ArcadeError(
      ErrorCode.INTERNAL,
      `database migration ${failed.join(", ")} failed on an earlier start (Prisma P3009); nothing was applied. ` +
        `Repair the database by hand, then set _prisma_migrations.rolled_back_at for the failed row (or run \`prisma migrate resolve\`) and restart.`,
      { failed },
    );
  }
  const done = new Map(rows.filter((r) => r.finished_at != null && r.rolled_back_at == null).map((r) => [r.migration_name, r]));
  for (const m of migrations) {
    const row = done.get(m.name);
    if (row && row.checksum !== m.checksum)
      log(`warning: migration ${m.name} was edited after it was applied (checksum differs); the edit is not applied`);
  }
  const local = new Set(migrations.map((m) => m.name));
  for (const name of done.keys())
    if (!local.has(name)) log(`warning: migration ${name} is applied in the database but missing from this build`);
  return migrations.filter((m) => !done.has(m.name));
}

function failure(m: Migration, e: unknown): ArcadeError {
  return new ArcadeError(
    ErrorCode.INTERNAL,
    `database migration ${m.name} failed: ${errorMessageOf(e)}. It is recorded as failed; later starts refuse to migrate until it is resolved.`,
    { migration: m.name },
    { cause: e },
  );
}

// The engine's own DDL for each database, copied from tables it created, so Prisma accepts ours.
const SQLITE_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
);`;
const PG_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);`;
const PG_LOCK_KEY = 72707369; // the key Prisma's schema engine passes to pg_advisory_lock
// How long an SQLite connection waits for another process's write (or migration) before SQLITE_BUSY.
// Generous because a waiting server start is better than a failed one.
export const SQLITE_BUSY_TIMEOUT_MS = 30_000;
const sqliteNow = () => new Date().toISOString().replace("Z", "+00:00"); // the timestamp format the engine writes

async function migrateSqlite(o: MigrateOptions, migrations: Migration[], log: (m: string) => void): Promise<string[]> {
  // libsql is the driver under @prisma/adapter-libsql (server/db/libsql.ts), with the same
  // synchronous API as better-sqlite3, which this code used before.
  const { default: Database } = await import("libsql");
  const file = sqlitePathOf(o.url);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  // Prisma does not lock SQLite, but the server and tests may open a fresh file at the same moment and
  // would both apply `init`. An exclusive transaction on a side file serialises migrators; the OS
  // drops the lock if a process dies, so no stale lock is ever left behind. The lock connection only
  // ever uses exec(): libsql 0.5 keeps a connection that prepared a statement open after close()
  // until garbage collection, and this one must release its lock at close().
  const lock = new Database(`${file}.migrate-lock`, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  const db = new Database(file, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  try {
    lock.exec("BEGIN EXCLUSIVE");
    db.exec(SQLITE_TABLE);
    const todo = plan(migrations, db.prepare(`SELECT * FROM "_prisma_migrations" ORDER BY started_at`).all() as Row[], log);
    for (const m of todo) {
      const id = randomUUID();
      db.prepare(
        `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES (?, ?, ?, ?, 0)`,
      ).run(id, m.checksum, m.name, sqliteNow());
      try {
        // No wrapping transaction, like Prisma: its table rebuilds toggle PRAGMA foreign_keys, which is a no-op inside one.
        db.exec(m.sql);
      } catch (e) {
        db.prepare(`UPDATE "_prisma_migrations" SET logs = ? WHERE id = ?`).run(errorMessageOf(e), id);
        throw failure(m, e);
      }
      db.prepare(`UPDATE "_prisma_migrations" SET finished_at = ?, applied_steps_count = 1 WHERE id = ?`).run(sqliteNow(), id);
      log(`applied migration ${m.name}`);
    }
    return todo.map((m) => m.name);
  } finally {
    db.close();
    lock.close();
  }
}

/** Splits Prisma's `?schema=` off a Postgres URL; node-postgres does not know the parameter. */
export function splitPgSchema(url: string): { url: string; schema: string | undefined } {
  const u = new URL(url);
  const schema = u.searchParams.get("schema") ?? undefined;
  u.searchParams.delete("schema");
  // Restricted so it can be spliced into SQL and a libpq `options` string without quoting surprises.
  if (schema !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(schema)) {
    throw new ArcadeError(ErrorCode.CONFIG_INVALID, `database.url: schema "${schema}" must be letters, digits and _ only`, {
      setting: "database.url",
    });
  }
  return { url: u.toString(), schema };
}

async function migratePostgres(o: MigrateOptions, migrations: Migration[], log: (m: string) => void): Promise<string[]> {
  const { default: pg } = await import("pg");
  const { url, schema } = splitPgSchema(o.url);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Taken first, so concurrent starts cannot race on CREATE SCHEMA either. It is session-level:
    // closing the connection below releases it, even when a migration fails.
    await client.query(`SELECT pg_advisory_lock(${PG_LOCK_KEY})`);
    if (schema) {
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      await client.query(`SET search_path TO "${schema}"`);
    }
    await client.query(PG_TABLE);
    const rows = (await client.query<Row>(`SELECT * FROM "_prisma_migrations" ORDER BY started_at`)).rows;
    const todo = plan(migrations, rows, log);
    for (const m of todo) {
      const id = randomUUID();
      await client.query(
        `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)`,
        [id, m.checksum, m.name],
      );
      try {
        // One simple-protocol query runs the whole file in one implicit transaction, as Prisma does.
        await client.query(m.sql);
      } catch (e) {
        await client.query(`UPDATE "_prisma_migrations" SET logs = $1 WHERE id = $2`, [errorMessageOf(e), id]);
        throw failure(m, e);
      }
      await client.query(`UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1`, [id]);
      log(`applied migration ${m.name}`);
    }
    return todo.map((m) => m.name);
  } finally {
    await client.end();
  }
}

/** Applies pending migrations; returns the names applied by this call (empty when up to date). */
export async function migrate(opts: MigrateOptions): Promise<string[]> {
  const log = opts.log ?? ((m: string) => console.error(`[migrate] ${m}`));
  const migrations = readMigrations(opts.migrationsDir);
  if (migrations.length === 0) {
    throw new ArcadeError(ErrorCode.INTERNAL, `no database migrations found in ${opts.migrationsDir}; the installation is incomplete`, {
      migrationsDir: opts.migrationsDir,
    });
  }
  try {
    return await (opts.provider === "sqlite" ? migrateSqlite(opts, migrations, log) : migratePostgres(opts, migrations, log));
  } catch (e) {
    if (e instanceof ArcadeError) throw e;
    const where = `${opts.provider} database ${redactUrl(opts.url)}`;
    throw new ArcadeError(ErrorCode.INTERNAL, `migrating the ${where} failed: ${errorMessageOf(e)}`, {}, { cause: e });
  }
}
