import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Test workers open gRPC clients too: the same DEP0123 filter as the CLI (proto/warnings.ts).
    setupFiles: ["test/helpers/setup.ts"],
    // End-to-end tests start real server and agent processes; give them room on a shared 2-core box.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    // Two workers: the machine has two cores and e2e files each run several processes.
    maxWorkers: 2,
  },
});
