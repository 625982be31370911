/**
 * The Redis result backend, in Celery's layout: `celery-task-meta-<id>` written with
 * `SETEX` and announced with `PUBLISH` of the same value on a channel of the same name
 * (Python's `AsyncResult.get()` waits on that channel), a stored SUCCESS never overwritten.
 *
 * @module
 */

import type { ChordJoin, ChordPart, ResultBackend, ResultWrite, WaitOptions } from "./backend.ts";
import { RedisChords } from "./chord.ts";
import { BrokerConnectionError, ResultTimeoutError } from "../errors.ts";
import {
  decodeResultMeta,
  encodeResultMeta,
  READY_STATES,
  type ResultMeta,
} from "../protocol/result.ts";
import {
  checkParams,
  closeRedis,
  connectRedis,
  parseRedisUrl,
  type RedisClient,
  type RedisTarget,
  secondsParam,
  serverOf,
} from "../brokers/redis/connection.ts";
import { GroupCommit } from "../brokers/redis/group_commit.ts";
import { resultKey } from "../brokers/redis/keys.ts";
import { RedisScript } from "../redis/client.ts";
import { STORE_RESULT_FUNCTION } from "../redis/scripts.ts";

/**
 * STORE, one round trip for a batch: KEYS[i] result key, ARGV[1] ttl seconds ("0" = no
 * expiry), ARGV[i + 1] the record JSON for KEYS[i], each stored in order by `store_result`
 * (a stored SUCCESS is kept; else SETEX and PUBLISH) after one `MGET` of all the keys.
 * Returns how many were stored.
 */
const STORE = `${STORE_RESULT_FUNCTION}
local current = redis.call('MGET', unpack(KEYS))
local latest = {}
local stored = 0
for i = 1, #KEYS do
  stored = stored + store_result(KEYS[i], ARGV[1], ARGV[i + 1], current[i], latest)
end
return stored`;

/** Options of {@linkcode RedisBackend}. */
export interface RedisBackendOptions {
  /**
   * Seconds a result lives (Celery's `result_expires`); 0 keeps it forever. Also read from
   * the URL: `?expires=3600`. @default 86400
   */
  expires?: number;
}

const STORE_SCRIPT = new RedisScript(STORE);

interface Waiter {
  resolve(meta: ResultMeta): void;
  reject(err: unknown): void;
}

interface Channel {
  waiters: Set<Waiter>;
  subscribed: Promise<unknown>;
}

/**
 * The Redis result backend.
 *
 * @example
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { RedisBackend } from "./redis.ts";
 * const backend = new RedisBackend("redis://127.0.0.1:6379/1", { expires: 3600 });
 * await backend.connect();
 * assert.equal(await backend.get("some-task-id"), null); // PENDING
 * await backend.close();
 * ```
 */
export class RedisBackend implements ResultBackend {
  /** Always `redis`. */
  readonly kind = "redis";
  /** URL, password hidden. */
  readonly displayUrl: string;
  /** Seconds a result lives (0 = forever). */
  readonly expires: number;
  #target: RedisTarget;
  #server: string;
  #connecting?: Promise<void>;
  #client?: RedisClient;
  #subscriber?: Promise<RedisClient>;
  #channels = new Map<string, Channel>();
  #closed = false;

