import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AuthThrottle } from "../../server/ratelimit.js";
import { ErrorCode, isArcadeError } from "../../signing/errors.js";

const PEER = "ipv4:10.0.0.1:5432";
const MIN = 60_000;

/** A throttle on a manual clock; `advance` moves it and vitest's fake timers together. */
function setup(o: ConstructorParameters<typeof AuthThrottle>[0] = {}) {
  let t = 1_000_000;
  const throttle = new AuthThrottle({ now: () => t, ...o });
  const advance = async (ms: number) => {
    t += ms;
    await vi.advanceTimersByTimeAsync(ms);
  };
  const fail = (n: number, peer = PEER) => {
    let last = throttle.recordFailure(peer);
    for (let i = 1; i < n; i++) last = throttle.recordFailure(peer);
    return last;
  };
  return { throttle, advance, fail };
}

/** How long gate() takes to resolve, in steps of 50 ms; throws if it rejects. */
async function gateDelay(throttle: AuthThrottle, advance: (ms: number) => Promise<void>, peer = PEER): Promise<number> {
  let done = false;
  let error: unknown;
  throttle.gate(peer).then(
    () => (done = true),
    (e: unknown) => ((error = e), (done = true)),
  );
  let waited = 0;
  await advance(0);
  while (!done) {
    await advance(50);
    waited += 50;
  }
  if (error !== undefined) throw error;
  return waited;
}

