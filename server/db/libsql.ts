// The Prisma driver adapter for the embedded SQLite: @prisma/adapter-libsql, whose native binary
// ships as an npm package (@libsql/<platform>), so installing needs neither a C toolchain nor a
// download from outside the npm registry (DEVELOPING.md, "The embedded SQLite").
//
// One change to it: @libsql/client 0.17 runs each transaction on the client's connection and then
// opens a NEW connection for later queries, never closing the old one (libsql 0.5 keeps a
// connection that prepared a statement open until garbage collection). Prisma wraps every nested
// write (a job with its plugin rows) in a transaction, so the server would leak two file
// descriptors per submitted job (bench/sqlite.ts counts them: 633 after 300 jobs) and pay for a new
// connection each time. Here transactions run on the one connection instead. That is safe because
// the adapter holds its own mutex from BEGIN to COMMIT/ROLLBACK, so no other query of this client
// can run in the middle of a transaction.
import { createClient, type Client, type Config, type InStatement, type Transaction, type TransactionMode } from "@libsql/client";
import { PrismaLibSql } from "@prisma/adapter-libsql";

const BEGIN: Record<TransactionMode, string> = {
  write: "BEGIN IMMEDIATE",
  read: "BEGIN TRANSACTION READONLY",
  deferred: "BEGIN DEFERRED",
};

function oneConnection(client: Client): Client {
  const transaction = async (mode: TransactionMode = "write"): Promise<Transaction> => {
    await client.execute(BEGIN[mode]);
    let open = true;
    const end = async (sql: "COMMIT" | "ROLLBACK") => {
      if (!open) return;
      open = false;
      await client.execute(sql);
    };
    const live = () => {
      if (!open) throw new Error("the transaction is closed");
    };
    return {
      execute: (stmt: InStatement) => (live(), client.execute(stmt)),
      batch: async (stmts: InStatement[]) => {
        live();
        const out = [];
        for (const s of stmts) out.push(await client.execute(s));
        return out;
      },
      // The client's own executeMultiple rolls back any open transaction when it finishes; the
      // adapter never calls it on a transaction.
      executeMultiple: () => Promise.reject(new Error("executeMultiple is not supported inside a transaction")),
      commit: () => end("COMMIT"),
      rollback: () => end("ROLLBACK"),
      close: () => void end("ROLLBACK").catch(() => {}),
      get closed() {
        return !open;
      },
    };
  };
  return new Proxy(client, {
    get(target, prop) {
      if (prop === "transaction") return transaction;
      const v: unknown = Reflect.get(target, prop, target);
      // The client keeps its connection in private fields: its methods must run on the client itself.
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** PrismaLibSql whose clients keep transactions on their one connection. */
export class PrismaLibSqlOneConnection extends PrismaLibSql {
  override createClient(config: Config): Client {
    return oneConnection(createClient(config));
  }
}
