/**
 * The result backend seam: store and read Celery result records, and wait for one.
 *
 * @module
 */

import type { Broker } from "../brokers/broker.ts";
import type { ResultMeta } from "../protocol/result.ts";

/**
 * The request a result belongs to, for backends that route results by it (`rpc://`
 * publishes to `replyTo` with `correlationId`); key/value backends ignore it.
 */
export interface StoreRequest {
  /** The task message's `reply_to` property. */
  replyTo?: string | null;
  /** The task message's `correlation_id` property. @default the task id */
  correlationId?: string | null;
}

/**
 * A result store prepared as data, for a broker on the same server to apply in one atomic
 * step with the message's ack (`Delivery.ackWith`): the ack can then never land without its
 * result, and both take one round trip instead of two. Only Redis has one for now.
 */
export interface ResultWrite {
  /** The store protocol: Celery's Redis layout (`celery-task-meta-<id>`, SETEX + PUBLISH). */
  kind: "redis";
  /** The server, as `redis[s]://[user@]host:port` (never a password): writes go only there. */
  server: string;
  /** Database of the result key. */
  db: number;
  /** The result key. */
  key: string;
  /** The encoded record. */
  value: string;
  /** Seconds it lives; 0 = forever. */
  ttlSeconds: number;
}

/** Options of {@linkcode ResultBackend.waitFor}. */
export interface WaitOptions {
  /** Give up after this long with `ResultTimeoutError`. @default no limit */
  timeoutMs?: number;
  /** Stops the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** One chord header member's final state, as the worker reports it for chord accounting. */
export interface ChordPart {
  /** The chord's group id (the member's `group` header). */
  groupId: string;
  /** The member's task id. */
  taskId: string;
  /** Its position in the header (`group_index` header); `null` sorts last. */
  groupIndex: number | null;
  /** SUCCESS, FAILURE or REVOKED. */
  state: string;
  /** Its return value, or its serialized exception. */
  result: unknown;
}

/** Every header member of a chord, once the last one has reported. */
export type ChordJoin =
  /** Each member's outcome, in `group_index` order (Celery's `.j` sorted set). */
  | { kind: "parts"; parts: { taskId: string; state: string; result: unknown }[] }
  /** The header was saved as a group (nested groups): its result tuple, to join member by member. */
  | { kind: "saved"; tuple: unknown };

/**
 * Where task results live.
 *
 * The chord and group methods are optional: a backend without them cannot run chords
 * (`chord(...).applyAsync()` throws `ConfigError`) nor save groups. Those that have them use
 * Celery's layout, so chords and saved groups work across Python and celeriac.
 *
 * @example Memory backend round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBackend } from "./memory.ts";
 * const backend = new MemoryBackend();
 * await backend.store({ status: "SUCCESS", result: 5, traceback: null, children: [], date_done: null, task_id: "t1" });
 * assert.equal((await backend.waitFor("t1", { timeoutMs: 100 })).result, 5);
 * await backend.close();
 * ```
 */
export interface ResultBackend {
  /** `memory`, `redis`, … */
  readonly kind: string;
  /** The URL with any password hidden. */
  readonly displayUrl: string;
  /** Opens connections. */
  connect(): Promise<void>;
  /**
   * Stores a record and wakes waiters. A stored SUCCESS is never overwritten (Celery's rule).
   * The worker passes the task's `request` (see {@linkcode StoreRequest}).
   */
  store(meta: ResultMeta, request?: StoreRequest): Promise<void>;
  /**
   * The store of `meta` as a {@linkcode ResultWrite}, for a delivery whose broker shares this
   * backend's server to apply together with its ack (same rules as `store`: a stored SUCCESS
   * is never overwritten, waiters are woken). Optional.
   *
   * @throws {TypeError} When the record cannot be encoded (as `store` would).
   */
  resultWrite?(meta: ResultMeta): ResultWrite;
  /**
   * The queue a producer names in a task's `reply_to` so results come back to it; the app
   * calls it before each send. Only backends that carry results as messages (`rpc://`).
   */
  replyQueue?(): Promise<string>;
  /**
   * Hands the backend the app's broker, before `connect()`: for backends whose results
   * travel on the broker (`rpc://`).
   */
  useBroker?(broker: () => Promise<Broker>): void;
  /** The stored record, or `null` (PENDING). */
  get(taskId: string): Promise<ResultMeta | null>;
  /** Resolves with the record once it is in a ready state (SUCCESS, FAILURE, REVOKED). */
  waitFor(taskId: string, options?: WaitOptions): Promise<ResultMeta>;
  /** Deletes the record. */
  forget(taskId: string): Promise<void>;
  /** Closes connections; pending waits reject. */
  close(): Promise<void>;

  /**
   * Stores a chord's size before its header is sent (Celery's `set_chord_size`:
   * `SETEX celery-taskset-meta-<gid>.s` + `PUBLISH` on Redis).
   */
  setChordSize?(groupId: string, size: number): Promise<void>;
  /**
   * Records one header member's final state (Redis: `ZADD <gid>.j`, `ZCOUNT`, `GET .t`,
   * `GET .s`, `EXPIRE`s in one transaction). When it completes the chord (count = size +
   * adjustment) returns every member, else `null`. Only one caller ever gets the join.
   */
  chordPartReturn?(part: ChordPart): Promise<ChordJoin | null>;
  /** Deletes a finished chord's bookkeeping (`.j`, `.t`, `.s`) once its body was sent. */
  deleteChord?(groupId: string): Promise<void>;
  /** Stores a group's result tuple (`celery-taskset-meta-<gid>` = `{"result": tuple}`). */
  saveGroup?(groupId: string, tuple: unknown): Promise<void>;
  /** The result tuple stored by `saveGroup` (here or by Python), or `null`. */
  restoreGroup?(groupId: string): Promise<unknown | null>;
  /** Deletes a stored group. */
  forgetGroup?(groupId: string): Promise<void>;
}
