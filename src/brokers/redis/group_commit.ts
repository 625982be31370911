/**
 * Group commit: many small writes (acks, result stores) issued close together go to Redis as
 * one command. No added latency: the first write of a quiet period is sent at once (end of
 * the current microtask burst); writes arriving while a batch is in flight wait for it and
 * then go together, so batches grow with the load. A caller whose next command must come after
 * the queued writes (the broker's fetch, after the acks issued before it) sends them at once
 * with {@linkcode GroupCommit.flushQueued}.
 *
 * @module
 */

interface Pending<T> {
  item: T;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Batches items for one flush function.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GroupCommit } from "./group_commit.ts";
 * const batches: number[][] = [];
 * const group = new GroupCommit<number>(async (items) => { batches.push(items); }, 100);
 * await Promise.all([1, 2, 3].map((n) => group.add(n)));
 * assert.deepEqual(batches, [[1, 2, 3]]);
 * ```
 */
export class GroupCommit<T> {
  #flush: (items: T[]) => Promise<unknown>;
  #maxBatch: number;
  #queue: Pending<T>[] = [];
  #running = false;

  /**
   * @param flush Writes one batch; its rejection rejects every `add` of the batch.
   * @param maxBatch Most items per flush call.
   */
  constructor(flush: (items: T[]) => Promise<unknown>, maxBatch = 1000) {
    this.#flush = flush;
    this.#maxBatch = maxBatch;
  }

  /** Queues one item; resolves once the batch holding it was written. */
  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        queueMicrotask(() => this.#drain());
      }
    });
  }

  /**
   * Sends every queued item now, without waiting for the batch in flight: when this returns,
   * the flush function has been called for all of them (on a pipelined connection their
   * commands are written before any command the caller sends next).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { GroupCommit } from "./group_commit.ts";
   * const sent: string[] = [];
   * const group = new GroupCommit<string>(async (items) => { sent.push(...items); });
   * const written = group.add("ack");
   * group.flushQueued();
   * sent.push("fetch");
   * await written;
   * assert.deepEqual(sent, ["ack", "fetch"]);
   * ```
   */
  flushQueued(): void {
    while (this.#queue.length) void this.#write(this.#queue.splice(0, this.#maxBatch));
  }

  async #drain(): Promise<void> {
    while (this.#queue.length) await this.#write(this.#queue.splice(0, this.#maxBatch));
    this.#running = false;
  }

  async #write(batch: Pending<T>[]): Promise<void> {
    try {
      await this.#flush(batch.map((p) => p.item));
      for (const p of batch) p.resolve();
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }
}
