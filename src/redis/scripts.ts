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
