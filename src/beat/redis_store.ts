/**
 * The Redis beat store: entry states in a hash, and a lease so that exactly one of several
 * beats sends (high availability). Loaded only for `redis://` and `rediss://` state URLs.
 *
 * Key layout (`<prefix>` defaults to `celeriac.beat`; give each independent schedule its own):
 *
 * | key | type | what |
 * | --- | --- | --- |
 * | `<prefix>.lease` | string, with a PX expiry | token of the beat that may send; taken with `SET NX PX`, renewed and released only by its holder (compare-and-set in Lua) |
 * | `<prefix>.state` | hash | field = entry name, value = the entry's state JSON (`lastRunAt`, `totalRunCount`, `lastSentAt`) |
 *
 * Guarantee: a beat records a run (the hash field) only inside {@linkcode COMMIT_LUA}, which
 * checks the lease and the field's previous value in the same atomic step, and sends only
 * after that succeeded; so each (entry, slot) is sent at most once, whatever the number of
 * beats and however the lease moves between them.
 *
 * @module
 */

import { connectRedis, parseRedisUrl, type RedisClient } from "../brokers/redis/connection.ts";
import type { BeatStoreOptions } from "./store.ts";
import {
  type BeatStore,
  type CommitResult,
  decodeState,
  encodeState,
  type EntryState,
  type StoredState,
} from "./store.ts";
import { hostName } from "../host.ts";
import { RedisScript } from "../redis/client.ts";
import { RELEASE_IF_HELD } from "../redis/scripts.ts";

/**
 * Renews the lease if this beat holds it.
 *
 * Guarantee: never extends another beat's lease.
 *
 * | | |
 * | --- | --- |
 * | `KEYS[1]` | lease key |
 * | `ARGV[1]` | this beat's token |
 * | `ARGV[2]` | time to live, ms |
 *
 * Returns 1 when renewed, 0 when the lease is someone else's or expired.
 */
export const RENEW_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;

/**
 * Records a run (or an entry's first-sight anchor): lease check and compare-and-set of the
 * entry's state in one atomic step, before the message is sent.
 *
 * Guarantee: only the lease holder, and only from the state it last read, can move an
 * entry's state; so the same transition (the same slot) can be recorded, and then sent, once.
 *
 * | | |
 * | --- | --- |
 * | `KEYS[1]` | lease key |
 * | `KEYS[2]` | state hash |
 * | `ARGV[1]` | this beat's token |
 * | `ARGV[2]` | entry name (hash field) |
 * | `ARGV[3]` | expected current value (`""` = field absent) |
 * | `ARGV[4]` | new value |
 * | `ARGV[5]` | lease time to live, ms (the commit renews the lease) |
 *
 * Returns `{1}` stored, `{0}` not the lease holder, `{-1, current}` the state moved
 * (`current` is `""` when the field is absent).
 */
export const COMMIT_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local current = redis.call('HGET', KEYS[2], ARGV[2]) or ''
if current ~= ARGV[3] then
  return {-1, current}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1}
`;

const RENEW = new RedisScript(RENEW_LUA);
const COMMIT = new RedisScript(COMMIT_LUA);

/** The Redis keys of a store with this prefix. */
export function beatKeys(prefix = "celeriac.beat"): { lease: string; state: string } {
  return { lease: `${prefix}.lease`, state: `${prefix}.state` };
}

/**
 * A highly available beat store on Redis.
 *
 * @example Two beats on one Redis: only the lease holder commits
 * ```ts ignore
 * import { RedisBeatStore } from "./redis_store.ts";
 * const a = new RedisBeatStore("redis://127.0.0.1:6379/0");
 * const b = new RedisBeatStore("redis://127.0.0.1:6379/0");
 * await a.open(); await b.open();
 * console.log(await a.acquire(10_000), await b.acquire(10_000)); // true false
 * await a.close(); await b.close();
 * ```
 */
export class RedisBeatStore implements BeatStore {
  /** Always `redis`. */
  readonly kind = "redis";
  /** True: a lease picks the beat that sends. */
  readonly highlyAvailable = true;
  /** This store's lease token: `<host>:<pid>:<uuid>`. */
  readonly token: string;
  /** Its keys. */
  readonly keys: { lease: string; state: string };
  #target: ReturnType<typeof parseRedisUrl>;
  #client?: RedisClient;

  /**
   * A store on the Redis at `url` (`redis://[:password@]host[:port][/db]`).
   *
   * @throws {ConfigError} For a URL that is not a Redis URL.
   */
  constructor(url: string, options: BeatStoreOptions = {}) {
    this.#target = parseRedisUrl(url);
    this.keys = beatKeys(options.keyPrefix);
    this.token = `${hostName()}:${Deno.pid}:${crypto.randomUUID()}`;
  }

  /** `redis <url> key <prefix>.state`, password hidden. */
  get description(): string {
    return `redis ${this.#target.display} key ${this.keys.state}`;
  }

  /**
   * Connects.
   *
   * @throws {PermissionMissingError} Without net access to the server.
   * @throws {BrokerConnectionError} When the server cannot be reached.
   */
  async open(): Promise<void> {
    if (this.#client) return;
    // Commands fail (instead of waiting) while the server is away, so the beat loop logs
    // the error and tries again; the client keeps reconnecting in the background.
    this.#client = await connectRedis(this.#target, "beat state", { whileDown: "fail" });
  }

  #redis(): RedisClient {
    if (!this.#client) throw new TypeError("Cannot use the Redis beat store: call open() first");
    return this.#client;
  }

  /** Every entry's state (`HGETALL`). */
  async load(): Promise<Map<string, StoredState>> {
    const flat = await this.#redis().call("HGETALL", this.keys.state) as string[];
    const out = new Map<string, StoredState>();
    for (let i = 0; i < flat.length; i += 2) {
      const raw = flat[i + 1]!;
      out.set(flat[i]!, { state: decodeState(raw), raw });
    }
    return out;
  }

  /** Renews the lease if held ({@linkcode RENEW_LUA}), else tries `SET NX PX`. */
  async acquire(ttlMs: number): Promise<boolean> {
    const redis = this.#redis();
    const ttl = Math.ceil(ttlMs);
    if (Number(await redis.evalScript(RENEW, [this.keys.lease], [this.token, ttl])) === 1) {
      return true;
    }
    return (await redis.call("SET", this.keys.lease, this.token, "PX", ttl, "NX")) === "OK";
  }

  /**
   * Releases the lease if this beat holds it ({@linkcode RELEASE_IF_HELD}), on a clean stop,
   * so a follower takes over at its next poll instead of after the time to live.
   */
  async release(): Promise<void> {
    if (!this.#client) return;
    await this.#client.evalScript(RELEASE_IF_HELD, [this.keys.lease], [this.token]);
  }

  /** {@linkcode COMMIT_LUA}. */
  async commit(
    name: string,
    expected: string | null,
    next: EntryState,
    ttlMs: number,
  ): Promise<CommitResult> {
    const raw = encodeState(next);
    const reply = await this.#redis().evalScript(
      COMMIT,
      [this.keys.lease, this.keys.state],
      [this.token, name, expected ?? "", raw, Math.ceil(ttlMs)],
    ) as [number, string?];
    const code = Number(reply[0]);
    if (code === 1) return { status: "ok", stored: { state: { ...next }, raw } };
    if (code === 0) return { status: "not-leader" };
    const current = reply[1] ?? "";
    return {
      status: "conflict",
      current: current === "" ? null : { state: decodeState(current), raw: current },
    };
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    await client.quit();
  }
}
