/**
 * The async concurrency pool: at most `size` tasks run at once in this process.
 *
 * Duties:
 * 1. count free slots, so the consumer fetches only what it can start;
 * 2. run a job in a slot and free the slot when it settles;
 * 3. tell waiters when a slot frees up or the pool becomes idle;
 * 4. grow and shrink at run time (`pool_grow`/`pool_shrink`).
 *
 * @module
 */

/**
 * An async pool.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AsyncPool } from "./pool.ts";
 * const pool = new AsyncPool(2);
 * pool.run(() => new Promise((r) => setTimeout(r, 5)));
 * assert.equal(pool.free, 1);
 * await pool.whenIdle();
 * assert.equal(pool.free, 2);
 * ```
 */
export class AsyncPool {
  #size: number;
  #active = 0;
  #waiters: (() => void)[] = [];

  /**
   * @param size Number of slots.
   * @throws {RangeError} When size is not a positive integer.
   */
  constructor(size: number) {
    this.#size = AsyncPool.#check(size);
  }

  static #check(size: number): number {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(
        `Cannot size the pool: concurrency must be a positive integer, got ${size}`,
      );
    }
    return size;
  }

  /** Number of slots. */
  get size(): number {
    return this.#size;
  }

  /** Jobs running now. */
  get active(): number {
    return this.#active;
  }

  /** Free slots (never negative). */
  get free(): number {
    return Math.max(0, this.#size - this.#active);
  }

  /** Changes the number of slots; running jobs are never interrupted. */
  resize(size: number): void {
    this.#size = AsyncPool.#check(size);
    this.#notify();
  }

  /**
   * Called each time a job settles and its slot is given back, before the waiters of
   * {@linkcode changed} wake (the worker starts its next prefetched request here).
   */
  onSlotFree?: () => void;

  /** Starts a job now, taking a slot even if none is free (the caller checks `free`). */
  run(job: () => Promise<unknown>): void {
    this.#active++;
    const done = () => {
      this.#active--;
      this.onSlotFree?.();
      this.#notify();
    };
    job().then(done, done);
  }

  /** Wakes the waiters of {@linkcode changed} (the worker's budget changed elsewhere). */
  notifyChanged(): void {
    this.#notify();
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves at the next change (a slot freed, a resize). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Resolves once a slot is free. */
  async whenFree(): Promise<void> {
    while (this.free === 0) await this.changed();
  }

  /** Resolves once nothing runs. */
  async whenIdle(): Promise<void> {
    while (this.#active > 0) await this.changed();
  }
}
