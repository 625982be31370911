/**
 * Lua scripts of the Redis broker. Each runs atomically on the server, so a message is at
 * every instant either in a queue list, in `unacked`, or in the dead-letter list.
 * `unacked.ts` wraps them as `BROKER_SCRIPTS` (with the shared `RELEASE_IF_HELD` of
 * `src/redis/scripts.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEAD_LETTER, FETCH, PURGE, RECORD, RESTORE, SETTLE } from "./scripts.ts";
 * for (const lua of [FETCH, RECORD, RESTORE, DEAD_LETTER, PURGE, SETTLE]) {
 *   assert.equal(typeof lua, "string");
 * }
 * assert.match(FETCH, /RPOP/);
 * ```
 *
 * @module
 */

import { STORE_RESULT_FUNCTION } from "../../redis/scripts.ts";

/**
 * Lua body shared by FETCH and RECORD: records one popped envelope as unacked, kombu's way
 * (`ZADD unacked_index <score> <tag>`, `HSET unacked <tag> [envelope, exchange, routing_key]`;
 * the envelope text is embedded as is, byte for byte), or, when it has no
 * `properties.delivery_tag` and `properties.delivery_info`, LPUSHes it to the dead-letter
 * list. Returns the tag, or "" for a dead-lettered message.
 *
 * The three fields are read without decoding the envelope when that is safe (`fast`, about
 * 3 µs of the server's single thread per message instead of about 5.5 µs for
 * `cjson.decode` plus its garbage). `fast` gives up (returns nil), and `cjson.decode`
 * decides, unless all of this holds:
 *
 * - the text starts with `{`;
 * - no `\u005f`…`\u007f`-style escape anywhere, so every key that could decode to
 *   `delivery_tag`, `delivery_info`, `exchange` or `routing_key` is spelled literally;
 * - `"delivery_tag"` and `"delivery_info"` each occur exactly once, right after `{`, `,` or
 *   whitespace (so the quote is not escaped and the string is a key), followed by `:`
 *   (`key_end` looks for the rare `_tag"`/`_info"`: `memchr` for `"` would stop every few
 *   bytes);
 * - the tag is a non-empty string without `"`, `\` or control characters, and the text
 *   ends right after it with `}}`: kombu and celeriac both write `properties` last in the
 *   envelope and `delivery_tag` last in `properties` (a text cut short fails here);
 * - `delivery_info` is a flat object: kombu's `{"exchange": …, "routing_key": …}` is read
 *   with one pattern, anything else member by member (string values without `"`, `\` or
 *   control characters, or `true`/`false`/`null`/integers); its `exchange` and
 *   `routing_key` (last one wins, as in cjson) are such strings.
 *
 * The score is the delivery time rounded up to whole seconds (`index_score`, the same rule
 * as `unackedScore` in `keys.ts`). A small `unacked_index` is a listpack, which keeps an
 * integer score as an integer but a fractional one as text that every insert parses again
 * (`strtod`) for each member it walks past: a `ZADD` of 25 tags into a 50-member index
 * takes about 190 µs with `time()`-style scores and 39 µs with whole ones. Rounding up
 * keeps the visibility rule safe: a message is never restored before its timeout, at
 * most 1 s after (kombu compares `time() - visibility_timeout` to the score either way).
 *
 * JSON whitespace is allowed wherever JSON allows it. On valid JSON, `fast` then reads exactly
 * what cjson reads, with one exception: a text whose only `delivery_tag`/`delivery_info` keys
 * sit outside `properties` (cjson: dead letter; fast: recorded). The worker cannot decode
 * such a message either and dead-letters it by its tag, so it is never lost; likewise for a
 * non-JSON text that passes these checks (garbage inside an otherwise well-formed
 * envelope). Fast-path values need no escaping, so `fast_entry` writes them between plain
 * quotes, as Python's `json.dumps` does (cjson.encode would also escape `/`).
 *
 * Exported for tests, which call `fast` and `record` directly.
 */
