import { defineConfig } from "vitest/config";

// `npm run test:soak`: long randomized runs (seeded; the seed is printed), kept out of `npm test`.
export default defineConfig({
  test: {
    include: ["test/soak/**/*.soak.ts"],
    setupFiles: ["test/helpers/setup.ts"],
    // Generous: the soak must pass on a busy 2-core machine, where 200 installs take minutes.
    testTimeout: 30 * 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
