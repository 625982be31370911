/**
 * Polling helpers for tests: wait for a condition with a deadline instead of sleeping a
 * fixed time. They keep the real `setTimeout` and `performance.now` captured at import, so
 * they keep working while `@sinonjs/fake-timers` fakes the global clock.
 *
 * @module
 */

const realSetTimeout = globalThis.setTimeout;
const realNow = performance.now.bind(performance);

/** Options of {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (real time). @default 5000 */
  timeoutMs?: number;
  /** Milliseconds between polls. @default 2 */
  intervalMs?: number;
  /** What is waited for, for the error message. */
  message?: string;
}

/** Resolves after one turn of the real macrotask queue (timers, I/O) has run. */
export function nextMacrotask(ms = 0): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, ms));
}

/** `T` without its falsy members. */
export type Truthy<T> = Exclude<T, false | 0 | "" | null | undefined>;

/**
 * Polls `cond` until it returns (or resolves to) a truthy value and returns that value.
 *
 * @throws {Error} When `timeoutMs` passes first; the message says what was waited for.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { waitFor } from "./wait.ts";
 * let n = 0;
 * const id = setInterval(() => n++, 1);
 * assert.ok(await waitFor(() => n >= 3, { timeoutMs: 1000 }));
 * clearInterval(id);
 * ```
 */
export async function waitFor<T>(
  cond: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Truthy<T>> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 2;
  const deadline = realNow() + timeoutMs;
  for (;;) {
    const value = await cond();
    if (value) return value as Truthy<T>;
    if (realNow() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${options.message ?? cond.toString()}`,
      );
    }
    await nextMacrotask(intervalMs);
  }
}

/** A promise with its resolve/reject, to gate a task body from the test. */
export interface Gate<T = void> {
  /** The promise. */
  promise: Promise<T>;
  /** Opens the gate. */
  resolve: (value: T) => void;
  /** Fails the gate. */
  reject: (reason?: unknown) => void;
}

/** Builds a {@linkcode Gate}. */
export function gate<T = void>(): Gate<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