export const RECORD_FUNCTIONS = String.raw`
local function key_end(raw, lead, tail)
  local found
  local i = string.find(raw, tail, 1, true)
  while i do
    local s = i - #lead
    if s > 1 and string.sub(raw, s, i - 1) == lead then
      if found then return nil end
      local b = string.byte(raw, s - 1)
      if b ~= 123 and b ~= 44 and b ~= 32 and b ~= 10 and b ~= 13 and b ~= 9 then return nil end
      found = i + #tail
    end
    i = string.find(raw, tail, i + #tail, true)
  end
  return found
end
local function info_members(raw, p)
  local ex, rk
  while true do
    local _, e, k = string.find(raw, '^[ \t\r\n]*"([^"\\%c]*)"[ \t\r\n]*:[ \t\r\n]*', p)
    if not e then return nil end
    local _, e2, v = string.find(raw, '^"([^"\\%c]*)"', e + 1)
    if not e2 then
      _, e2, v = string.find(raw, '^(%-?%w+)', e + 1)
      if not e2 or not (v == 'true' or v == 'false' or v == 'null' or string.find(v, '^%-?%d+$')) then
        return nil
      end
      v = false
    end
    if k == 'exchange' then ex = v elseif k == 'routing_key' then rk = v end
    local _, e3, sep = string.find(raw, '^[ \t\r\n]*([,}])', e2 + 1)
    if not e3 then return nil end
    if sep == '}' then return ex, rk end
    p = e3 + 1
  end
end
local function fast(raw)
  if string.byte(raw, 1) ~= 123 and not string.find(raw, '^[ \t\r\n]+{') then return nil end
  local u = string.find(raw, '\\u00', 1, true)
  while u do
    local c = string.byte(raw, u + 4)
    if c and c >= 53 and c <= 55 then return nil end
    u = string.find(raw, '\\u00', u + 4, true)
  end
  local p = key_end(raw, '"delivery', '_tag"')
  if not p then return nil end
  local _, _, tag = string.find(raw, '^[ \t\r\n]*:[ \t\r\n]*"([^"\\%c]+)"[ \t\r\n]*}[ \t\r\n]*}[ \t\r\n]*$', p)
  if not tag then return nil end
  p = key_end(raw, '"delivery', '_info"')
  if not p then return nil end
  local _, e, ex, rk = string.find(raw, '^[ \t\r\n]*:[ \t\r\n]*{[ \t\r\n]*"exchange"[ \t\r\n]*:[ \t\r\n]*"([^"\\%c]*)"[ \t\r\n]*,[ \t\r\n]*"routing_key"[ \t\r\n]*:[ \t\r\n]*"([^"\\%c]*)"[ \t\r\n]*}', p)
  if not e then
    local _, c = string.find(raw, '^[ \t\r\n]*:[ \t\r\n]*{', p)
    if not c then return nil end
    ex, rk = info_members(raw, c + 1)
    if not ex or not rk then return nil end
  end
  return tag, ex, rk
end
local function fast_entry(raw, ex, rk)
  return '[' .. raw .. ', "' .. ex .. '", "' .. rk .. '"]'
end
local function index_score(now)
  return string.format('%d', math.ceil(tonumber(now)))
end
local function record(raw, queue, now)
  local tag, ex, rk = fast(raw)
  local entry
  if tag then
    entry = fast_entry(raw, ex, rk)
  else
    local ok, env = pcall(cjson.decode, raw)
    if ok and type(env) == 'table' and type(env.properties) == 'table' then
      local t = env.properties.delivery_tag
      local info = env.properties.delivery_info
      if type(t) == 'string' and t ~= '' and type(info) == 'table'
        and type(info.exchange) == 'string' and type(info.routing_key) == 'string' then
        tag = t
        entry = '[' .. raw .. ', ' .. cjson.encode(info.exchange) .. ', ' .. cjson.encode(info.routing_key) .. ']'
      end
    end
  end
  if tag then
    redis.call('ZADD', KEYS[2], index_score(now), tag)
    redis.call('HSET', KEYS[1], tag, entry)
    return tag
  end
  local reason = 'Cannot decode Redis envelope: it is not JSON with properties.delivery_tag and properties.delivery_info'
  redis.call('LPUSH', KEYS[3], cjson.encode({reason = reason, queue = queue, raw = raw, at = math.floor(tonumber(now) * 1000)}))
  return ''
end
`;

/**
 * FETCH: pops up to ARGV[1] messages from the bucket lists KEYS[4..] (in serving order:
 * priority outer, queues inner) and records each (see RECORD_FUNCTIONS) in the same script,
 * so no popped message is ever unrecorded.
 *
 * With ARGV[3] = "1" (Redis ≥ 6.2) a bucket's messages come with one `RPOP key count`;
 * otherwise with one `RPOP` each. The same messages either way, in the same order: one call
 * instead of 25 takes about 25 µs off a FETCH of 25 (of about 200), and the worker waits for
 * every FETCH's reply.
 *
 * Messages `fast` reads are recorded together, one `ZADD` and one `HSET` per up to 500
 * messages (before any message that needs `record`, so writes keep their order): fewer
 * `redis.call`s, and a new `unacked_index` with more than 128 members is created as a skiplist
 * at once instead of growing a listpack by O(n) inserts (5–7 µs each). Once a script has
 * written, Redis runs it to the end even above `maxmemory`, so batching loses nothing.
 *
 * KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] dead letters, KEYS[4..] bucket lists.
 * ARGV[1] max, ARGV[2] now (unix seconds), ARGV[3] "1" to pop with a count, ARGV[4..] queue
 * name of each bucket. Returns a flat list: bucket index (1-based), raw envelope, tag
 * ("" = dead-lettered).
 */