async function lockedMessage(p: Promise<void>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(isArcadeError(e, ErrorCode.UNAUTHENTICATED)).toBe(true);
    return (e as Error).message;
  }
  throw new Error("expected UNAUTHENTICATED");
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("AuthThrottle", () => {
  it("lets the free failures through without delay", async () => {
    const { throttle, advance, fail } = setup();
    expect(await gateDelay(throttle, advance)).toBe(0);
    expect(fail(5)).toEqual({ failures: 5, delayMs: 0, locked: false });
    expect(await gateDelay(throttle, advance)).toBe(0);
  });

  it("grows the delay exponentially after the free failures and caps it", () => {
    const { fail } = setup();
    fail(5);
    const delays = Array.from({ length: 10 }, () => fail(1).delayMs);
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  });

  it("makes gate wait out the earned delay, counted from the last failure", async () => {
    const { throttle, advance, fail } = setup();
    fail(7); // 1000 ms
    expect(await gateDelay(throttle, advance)).toBe(1000);
    fail(1); // 2000 ms
    await advance(1500);
    expect(await gateDelay(throttle, advance)).toBe(500);
  });

  it("queues concurrent attempts instead of letting them all through after one delay", async () => {
    const { throttle, advance, fail } = setup({ maxDelayMs: 2000 });
    fail(6); // 500 ms each
    const finished: number[] = [];
    let elapsed = 0;
    const gates = [0, 1, 2].map((i) => throttle.gate(PEER).then(() => finished.push(i)));
    while (finished.length < 3) {
      await advance(50);
      elapsed += 50;
    }
    await Promise.all(gates);
    expect(finished).toEqual([0, 1, 2]);
    expect(elapsed).toBe(1500);
    // The next slot is 500 ms away and slots are 500 ms apart; with a 2000 ms cap the fifth
    // concurrent attempt would wait 2500 ms, so it is refused instead of queued.
    const queue = Array.from({ length: 5 }, () => throttle.gate(PEER));
    expect(await lockedMessage(queue[4]!)).toBe("too many failed attempts from 10.0.0.1; try again in 3 s");
    await advance(2000);
    expect((await Promise.allSettled(queue.slice(0, 4))).map((r) => r.status)).toEqual(Array(4).fill("fulfilled"));
  });

  it("locks a source out after lockoutFailures until lockoutMs has passed", async () => {
    const { throttle, advance, fail } = setup();
    expect(fail(49).locked).toBe(false);
    expect(fail(1)).toEqual({ failures: 50, delayMs: 30_000, locked: true });
    expect(await lockedMessage(throttle.gate(PEER))).toBe("too many failed attempts from 10.0.0.1; try again in 900 s");
    await advance(14 * MIN);
    expect(await lockedMessage(throttle.gate(PEER))).toMatch(/try again in 60 s$/);
    expect(fail(1).locked).toBe(true);
    await advance(1 * MIN);
    expect(await gateDelay(throttle, advance)).toBe(0);
    expect(fail(1)).toEqual({ failures: 1, delayMs: 0, locked: false });
  });

  it("does not lock out other sources", async () => {
    const { throttle, advance, fail } = setup();
    fail(50);
    expect(await gateDelay(throttle, advance, "ipv4:10.0.0.2:5432")).toBe(0);
  });

  it("resets a source on success", async () => {
    const { throttle, advance, fail } = setup();
    fail(8);
    throttle.recordSuccess("ipv4:10.0.0.1:9999");
    expect(await gateDelay(throttle, advance)).toBe(0);
    expect(fail(1)).toEqual({ failures: 1, delayMs: 0, locked: false });
    expect(throttle.size).toBe(1);
  });

  it("forgets failures older than the window", async () => {
    const { throttle, advance, fail } = setup({ windowMs: 10 * MIN });
    fail(4);
    await advance(6 * MIN);
    fail(3);
    expect(fail(1).failures).toBe(8);
    await advance(4 * MIN); // the first four are now 10 minutes old
    expect(fail(1)).toEqual({ failures: 5, delayMs: 0, locked: false });
    await advance(10 * MIN);
    expect(await gateDelay(throttle, advance)).toBe(0);
    expect(throttle.size).toBe(0);
  });

  it("treats every port of one host as one source", () => {
    const { fail } = setup();
    fail(5, "ipv4:10.0.0.1:1000");
    expect(fail(1, "10.0.0.1:2000").failures).toBe(6);
    expect(fail(1, "ipv6:[::ffff:10.0.0.1]:3000").failures).toBe(7);
  });

  it("bounds memory, evicting the quietest unlocked source first", async () => {
    const { throttle, fail } = setup({ maxKeys: 3 });
    fail(50, "1.1.1.1:1");
    fail(1, "2.2.2.2:1");
    fail(1, "3.3.3.3:1");
    fail(1, "2.2.2.2:1"); // now more recent than 3.3.3.3
    fail(1, "4.4.4.4:1");
    expect(throttle.size).toBe(3);
    expect(fail(1, "2.2.2.2:1").failures).toBe(3);
    expect(fail(1, "3.3.3.3:1").failures).toBe(1);
    expect(await lockedMessage(throttle.gate("1.1.1.1:1"))).toMatch(/too many failed attempts/);
  });

  it("keeps tracking new sources even when every tracked source is locked out", () => {
    const { throttle, fail } = setup({ maxKeys: 2, lockoutFailures: 3 });
    fail(3, "1.1.1.1:1");
    fail(3, "2.2.2.2:1");
    expect(fail(2, "3.3.3.3:1").failures).toBe(2);
    expect(throttle.size).toBe(2);
  });
});

describe("AuthThrottle.hostOf", () => {
  it.each([
    ["ipv4:127.0.0.1:5432", "127.0.0.1"],
    ["127.0.0.1:5432", "127.0.0.1"],
    ["127.0.0.1", "127.0.0.1"],
    ["ipv6:[::1]:5432", "::1"],
    ["[::1]:5432", "::1"],
    ["::1:5432", "::1"],
    ["::1", "::1"],
    ["ipv6:[2001:DB8:0:0::1]:443", "2001:db8::1"],
    ["2001:db8::1", "2001:db8::1"],
    ["ipv6:[::ffff:192.168.1.2]:80", "192.168.1.2"],
    ["::ffff:192.168.1.2:80", "192.168.1.2"],
    ["ipv6:[fe80::1%eth0]:80", "fe80::1%eth0"],
    ["unix:/run/arcade.sock", "unix:/run/arcade.sock"],
    ["unix:", "unix:"],
    ["unknown", "unknown"],
    ["example.com:443", "example.com:443"],
  ])("%j → %j", (peer, host) => {
    expect(AuthThrottle.hostOf(peer)).toBe(host);
  });
});
