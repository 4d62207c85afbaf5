// Read by `prisma generate` (npm run db:generate), and by the real `prisma migrate *` commands on
// machines that can download the schema engine. The server itself never reads this file: it
// applies the committed SQL with server/db/migrate.ts.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "file:./dev.db" },
});
