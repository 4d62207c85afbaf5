// Opens Arcade's database: SQLite (`file:<path>`) for single-node installs and tests, PostgreSQL
// for shared deployments. Migrations are applied first, so callers always get an up-to-date schema.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ArcadeError, ErrorCode } from "../../signing/errors.js";
import type { PrismaClient } from "../../prisma/generated/sqlite/client.js";
import { migrate, redactUrl, splitPgSchema, sqlitePathOf, SQLITE_BUSY_TIMEOUT_MS, type Provider } from "./migrate.js";

export type { Provider } from "./migrate.js";

/**
 * The client type for either database. Both generated clients come from schemas that differ only in
 * provider/output (a test enforces it), so their model APIs are identical; one type keeps callers
 * provider-agnostic.
 */
export type Db = PrismaClient;

export type OpenedDatabase = { db: Db; provider: Provider; close(): Promise<void> };

export function providerOf(url: string): Provider {
  if (/^postgres(ql)?:\/\//i.test(url)) return "postgresql";
  if (url.startsWith("file:")) return "sqlite";
  throw new ArcadeError(
    ErrorCode.CONFIG_INVALID,
    `database.url must start with file: (SQLite, e.g. file:./data/arcade.db) or postgresql:// (PostgreSQL); got "${redactUrl(url)}"`,
    { setting: "database.url" },
  );
}

let repoRoot: string | undefined;

// The migrations ship beside the code rather than inside it: this module runs both from sources
// (server/db, under vitest) and compiled (dist/server/db), at different depths below the repo root.
function findRepoRoot(): string {
  if (repoRoot) return repoRoot;
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "prisma", "schema.prisma"))) return (repoRoot = dir);
    if (path.dirname(dir) === dir) break;
  }
  throw new ArcadeError(ErrorCode.INTERNAL, `cannot find prisma/schema.prisma above ${start}; the installation is incomplete`);
}

/** Absolute path of the committed migrations for `provider`. */
export function migrationsDirFor(provider: Provider): string {
  const root = findRepoRoot();
  return provider === "sqlite" ? path.join(root, "prisma", "migrations") : path.join(root, "prisma", "postgres", "migrations");
}

/** Migrates the database at `url`, then connects to it. Call close() when done. */
export async function openDatabase(url: string, opts: { log?: (m: string) => void } = {}): Promise<OpenedDatabase> {
  const provider = providerOf(url);
  await migrate({ provider, url, migrationsDir: migrationsDirFor(provider), log: opts.log });
  const db = provider === "sqlite" ? await openSqlite(url, opts.log) : await openPostgres(url);
  return { db, provider, close: () => db.$disconnect() };
}

async function openSqlite(url: string, log?: (m: string) => void): Promise<Db> {
  const [{ PrismaClient }, { PrismaLibSqlOneConnection }] = await Promise.all([
    import("../../prisma/generated/sqlite/client.js"),
    import("./libsql.js"),
  ]);
  // libSQL takes a file: URL and percent-decodes it, so the path is encoded rather than pasted in.
  // `timeout` is the busy timeout: the server and tests may write the same file from two
  // processes, and a writer should wait for the other rather than fail with SQLITE_BUSY.
  const file = pathToFileURL(path.resolve(sqlitePathOf(url))).href;
  const db = new PrismaClient({ adapter: new PrismaLibSqlOneConnection({ url: file, timeout: SQLITE_BUSY_TIMEOUT_MS }) });
  try {
    // WAL lets readers in one process proceed while another writes; the mode persists in the file.
    const [row] = await db.$queryRawUnsafe<{ journal_mode: string }[]>("PRAGMA journal_mode = WAL");
    if (row?.journal_mode !== "wal") (log ?? console.error)(`warning: SQLite stayed in ${row?.journal_mode} journal mode, not WAL`);
  } catch (e) {
    await db.$disconnect();
    throw new ArcadeError(
      ErrorCode.INTERNAL,
      `cannot open the SQLite database ${sqlitePathOf(url)}: ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
  return db;
}

async function openPostgres(url: string): Promise<Db> {
  const [{ PrismaClient }, { PrismaPg }] = await Promise.all([
    import("../../prisma/generated/postgres/client.js"),
    import("@prisma/adapter-pg"),
  ]);
  const { url: connectionString, schema } = splitPgSchema(url);
  // `schema` makes Prisma's generated SQL schema-qualified; search_path does the same for raw SQL,
  // as Prisma's former engine did for `?schema=`.
  const adapter = new PrismaPg({ connectionString, ...(schema ? { options: `-c search_path="${schema}"` } : {}) }, { schema });
  // The postgres client's type is structurally the same API as the sqlite one (same models), but
  // TypeScript sees two distinct generated classes; Db is the one type callers program against.
  return new PrismaClient({ adapter }) as unknown as Db;
}