  /**
   * @throws {ConfigError} For a URL that is not a Redis URL or has unknown parameters.
   * @throws {RangeError} For a negative `expires`.
   */
  constructor(url: string, options: RedisBackendOptions = {}) {
    this.#target = parseRedisUrl(url);
    checkParams(this.#target, ["expires"]);
    this.displayUrl = this.#target.display;
    this.#server = serverOf(this.#target);
    const expires = options.expires ?? secondsParam(this.#target, "expires") ?? 86400;
    if (!(expires >= 0)) {
      throw new RangeError(`Cannot create Redis backend: expires must be ≥ 0, got ${expires}`);
    }
    this.expires = expires;
  }

  /**
   * Opens the command connection (the subscriber opens on the first wait).
   *
   * @throws {BrokerConnectionError} When Redis cannot be reached (no retries at startup).
   * @throws {PermissionMissingError} When Deno does not grant `--allow-net=<host>:<port>`.
   */
  async connect(): Promise<void> {
    if (this.#closed) throw new TypeError("Cannot connect: the Redis backend was closed");
    try {
      await (this.#connecting ??= connectRedis(this.#target, "result backend").then((client) => {
        this.#client = client;
      }));
    } catch (err) {
      this.#connecting = undefined;
      throw err;
    }
  }

  #c(): RedisClient {
    if (!this.#client) throw new TypeError("Cannot use Redis backend: call connect() first");
    return this.#client;
  }

  #stores = new GroupCommit<[string, string]>((batch) =>
    this.#c().evalScript(
      STORE_SCRIPT,
      batch.map(([key]) => key),
      [String(Math.ceil(this.expires)), ...batch.map(([, value]) => value)],
    )
  );

  /**
   * Stores and publishes a record (SETEX + PUBLISH in one script, one round trip; stores
   * issued together share it), unless a SUCCESS is already stored.
   */
  async store(meta: ResultMeta): Promise<void> {
    await this.#stores.add([resultKey(meta.task_id), encodeResultMeta(meta)]);
  }

  /**
   * The store of `meta` as data, for a Redis broker on this server to apply with its ack in
   * one script (`Delivery.ackWith`); the same record, key, expiry and rules as `store`.
   *
   * @throws {TypeError} When the record cannot be encoded as JSON.
   */
  resultWrite(meta: ResultMeta): ResultWrite {
    return {
      kind: "redis",
      server: this.#server,
      db: this.#target.db,
      key: resultKey(meta.task_id),
      value: encodeResultMeta(meta),
      ttlSeconds: Math.ceil(this.expires),
    };
  }

  /** The stored record, or `null` (PENDING). */
  async get(taskId: string): Promise<ResultMeta | null> {
    const text = await this.#c().call("GET", resultKey(taskId)) as string | null;
    return text === null ? null : decodeResultMeta(text);
  }

  #deliver(channel: string, text: string): void {
    const entry = this.#channels.get(channel);
    if (!entry) return;
    let meta: ResultMeta;
    try {
      meta = decodeResultMeta(text);
    } catch {
      return;
    }
    if (READY_STATES.has(meta.status)) { for (const w of [...entry.waiters]) w.resolve(meta); }
  }

  #subscriberClient(): Promise<RedisClient> {
    return this.#subscriber ??= connectRedis(this.#target, "result subscriber").then((sub) => {
      sub.listen({ onMessage: (channel, text) => this.#deliver(channel, text) });
      // After a reconnect (subscriptions renewed), results published while the connection
      // was down were missed: read every awaited key once.
      sub.onReady(() => this.#recover(sub).catch(() => {}));
      return sub;
    }, (err) => {
      this.#subscriber = undefined;
      throw err;
    });
  }

  async #recover(sub: RedisClient): Promise<void> {
    const channels = [...this.#channels.keys()];
    if (!channels.length || this.#closed) return;
    await sub.subscribe(...channels);
    const texts = await this.#c().call("MGET", ...channels) as (string | null)[];
    channels.forEach((channel, i) => {
      const text = texts[i];
      if (text !== null && text !== undefined) this.#deliver(channel, text);
    });
  }

  /**
   * Waits for a ready record (SUCCESS, FAILURE, REVOKED): SUBSCRIBE first, then GET, then
   * the first ready-state message, so a result written between the two is never missed.
   * One subscriber connection serves every wait; a channel is unsubscribed when its last
   * waiter leaves.
   *
   * @throws {ResultTimeoutError} After `timeoutMs`.
   * @throws {BrokerConnectionError} When the backend is closed during the wait.
   */
  async waitFor(taskId: string, options: WaitOptions = {}): Promise<ResultMeta> {
    if (this.#closed) {
      throw new BrokerConnectionError(
        `Cannot wait for task "${taskId}": the result backend was closed`,
      );
    }
    if (options.signal?.aborted) throw options.signal.reason;
    const key = resultKey(taskId);
    let waiter!: Waiter;
    const done = new Promise<ResultMeta>((resolve, reject) => waiter = { resolve, reject });
    let entry = this.#channels.get(key);
    if (!entry) {
      const subscribed = this.#subscriberClient().then((sub) => sub.subscribe(key));
      this.#channels.set(key, entry = { waiters: new Set(), subscribed });
    }
    entry.waiters.add(waiter);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => waiter.reject(options.signal!.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(
        () => waiter.reject(new ResultTimeoutError(taskId, options.timeoutMs!)),
        options.timeoutMs,
      );
    }
    try {
      await Promise.race([entry.subscribed, done]);
      const current = await Promise.race([this.get(taskId), done]);
      if (current && READY_STATES.has(current.status)) return current;
      return await done;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      entry.waiters.delete(waiter);
      if (entry.waiters.size === 0 && this.#channels.get(key) === entry) {
        this.#channels.delete(key);
        if (!this.#closed) {
          const sub = await this.#subscriber?.catch(() => undefined);
          await sub?.unsubscribe(key).catch(() => {});
        }
      }
    }
  }

  /** Deletes the record. */
  async forget(taskId: string): Promise<void> {
    await this.#c().call("DEL", resultKey(taskId));
  }

  #chordOps?: RedisChords;
  #chords(): RedisChords {
    return this.#chordOps ??= new RedisChords(() => this.#c(), this.expires);
  }

  /** Chord size: `SETEX celery-taskset-meta-<gid>.s` + `PUBLISH` (see `chord.ts`). */
  setChordSize(groupId: string, size: number): Promise<void> {
    return this.#chords().setChordSize(groupId, size);
  }

  /** Chord accounting of one header member, with Celery's commands (see `chord.ts`). */
  chordPartReturn(part: ChordPart): Promise<ChordJoin | null> {
    return this.#chords().chordPartReturn(part);
  }

  /** `DEL` of a finished chord's `.j`, `.t`, `.s`. */
  deleteChord(groupId: string): Promise<void> {
    return this.#chords().deleteChord(groupId);
  }

  /** `GroupResult.save()`: `celery-taskset-meta-<gid>` = `{"result": tuple}`. */
  saveGroup(groupId: string, tuple: unknown): Promise<void> {
    return this.#chords().saveGroup(groupId, tuple);
  }

  /** `GroupResult.restore()`: the saved tuple, or `null`. */
  restoreGroup(groupId: string): Promise<unknown | null> {
    return this.#chords().restoreGroup(groupId);
  }

  /** Deletes a saved group. */
  forgetGroup(groupId: string): Promise<void> {
    return this.#chords().forgetGroup(groupId);
  }

  /** Closes both connections; pending waits reject with `BrokerConnectionError`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [key, entry] of this.#channels) {
      const err = new BrokerConnectionError(
        `Cannot wait for "${key}": the result backend was closed`,
      );
      for (const w of entry.waiters) w.reject(err);
    }
    await this.#connecting?.catch(() => {});
    const sub = await this.#subscriber?.catch(() => undefined);
    await Promise.all([closeRedis(sub), closeRedis(this.#client)]);
  }
}
