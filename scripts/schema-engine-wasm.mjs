// Drives Prisma's WebAssembly schema engine (@prisma/schema-engine-wasm) through Prisma 7 driver
// adapters, because Prisma 7's CLI needs a native schema-engine binary that it downloads on first
// use, which fails on machines without internet. This is an INTERNAL Prisma API that Prisma 7's CLI
// no longer uses, so it is dev/test tooling only: the server applies migrations with
// server/db/migrate.ts and never loads this file. Bump `prisma` and this package together.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { PrismaLibSql } from "@prisma/adapter-libsql";
import { PrismaPg } from "@prisma/adapter-pg";

const require = createRequire(import.meta.url);

// The wasm-bindgen glue is a module-level singleton, so the wasm must be instantiated only once.
let engineClass;
async function loadSchemaEngine() {
  if (engineClass) return engineClass;
  // The package's main entry does `import "./x.wasm"`, which Node cannot load; wire the glue by hand.
  const gluePath = require.resolve("@prisma/schema-engine-wasm/schema_engine_bg");
  const glue = await import(pathToFileURL(gluePath).href);
  const bytes = fs.readFileSync(path.join(path.dirname(gluePath), "schema_engine_bg.wasm"));
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { "./schema_engine_bg.js": glue });
  glue.__wbg_set_wasm(instance.exports);
  instance.exports.__wbindgen_start();
  return (engineClass = glue.SchemaEngine);
}

// --- The "error capturing" adapter the engine expects. Port of Prisma 6's
// bindMigrationAwareSqlAdapterFactory, which driver-adapter-utils 7 no longer ships: the engine
// wants Result objects instead of rejected promises, with JS errors parked in a registry. ---
const ok = (value) => ({ ok: true, value, map: (f) => ok(f(value)), flatMap: (f) => f(value) });
const err = (error) => ({ ok: false, error, map: () => err(error), flatMap: () => err(error) });

class ErrorRegistry {
  errors = [];
  consumeError(id) {
    return this.errors[id];
  }
  registerNewError(error) {
    this.errors.push({ error });
    return this.errors.length - 1;
  }
}

const isAdapterError = (e) => e?.name === "DriverAdapterError" && typeof e?.cause === "object";
const capture = (reg, e) => (isAdapterError(e) ? err(e.cause) : err({ kind: "GenericJs", id: reg.registerNewError(e) }));
const wrap =
  (reg, fn) =>
  async (...args) => {
    try {
      return ok(await fn(...args));
    } catch (e) {
      return capture(reg, e);
    }
  };

const bindTransaction = (reg, tx) => ({
  adapterName: tx.adapterName,
  provider: tx.provider,
  options: tx.options,
  queryRaw: wrap(reg, tx.queryRaw.bind(tx)),
  executeRaw: wrap(reg, tx.executeRaw.bind(tx)),
  commit: wrap(reg, tx.commit.bind(tx)),
  rollback: wrap(reg, tx.rollback.bind(tx)),
});

function bindAdapter(reg, a) {
  const bound = {
    adapterName: a.adapterName,
    provider: a.provider,
    errorRegistry: reg,
    queryRaw: wrap(reg, a.queryRaw.bind(a)),
    // The shadow-database replay sends whole multi-statement migration files through executeRaw
    // without parameters; a prepared statement runs only one SQL statement, so run those as scripts.
    executeRaw: wrap(reg, (q) => (q.args?.length ? a.executeRaw(q) : a.executeScript(q.sql).then(() => 0))),
    executeScript: wrap(reg, a.executeScript.bind(a)),
    dispose: wrap(reg, a.dispose.bind(a)),
    startTransaction: async (...x) => (await wrap(reg, a.startTransaction.bind(a))(...x)).map((t) => bindTransaction(reg, t)),
  };
  if (a.getConnectionInfo) {
    bound.getConnectionInfo = (...x) => {
      try {
        return ok(a.getConnectionInfo(...x));
      } catch (e) {
        return capture(reg, e);
      }
    };
  }
  return bound;
}

function bindFactory(factory, connectToShadowDb) {
  const reg = new ErrorRegistry();
  return {
    adapterName: factory.adapterName,
    provider: factory.provider,
    errorRegistry: reg,
    connect: async () => (await wrap(reg, () => factory.connect())()).map((a) => bindAdapter(reg, a)),
    connectToShadowDb: async () => (await wrap(reg, connectToShadowDb)()).map((a) => bindAdapter(reg, a)),
  };
}

// adapter-pg cannot map Postgres' internal "char" type (oid 18), which the engine's catalog queries
// return ("Column type 'char' could not be deserialized"); report it as text (oid 25).
function pgPool(connectionString) {
  const pool = new pg.Pool({ connectionString, max: 2, idleTimeoutMillis: 500 });
  pool.on("error", () => {}); // the shadow DB is force-dropped under idle connections
  const query = pool.query.bind(pool);
  pool.query = async (...args) => {
    const res = await query(...args);
    for (const f of res?.fields ?? []) if (f.dataTypeID === 18) f.dataTypeID = 25;
    return res;
  };
  return pool;
}

