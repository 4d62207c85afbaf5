// Throttling of failed logins per source host. Each source gets a few free failures, then must wait
// an exponentially growing delay before its next credential check, and is locked out entirely after
// many failures. State lives in memory only: a restart forgets it, which costs an attacker nothing
// they could not get by waiting out the window anyway.

import net from "node:net";
import { ArcadeError, ErrorCode } from "../signing/errors.js";

export type AuthThrottleOptions = {
  freeFailures?: number;
  windowMs?: number;
  maxDelayMs?: number;
  lockoutFailures?: number;
  lockoutMs?: number;
  now?: () => number;
  maxKeys?: number;
};

const BASE_DELAY_MS = 250;

type Entry = {
  /** Times of recent failures, oldest first, at most lockoutFailures of them. */
  failures: number[];
  lockedUntil: number;
  /** Earliest time the next credential check may run; later callers queue behind it. */
  nextSlot: number;
};

export class AuthThrottle {
  private readonly free: number;
  private readonly windowMs: number;
  private readonly maxDelayMs: number;
  private readonly lockoutFailures: number;
  private readonly lockoutMs: number;
  private readonly now: () => number;
  private readonly maxKeys: number;
  // Map iteration order is insertion order; entries are re-inserted on every failure, so the
  // first key is always the one that has been quiet the longest.
  private readonly entries = new Map<string, Entry>();

  constructor(o: AuthThrottleOptions = {}) {
    this.free = o.freeFailures ?? 5;
    this.windowMs = o.windowMs ?? 10 * 60_000;
    this.maxDelayMs = o.maxDelayMs ?? 30_000;
    this.lockoutFailures = Math.max(1, o.lockoutFailures ?? 50);
    this.lockoutMs = o.lockoutMs ?? 15 * 60_000;
    this.now = o.now ?? Date.now;
    this.maxKeys = Math.max(1, o.maxKeys ?? 10_000);
  }

  /** Before checking a credential: resolves after the delay this source has earned, or throws while it is locked out. */
  async gate(peer: string): Promise<void> {
    const host = AuthThrottle.hostOf(peer);
    const now = this.now();
    const e = this.live(host, now);
    if (e === undefined) return;
    if (e.lockedUntil > now) throw refuse(host, e.lockedUntil - now);
    const delay = this.delayFor(e.failures.length);
    if (delay === 0) return;
    // Concurrent attempts each take the next slot instead of all waiting out the same delay, which
    // would let a source multiply its guessing rate by opening more connections. Past the cap the
    // attempt is refused rather than queued, so pending timers per source stay bounded.
    const start = Math.max(now, e.nextSlot);
    const wait = start - now;
    if (wait > this.maxDelayMs) throw refuse(host, wait);
    e.nextSlot = start + delay;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }

  recordFailure(peer: string): { failures: number; delayMs: number; locked: boolean } {
    const host = AuthThrottle.hostOf(peer);
    const now = this.now();
    const e = this.live(host, now) ?? { failures: [], lockedUntil: 0, nextSlot: 0 };
    e.failures.push(now);
    if (e.failures.length > this.lockoutFailures) e.failures.shift();
    const failures = e.failures.length;
    // A lockout is not extended by failures during it: callers gate first, so those are rare, and
    // a fixed end lets the message tell the user when to come back.
    if (failures >= this.lockoutFailures && e.lockedUntil <= now) e.lockedUntil = now + this.lockoutMs;
    const delayMs = this.delayFor(failures);
    e.nextSlot = Math.max(e.nextSlot, now + delayMs);
    this.entries.delete(host);
    this.entries.set(host, e);
    this.evict(host);
    return { failures, delayMs, locked: e.lockedUntil > now };
  }

  /** A correct credential proves the source is not guessing: it starts over with its free failures. */
  recordSuccess(peer: string): void {
    this.entries.delete(AuthThrottle.hostOf(peer));
  }

  /**
   * The host part of a gRPC peer. grpc-js reports "1.2.3.4:5678" and "::1:5678" (no brackets),
   * the C core "ipv4:1.2.3.4:5678" and "ipv6:[::1]:5678"; all become the bare address, with IPv6 in
   * canonical form and IPv4-mapped IPv6 as dotted IPv4, so one host on a dual-stack listener is
   * one key. Anything else (unix sockets, "unknown") is its own key, compared verbatim.
   */
  static hostOf(peer: string): string {
    let s = peer.trim();
    const scheme = /^(ipv4|ipv6):/i.exec(s);
    if (scheme) s = s.slice(scheme[0].length);
    const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
    if (bracketed) s = bracketed[1]!;
    else {
      const port = /^(.*):\d{1,5}$/.exec(s);
      if (port && net.isIP(port[1]!)) s = port[1]!;
    }
    if (net.isIPv4(s)) return s;
    if (net.isIPv6(s)) return canonicalIPv6(s);
    return peer;
  }

  private delayFor(failures: number): number {
    if (failures <= this.free) return 0;
    return Math.min(this.maxDelayMs, BASE_DELAY_MS * 2 ** Math.min(failures - this.free, 30));
  }

  /** The entry with expired failures and lockouts dropped, or undefined if nothing is left of it. */
  private live(host: string, now: number): Entry | undefined {
    const e = this.entries.get(host);
    if (e === undefined) return undefined;
    if (e.lockedUntil > 0 && e.lockedUntil <= now) {
      e.failures = [];
      e.lockedUntil = 0;
      e.nextSlot = 0;
    }
    const cutoff = now - this.windowMs;
    while (e.failures.length > 0 && e.failures[0]! <= cutoff) e.failures.shift();
    if (e.failures.length === 0 && e.lockedUntil === 0) {
      this.entries.delete(host);
      return undefined;
    }
    return e;
  }

  // Locked-out sources are evicted last, or a flood of new source addresses would clear one's own
  // lockout; the source just recorded never is, or a table full of lockouts would stop tracking
  // every new source.
  private evict(keep: string): void {
    const now = this.now();
    while (this.entries.size > this.maxKeys) {
      let victim: string | undefined;
      let oldest: string | undefined;
      for (const [host, e] of this.entries) {
        if (host === keep) continue;
        oldest ??= host;
        if (e.lockedUntil <= now) {
          victim = host;
          break;
        }
      }
      const drop = victim ?? oldest;
      if (drop === undefined) return;
      this.entries.delete(drop);
    }
  }

  /** Number of sources currently tracked (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }
}

function refuse(host: string, ms: number): ArcadeError {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  return new ArcadeError(ErrorCode.UNAUTHENTICATED, `too many failed attempts from ${host}; try again in ${seconds} s`, {
    retryAfterMs: ms,
  });
}

function canonicalIPv6(s: string): string {
  let host: string;
  try {
    host = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    // Zone ids ("fe80::1%eth0") are valid addresses but not valid in URLs.
    return s.toLowerCase();
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (!mapped) return host;
  const hi = parseInt(mapped[1]!, 16);
  const lo = parseInt(mapped[2]!, 16);
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
}
