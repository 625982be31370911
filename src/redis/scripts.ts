/**
 * Lua scripts that more than one Redis user of celeriac needs.
 *
 * @module
 */

import { RedisScript } from "./client.ts";

/**
 * Compare-and-delete: deletes `KEYS[1]` only while it still holds the token `ARGV[1]`, so a
 * lock or lease is only ever released by its holder (the broker's `unacked_mutex`, beat's
 * lease). Returns 1 when it deleted, 0 otherwise.
 *
 * @example
 * ```ts ignore
 * await client.evalScript(RELEASE_IF_HELD, ["unacked_mutex"], [token]);
 * ```
 */
export const RELEASE_IF_HELD = new RedisScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`);

/**
 * Lua function `store_result(key, ttl, value, current, latest)` behind every result store on
 * Redis (the backend's STORE, the broker's SETTLE): skips when the stored record's status is
 * SUCCESS (Celery's rule: a success is never overwritten), else `SETEX` (or `SET` when ttl
 * is "0") and `PUBLISH` of the same value on the channel named like the key, which is what
 * Python's `AsyncResult.get()` waits on. Returns 1 when it stored, 0 when it skipped.
 *
 * The caller reads the keys of a batch with one `MGET` first (one call instead of a `GET`
 * per key; a key that holds another type reads as nil) and passes each key's value as
 * `current`, and one `latest` table per `MGET`, in which `store_result` notes what it
 * stored: a key stored twice in one batch is checked against its first store.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STORE_RESULT_FUNCTION } from "./scripts.ts";
 * assert.match(STORE_RESULT_FUNCTION, /local function store_result/);
 * ```
 */
export const STORE_RESULT_FUNCTION = `
local function store_result(key, ttl, value, current, latest)
  current = latest[key] or current
  if current then
    local ok, meta = pcall(cjson.decode, current)
    if ok and type(meta) == 'table' and meta.status == 'SUCCESS' then return 0 end
  end
  if ttl == '0' then
    redis.call('SET', key, value)
  else
    redis.call('SETEX', key, ttl, value)
  end
  redis.call('PUBLISH', key, value)
  latest[key] = value
  return 1
end
`;
