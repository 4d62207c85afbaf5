// Seeded randomness for tests: the same seed gives the same values on every machine, and the
// seed is printed, so a failure can be replayed with ARCADE_TEST_SEED=<seed>.
import { randomInt } from "node:crypto";

/** mulberry32: a small, fast 32-bit PRNG; the same seed gives the same sequence on every machine. */
export function seeded(seed: number): { next(): number; int(min: number, max: number): number; bytes(n: number): Buffer } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    /** An integer in [min, max]. */
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    bytes: (n) => {
      const b = Buffer.allocUnsafe(Math.ceil(n / 4) * 4);
      for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(next() * 4294967296), i);
      return b.subarray(0, n);
    },
  };
}

/** ARCADE_TEST_SEED, or a fresh one; printed either way so a failing run can be replayed. */
export function testSeed(what: string): number {
  const fromEnv = process.env.ARCADE_TEST_SEED;
  const seed = fromEnv !== undefined && fromEnv !== "" ? Number.parseInt(fromEnv, 10) >>> 0 : randomInt(2 ** 32 - 1);
  console.log(`${what}: seed ${seed} (replay with ARCADE_TEST_SEED=${seed})`);
  return seed;
}