export const FETCH = `${RECORD_FUNCTIONS}
local max = tonumber(ARGV[1])
local now = ARGV[2]
local score = index_score(now)
local out = {}
local n = 0
local z, h = {}, {}
local function flush()
  if #z > 0 then
    redis.call('ZADD', KEYS[2], unpack(z))
    redis.call('HSET', KEYS[1], unpack(h))
    z, h = {}, {}
  end
end
local function take(raw, i)
  local tag, ex, rk = fast(raw)
  if tag then
    z[#z + 1] = score
    z[#z + 1] = tag
    h[#h + 1] = tag
    h[#h + 1] = fast_entry(raw, ex, rk)
    if #z >= 1000 then flush() end -- unpack stays far below Lua's 8000-slot stack
  else
    flush()
    tag = record(raw, ARGV[i], now)
  end
  out[#out + 1] = i - 3
  out[#out + 1] = raw
  out[#out + 1] = tag
  n = n + 1
end
for i = 4, #KEYS do
  if ARGV[3] == '1' then
    local popped = redis.call('RPOP', KEYS[i], max - n)
    if popped then
      for k = 1, #popped do take(popped[k], i) end
    end
  else
    while n < max do
      local raw = redis.call('RPOP', KEYS[i])
      if not raw then break end
      take(raw, i)
    end
  end
  if n >= max then break end
end
flush()
return out`;

/**
 * RECORD: records one envelope just popped by BRPOP (same rules as FETCH).
 * KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] dead letters.
 * ARGV[1] raw, ARGV[2] now, ARGV[3] queue. Returns the tag or "".
 */
export const RECORD = `${RECORD_FUNCTIONS}
return record(ARGV[1], ARGV[3], ARGV[2])`;

/**
 * RESTORE: gives one unacked message back to its queue(s), only if its tag is still in
 * `unacked` (nobody settled or restored it meanwhile) and, when ARGV[4] is not "", only if
 * its `unacked_index` score is still at or below that ceiling (nobody touched it since the
 * visibility restore picked it). The payload was computed by the client.
 *
 * KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3..] target lists.
 * ARGV[1] tag, ARGV[2] payload, ARGV[3] "front" (RPUSH, consumed next) or "back" (LPUSH),
 * ARGV[4] score ceiling or "". Returns 1 when restored, 0 otherwise.
 */
export const RESTORE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if ARGV[4] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if score and tonumber(score) > tonumber(ARGV[4]) then return 0 end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do
  if ARGV[3] == 'front' then redis.call('RPUSH', KEYS[i], ARGV[2]) else redis.call('LPUSH', KEYS[i], ARGV[2]) end
end
return 1`;

/**
 * DEAD_LETTER: moves one unacked message to the dead-letter list, only if its tag is still
 * in `unacked` (a message restored meanwhile lives on elsewhere and is not duplicated).
 * KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3] dead letters. ARGV[1] tag, ARGV[2] entry
 * JSON. Returns 1 when moved, 0 otherwise.
 */
export const DEAD_LETTER = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[2])
return 1`;

/** PURGE: counts and deletes the bucket lists KEYS[1..] at once. Returns the count. */
export const PURGE = `
local n = 0
for i = 1, #KEYS do n = n + redis.call('LLEN', KEYS[i]) end
redis.call('DEL', unpack(KEYS))
return n`;

/**
 * SETTLE: stores results, then acks messages, in one atomic step (the acks come after every
 * store of the script, so a message is never acked without its result; a store that fails
 * aborts the script before any ack). Each result goes through `store_result` (a stored
 * SUCCESS is kept) in its own db, `SELECT`ed for the script only (Redis ≥ 2.8.12), so a
 * backend on another db of the same server works; consecutive results of one db are read
 * with one `MGET` first. Acks are kombu's: `ZREM unacked_index` and `HDEL unacked` of the
 * tags.
 *
 * KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3..] result keys.
 * ARGV[1] the broker's db, ARGV[2] number of tags n, ARGV[3..n+2] tags, then for each result
 * key its db, ttl seconds ("0" = no expiry) and record JSON. Returns the number of tags.
 */
export const SETTLE = `${STORE_RESULT_FUNCTION}
local n = tonumber(ARGV[2])
local db = ARGV[1]
local selected = db
local a = n + 3
local i = 3
while i <= #KEYS do
  if ARGV[a] ~= selected then
    selected = ARGV[a]
    redis.call('SELECT', selected)
  end
  local last = i
  while last < #KEYS and ARGV[a + 3 * (last - i + 1)] == selected do last = last + 1 end
  local current = redis.call('MGET', unpack(KEYS, i, last))
  local latest = {}
  for k = i, last do
    store_result(KEYS[k], ARGV[a + 1], ARGV[a + 2], current[k - i + 1], latest)
    a = a + 3
  end
  i = last + 1
end
if selected ~= db then redis.call('SELECT', db) end
if n > 0 then
  redis.call('ZREM', KEYS[2], unpack(ARGV, 3, n + 2))
  redis.call('HDEL', KEYS[1], unpack(ARGV, 3, n + 2))
end
return n`;
