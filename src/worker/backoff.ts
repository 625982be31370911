/**
 * Retry delays: Celery's `retry_backoff` (exponential, capped, full jitter) as a pure function
 * with an injectable random source.
 *
 * @module
 */

/** Options of {@linkcode retryBackoffDelay}. */
export interface BackoffOptions {
  /** Seconds for the first retry (`retry_backoff=True` means 1). @default 1 */
  base?: number;
  /** Cap in seconds (`retry_backoff_max`). @default 600 */
  max?: number;
  /** Full jitter: a random delay in [0, computed] (`retry_jitter`). @default true */
  jitter?: boolean;
  /** Random source in [0, 1). @default Math.random */
  random?: () => number;
}

/**
 * Seconds before retry number `retries` (0 for the first retry): `min(max, base * 2^retries)`,
 * then, with jitter, a random whole number of seconds in [0, that], as Celery's
 * `get_exponential_backoff_interval`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryBackoffDelay } from "./backoff.ts";
 * assert.deepEqual([0, 1, 2, 3].map((r) => retryBackoffDelay(r, { jitter: false })), [1, 2, 4, 8]);
 * assert.equal(retryBackoffDelay(20, { jitter: false, max: 600 }), 600);
 * assert.equal(retryBackoffDelay(3, { random: () => 0.5 }), 4);
 * ```
 */
export function retryBackoffDelay(retries: number, options: BackoffOptions = {}): number {
  const { base = 1, max = 600, jitter = true, random = Math.random } = options;
  const countdown = Math.min(max, base * 2 ** Math.max(0, retries));
  return jitter ? Math.floor(random() * (countdown + 1)) : countdown;
}
