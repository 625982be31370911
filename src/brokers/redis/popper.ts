/**
 * The popping half of the Redis broker's fetch: the FETCH script on the command connection,
 * `BRPOP` on the dedicated blocking connection (one at a time) followed by RECORD, and the
 * undo of a pop whose fetch was aborted while the command was in flight.
 *
 * @module
 */

import type { RedisClient } from "../../redis/client.ts";
import { DEAD_LETTERS, queueOfBucket, UNACKED, UNACKED_INDEX } from "./keys.ts";
import { BROKER_SCRIPTS } from "./unacked.ts";

/** One popped message: the bucket list it came from, its text, its tag ("" = dead-lettered). */
export interface Popped {
  /** Bucket list key. */
  key: string;
  /** The envelope text as it sat in the list. */
  raw: string;
  /** Delivery tag recorded in `unacked`, or `""` when the script dead-lettered it. */
  tag: string;
}

/** What the server can do that the popper uses, read off its version. */
export interface PopFeatures {
  /** BRPOP takes fractional seconds (Redis ≥ 6). */
  fractionalTimeouts: boolean;
  /** `RPOP key count` (Redis ≥ 6.2): FETCH pops a bucket's messages with one call. */
  popCount: boolean;
}

/**
 * The features of a server, from its `INFO server` text (`redis_version:7.0.15`); a text
 * without a version counts as a current server.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { popFeatures } from "./popper.ts";
 * assert.deepEqual(popFeatures("redis_version:6.0.16\r\n"), {
 *   fractionalTimeouts: true,
 *   popCount: false,
 * });
 * assert.equal(popFeatures("redis_version:6.2.0\r\n").popCount, true);
 * ```
 */
export function popFeatures(info: string): PopFeatures {
  const match = /redis_version:(\d+)\.(\d+)/.exec(info);
  const [major, minor] = match ? [Number(match[1]), Number(match[2])] : [7, 0];
  return {
    fractionalTimeouts: major >= 6,
    popCount: major > 6 || (major === 6 && minor >= 2),
  };
}

function nowSeconds(): string {
  return (Date.now() / 1000).toFixed(6);
}

/**
 * Pops messages for one broker.
 *
 * @example
 * ```ts ignore
 * const popper = new Popper(client, blockingClient, popFeatures(await client.call("INFO", "server")));
 * const popped = await popper.pop(["celery"], 10); // [] when nothing waits
 * ```
 */
export class Popper {
  /** The dedicated connection BRPOP blocks on. */
  readonly blocking: RedisClient;
  #client: RedisClient;
  #features: PopFeatures;
  #tail: Promise<unknown> = Promise.resolve();
  #blockingId?: Promise<unknown>;
  #inflight?: AbortSignal | "none";

  /**
   * @param client The command connection.
   * @param blocking A connection used for nothing but BRPOP.
   * @param features What the server can do (see {@linkcode popFeatures}).
   */
  constructor(client: RedisClient, blocking: RedisClient, features: PopFeatures) {
    this.#client = client;
    this.blocking = blocking;
    this.#features = features;
    const readId = () => this.#blockingId = blocking.call("CLIENT", "ID").catch(() => undefined);
    readId();
    blocking.onReady(readId); // a reconnect gets a new id
  }

  /**
   * Ends the BRPOP in flight at once, as if it timed out (`CLIENT UNBLOCK <id> TIMEOUT`,
   * Redis ≥ 5; older servers let it run out its slice). A message it already popped is
   * still recorded as usual.
   */
  async interrupt(): Promise<void> {
    const id = await this.#blockingId;
    if (typeof id !== "number") return;
    await this.#client.call("CLIENT", "UNBLOCK", id, "TIMEOUT").catch(() => {});
  }

