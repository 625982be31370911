/**
 * Celery rate limits (`"10/s"`, `"100/m"`, `"1000/h"`, or a number meaning per second) as
 * token buckets, one per task type, so a limited task never blocks other task types.
 *
 * @module
 */

/** Tokens per millisecond, or `null` for "no limit". */
export type Rate = number | null;

/**
 * Parses a Celery rate limit.
 *
 * @throws {RangeError} For text that is not a rate (the message quotes it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRateLimit } from "./rate_limit.ts";
 * assert.equal(parseRateLimit("10/s"), 10 / 1000);
 * assert.equal(parseRateLimit("120/m"), 2 / 1000);
 * assert.equal(parseRateLimit("3600/h"), 1 / 1000);
 * assert.equal(parseRateLimit("0"), null);
 * assert.throws(() => parseRateLimit("fast"), RangeError);
 * ```
 */
export function parseRateLimit(limit: string | number | null | undefined): Rate {
  if (limit === null || limit === undefined || limit === "") return null;
  if (typeof limit === "number") {
    if (!Number.isFinite(limit) || limit < 0) {
      throw new RangeError(`Invalid rate limit string: ${limit}`);
    }
    return limit === 0 ? null : limit / 1000;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?\s*$/.exec(limit);
  if (!m) throw new RangeError(`Invalid rate limit string: ${JSON.stringify(limit)}`);
  const n = Number(m[1]);
  if (n === 0) return null;
  const per = { s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "s" | "m" | "h"];
  return n / per;
}

/**
 * A token bucket: capacity = one second's worth of tokens (at least 1), refilled
 * continuously. `take()` returns 0 when a token was taken, else the milliseconds until one
 * is available (nothing taken).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TokenBucket } from "./rate_limit.ts";
 * let now = 0;
 * const bucket = new TokenBucket(1 / 1000, () => now); // 1/s
 * assert.equal(bucket.take(), 0);
 * assert.equal(bucket.take(), 1000);
 * now = 1000;
 * assert.equal(bucket.take(), 0);
 * ```
 */
export class TokenBucket {
  #rate: number;
  #capacity: number;
  #tokens: number;
  #last: number;
  #now: () => number;

  /**
   * @param rate Tokens per millisecond (> 0).
   * @param now Clock in milliseconds. @default Date.now
   */
  constructor(rate: number, now: () => number = Date.now) {
    if (!(rate > 0)) {
      throw new RangeError(`Cannot create token bucket: rate must be > 0, got ${rate}`);
    }
    this.#rate = rate;
    this.#capacity = Math.max(1, rate * 1000);
    this.#tokens = this.#capacity;
    this.#now = now;
    this.#last = now();
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#last) * this.#rate);
    this.#last = now;
  }

  /** Takes a token (returns 0) or says how long to wait for one. */
  take(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.#tokens) / this.#rate);
  }
}
