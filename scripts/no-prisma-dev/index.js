// package.json `overrides` installs this instead of @prisma/dev. The Prisma CLI needs that package
// only for `prisma dev` (a local Prisma Postgres server), which Arcade does not use, and it pulls in
// @prisma/streams-local, which requires Node 22 (an EBADENGINE warning on Node 20). The CLI loads
// `@prisma/dev/internal/state` at start-up and asks ServerState.scan() for running local servers:
// there are none. Anything else says why it is missing.
"use strict";

function notInstalled() {
  throw new Error(
    "@prisma/dev is replaced by a stub in this project (package.json overrides), so `prisma dev` is not available. See DEVELOPING.md, 'Install scripts and overrides'.",
  );
}

class ServerState {
  static async scan() {
    return [];
  }
  static async fromServerDump() {
    return notInstalled();
  }
  static async createExclusively() {
    return notInstalled();
  }
}

module.exports = { ServerState, startPrismaDevServer: notInstalled, unstable_startServer: notInstalled };