  /**
   * Pops up to `max` waiting messages, recorded atomically (FETCH). Resolves `null` when
   * `signal` aborts first; whatever the script pops after that goes back (see `#unpop`).
   */
  pop(keys: string[], max: number, signal?: AbortSignal): Promise<Popped[] | null> {
    return this.#guard(this.#fetch(keys, max), signal);
  }

  async #fetch(keys: string[], max: number): Promise<Popped[]> {
    const flat = await this.#client.evalScript(
      BROKER_SCRIPTS.fetch,
      [UNACKED, UNACKED_INDEX, DEAD_LETTERS, ...keys],
      [max, nowSeconds(), this.#features.popCount ? "1" : "0", ...keys.map(queueOfBucket)],
    ) as (string | number)[];
    const out: Popped[] = [];
    for (let i = 0; i < flat.length; i += 3) {
      out.push({
        key: keys[Number(flat[i]) - 1]!,
        raw: String(flat[i + 1]),
        tag: String(flat[i + 2]),
      });
    }
    return out;
  }

  /**
   * Blocks up to `timeoutMs` on BRPOP, records the message (RECORD), then takes up to
   * `max - 1` more that are already waiting. One BRPOP at a time: a call waits for the one
   * before it. Resolves `[]` on timeout, `null` when `signal` aborts first.
   */
  blockingPop(
    keys: string[],
    timeoutMs: number,
    max: number,
    signal?: AbortSignal,
  ): Promise<Popped[] | null> {
    const work = this.#tail.then(async (): Promise<Popped[]> => {
      if (signal?.aborted) return [];
      const seconds = this.#features.fractionalTimeouts
        ? Math.max(0.01, timeoutMs / 1000).toFixed(3)
        : String(Math.max(1, Math.ceil(timeoutMs / 1000)));
      this.#inflight = signal ?? "none";
      const reply = await this.blocking.call("BRPOP", ...keys, seconds).finally(() => {
        this.#inflight = undefined;
      }) as [string, string] | null;
      if (!reply) return [];
      const [key, raw] = reply;
      // kombu's window: a crash right here loses this one message (it is off the list and
      // not yet in `unacked`).
      const tag = String(
        await this.#client.evalScript(
          BROKER_SCRIPTS.record,
          [UNACKED, UNACKED_INDEX, DEAD_LETTERS],
          [raw, nowSeconds(), queueOfBucket(key)],
        ),
      );
      const first: Popped = { key, raw, tag };
      return max > 1 ? [first, ...await this.#fetch(keys, max - 1)] : [first];
    });
    this.#tail = work.catch(() => {});
    return this.#guard(work, signal);
  }

  /** Races `work` against `signal`; a late result of an aborted call is un-popped. */
  async #guard(work: Promise<Popped[]>, signal?: AbortSignal): Promise<Popped[] | null> {
    if (!signal) return await work;
    if (signal.aborted) {
      work.then((late) => this.#unpop(late)).catch(() => {});
      return null;
    }
    let onAbort!: () => void;
    const aborted = new Promise<null>((resolve) => {
      onAbort = () => resolve(null);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      const winner = await Promise.race([work, aborted]);
      if (winner === null) {
        if (this.#inflight === signal) void this.interrupt();
        const undo = work.then((late) => this.#unpop(late)).catch(() => {});
        this.#tail = Promise.all([this.#tail, undo]);
      }
      return winner;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Puts popped messages back where they were, in their order, without redelivered marks
   * (they were never handed out), if they are still unacked. Dead-lettered ones stay dead.
   */
  async #unpop(popped: Popped[]): Promise<void> {
    for (const p of [...popped].reverse()) {
      if (p.tag === "") continue;
      await this.#client.evalScript(
        BROKER_SCRIPTS.restore,
        [UNACKED, UNACKED_INDEX, p.key],
        [p.tag, p.raw, "front", ""],
      );
    }
  }

  /**
   * Interrupts the BRPOP in flight and waits (at most `timeoutMs`) for it to end and for its
   * recording or undo.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#inflight) void this.interrupt();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#tail,
      new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
  }
}