const pgAdapter = (url) => new PrismaPg(pgPool(url), { disposeExternalPool: true });

// adapter-pg's own connectToShadowDb ignores the database name when built from a connection
// string (so it replays into the main database) and drops the database before closing its pool.
async function pgShadow(serverUrl) {
  const admin = await pgAdapter(serverUrl).connect();
  const name = `prisma_shadow_${process.pid}_${Date.now()}`;
  await admin.executeScript(`CREATE DATABASE "${name}"`);
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  u.searchParams.delete("schema");
  const shadow = await pgAdapter(u.toString()).connect();
  const dispose = shadow.dispose.bind(shadow);
  shadow.dispose = async () => {
    await dispose();
    await admin.executeScript(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.dispose();
  };
  return shadow;
}

export function schemaProvider(schemaText) {
  const m = /datasource\s+\w+\s*\{[^}]*?provider\s*=\s*"(\w+)"/m.exec(schemaText);
  if (!m) throw new Error("no datasource provider found in the schema");
  return m[1];
}

/**
 * The engine bound to a database. sqlite: "file:<path>" or ":memory:" (a scratch database; so is the shadow DB);
 * postgresql: a server URL where temporary shadow databases may be created and dropped.
 * Call engine.free() when done.
 */
export async function openEngine({ schemaPath, url }) {
  const SchemaEngine = await loadSchemaEngine();
  const schema = fs.readFileSync(schemaPath, "utf8");
  const provider = schemaProvider(schema);
  let factory;
  let shadow;
  let scratchDir;
  if (provider === "sqlite") {
    // ":memory:" databases are temporary files here: @libsql/client 0.17 opens a new connection
    // after each transaction, and for ":memory:" that is a new, empty database.
    scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), "arcade-schema-engine-"));
    let n = 0;
    const scratch = () => pathToFileURL(path.join(scratchDir, `db${n++}.sqlite`)).href;
    const fileUrl = (u) => pathToFileURL(path.resolve(u.replace(/^file:/, ""))).href;
    factory = new PrismaLibSql({ url: !url || url === ":memory:" ? scratch() : fileUrl(url) });
    shadow = () => new PrismaLibSql({ url: scratch() }).connect();
  } else if (provider === "postgresql") {
    if (!url) throw new Error("postgresql needs a server URL: set SHADOW_DATABASE_URL (scripts/with-postgres.sh provides TEST_PG_URL)");
    factory = pgAdapter(url);
    shadow = () => pgShadow(url);
  } else {
    throw new Error(`provider ${provider} is not supported by this tool`);
  }
  const log = (m) => process.env.SCHEMA_ENGINE_DEBUG && console.error(m);
  const engine = await SchemaEngine.new({ datamodels: [[schemaPath, schema]] }, log, bindFactory(factory, shadow));
  if (scratchDir) {
    const free = engine.free.bind(engine);
    engine.free = () => {
      free();
      fs.rmSync(scratchDir, { recursive: true, force: true });
    };
  }
  return { engine, provider, files: [{ path: schemaPath, content: schema }] };
}

/** The migrations list as Prisma 7's CLI builds it: directories in localeCompare order, files read as UTF-8. */
export function migrationsList(dir, provider) {
  const lockPath = path.join(dir, "migration_lock.toml");
  const dirs = fs.existsSync(dir)
    ? fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort((a, b) => a.localeCompare(b))
    : [];
  return {
    baseDir: dir,
    // Before the first migration there is no lock file, but the engine needs one to pick the connector.
    lockfile: {
      path: "migration_lock.toml",
      content: fs.existsSync(lockPath) ? fs.readFileSync(lockPath, "utf8") : `provider = "${provider}"\n`,
    },
    migrationDirectories: dirs.map((d) => ({
      path: d,
      migrationFile: {
        path: "migration.sql",
        content: { tag: "ok", value: fs.readFileSync(path.join(dir, d, "migration.sql"), "utf8") },
      },
    })),
    shadowDbInitScript: "",
  };
}

export const noFilter = { externalTables: [], externalEnums: [] };

/** SQL taking the migrations to the schema, replayed in a shadow DB. exitCode 0 = in sync, 2 = drift. */
export async function diffMigrationsToSchema({ schemaPath, migrationsDir, url }) {
  const { engine, files, provider } = await openEngine({ schemaPath, url });
  try {
    return await engine.diff({
      from: { tag: "migrations", ...migrationsList(migrationsDir, provider) },
      to: { tag: "schemaDatamodel", files },
      script: true,
      exitCode: true,
      filters: noFilter,
    });
  } finally {
    engine.free();
  }
}
