/**
 * Timers for ETA tasks: `setTimeout` breaks above 2^31−1 ms (about 24.8 days) and fires at
 * once; {@linkcode setLongTimeout} chains shorter timers instead.
 *
 * @module
 */

/** The largest delay `setTimeout` honours. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** A cancellable timer handle. */
export interface LongTimer {
  /** Stops the timer. */
  cancel(): void;
}

/**
 * Calls `fn` after `delayMs`, for any delay. With `persistent: false` the timer does not
 * keep the process alive.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { setLongTimeout } from "./timers.ts";
 * let fired = false;
 * const t = setLongTimeout(() => fired = true, 2 ** 40);
 * t.cancel();
 * assert.equal(fired, false);
 * ```
 */
export function setLongTimeout(
  fn: () => void,
  delayMs: number,
  options: { persistent?: boolean } = {},
): LongTimer {
  let id: ReturnType<typeof setTimeout> | undefined;
  let cancelled = false;
  // NaN would never compare as due and re-arm a 0 ms timer forever: treat it as 0.
  const delay = Number.isNaN(delayMs) ? 0 : Math.max(0, delayMs);
  const target = Date.now() + delay;
  const arm = () => {
    if (cancelled) return;
    const left = target - Date.now();
    if (left <= 0) return fn();
    id = setTimeout(arm, Math.min(left, MAX_TIMEOUT_MS));
    if (options.persistent === false) Deno.unrefTimer(id);
  };
  id = setTimeout(arm, Math.min(delay, MAX_TIMEOUT_MS));
  if (options.persistent === false) Deno.unrefTimer(id);
  return {
    cancel() {
      cancelled = true;
      if (id !== undefined) clearTimeout(id);
    },
  };
}

/**
 * Waits `ms`, or less when `signal` aborts; resolves either way and leaves no timer or
 * listener behind (the worker's back-off and beat's loop sleep).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { abortableSleep } from "./timers.ts";
 * const controller = new AbortController();
 * const started = Date.now();
 * const sleeping = abortableSleep(10_000, controller.signal);
 * controller.abort();
 * await sleeping;
 * assert.ok(Date.now() - started < 1000);
 * ```
 */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
