#!/bin/sh
# Stand-in for PRISMA_SCHEMA_ENGINE_BINARY. `prisma generate` only checks that the file exists;
# without it the CLI tries to download the real binary, which fails on machines without internet.
echo "the Prisma schema-engine binary is not available offline; use scripts/prisma-offline.mjs (npm run db:migration / db:check)" >&2
exit 1
