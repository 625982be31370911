/**
 * Selective queue surgery on Redis, for remote control's incident tools (`revoke_by_name`,
 * `purge --task-name`, `move`): take the waiting messages of one task name out of a queue's
 * lists, leaving every other message where it is and in its order, or move them to another
 * queue.
 *
 * How it stays lossless while workers (Python's included) keep popping and producers keep
 * pushing: the client reads a bucket page by page from the head (`LRANGE`; pushes land at
 * the head and pops leave from the tail, so no element present for the whole scan is
 * skipped), picks the envelopes whose `headers.task` matches, then one Lua script per batch
 * rebuilds the bucket without exactly those envelope texts (elements popped meanwhile are
 * simply absent; elements pushed meanwhile are kept) and, for a move, `LPUSH`es them to the
 * target bucket oldest first. Each message is taken once even when several workers run the
 * same command at the same time (the script is atomic; a text already gone is not counted).
 *
 * The script is O(length of the bucket) per batch of 2,000 taken messages and blocks Redis
 * while it runs (a few milliseconds per 10,000 messages).
 *
 * @module
 */

import type { TakeTaskMessagesOptions } from "../broker.ts";
import type { TransportMessage } from "../../protocol/message.ts";
import { decodeRedisEnvelope } from "../../protocol/redis_envelope.ts";
import { type RedisClient, RedisScript } from "../../redis/client.ts";
import { bucketKey, PRIORITY_STEPS } from "./keys.ts";

/**
 * TAKE: removes the envelope texts ARGV[1], ARGV[3], … from list KEYS[1] (every copy),
 * keeping the other elements in order; when KEYS[2] is given, the replacement texts
 * ARGV[2], ARGV[4], … of the removed ones are `LPUSH`ed to it oldest first (so they are
 * consumed in their old order, after what already waits there). Returns the 1-based numbers
 * of the pairs that were found.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TAKE } from "./select.ts";
 * assert.match(TAKE, /LRANGE/);
 * ```
 */
export const TAKE = `
local take = {}
for i = 1, #ARGV, 2 do take[ARGV[i]] = (i + 1) / 2 end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local keep, moved, found, seen = {}, {}, {}, {}
for i = 1, #items do
  local n = take[items[i]]
  if n then
    moved[#moved + 1] = ARGV[n * 2]
    if not seen[n] then seen[n] = true; found[#found + 1] = n end
  else
    keep[#keep + 1] = items[i]
  end
end
if #found == 0 then return {} end
redis.call('DEL', KEYS[1])
for i = 1, #keep, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(keep, i, math.min(i + 999, #keep)))
end
if #KEYS > 1 then
  local oldest = {}
  for i = #moved, 1, -1 do oldest[#oldest + 1] = moved[i] end
  for i = 1, #oldest, 1000 do
    redis.call('LPUSH', KEYS[2], unpack(oldest, i, math.min(i + 999, #oldest)))
  end
end
return found`;

const PAGE = 5000;
const BATCH = 2000;

// deno-lint-ignore no-explicit-any
const RawJSON = JSON as any;

const TAKE_SCRIPT = new RedisScript(TAKE);

/** The task name of an envelope (`headers.task`), or undefined when it is not a task. */
function taskOf(raw: string): string | undefined {
  try {
    const env = JSON.parse(raw);
    const task = env?.headers?.task;
    return typeof task === "string" ? task : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The envelope with `properties.delivery_info` pointing at `queue` through the default
 * exchange (so a later restore or requeue returns it there). Everything else keeps its text:
 * numbers are written back exactly as they were read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rerouteEnvelope } from "./select.ts";
 * const raw = '{"headers": {"big": 18446744073709551617, "f": 1.0}, "properties": ' +
 *   '{"delivery_info": {"exchange": "", "routing_key": "celery"}, "delivery_tag": "x"}}';
 * assert.equal(
 *   rerouteEnvelope(raw, "slow"),
 *   '{"headers":{"big":18446744073709551617,"f":1.0},"properties":' +
 *     '{"delivery_info":{"exchange":"","routing_key":"slow"},"delivery_tag":"x"}}',
 * );
 * ```
 */
export function rerouteEnvelope(raw: string, queue: string): string {
  const env = JSON.parse(
    raw,
    (_key, value, context?: { source?: string }) =>
      typeof value === "number" && context?.source ? RawJSON.rawJSON(context.source) : value,
  );
  const props = env.properties ??= {};
  const info = props.delivery_info && typeof props.delivery_info === "object"
    ? props.delivery_info
    : (props.delivery_info = {});
  info.exchange = "";
  info.routing_key = queue;
  return JSON.stringify(env);
}

/**
 * Takes the waiting messages of `taskName` out of `queue` (see the module notes); with
 * `moveTo` they go to that queue instead. Returns them oldest first (per priority bucket,
 * buckets in serving order), as decoded transport messages.
 *
 * @example
 * ```ts ignore
 * const taken = await takeTaskMessages(client, "celery", "tasks.slow", { moveTo: "slow" });
 * ```
 */
export async function takeTaskMessages(
  client: RedisClient,
  queue: string,
  taskName: string,
  options: TakeTaskMessagesOptions = {},
): Promise<TransportMessage[]> {
  const out: TransportMessage[] = [];
  if (options.moveTo === queue) return out;
  for (const step of PRIORITY_STEPS) {
    const key = bucketKey(queue, step);
    const target = options.moveTo === undefined ? undefined : bucketKey(options.moveTo, step);
    // Head to tail = newest to oldest; a text seen twice (a page boundary shifted by pushes)
    // is taken once.
    const matched: string[] = [];
    const seen = new Set<string>();
    for (let start = 0;; start += PAGE) {
      const page = await client.call("LRANGE", key, start, start + PAGE - 1) as string[];
      for (const raw of page) {
        if (!seen.has(raw) && taskOf(raw) === taskName) {
          seen.add(raw);
          matched.push(raw);
        }
      }
      if (page.length < PAGE) break;
    }
    const oldestFirst = matched.reverse();
    for (let i = 0; i < oldestFirst.length; i += BATCH) {
      const batch = oldestFirst.slice(i, i + BATCH);
      const args: string[] = [];
      // The script LPUSHes the replacements of the found ones in reverse list order, i.e.
      // oldest first; within the batch the pairs' own order does not matter.
      for (const raw of batch) args.push(raw, target ? rerouteEnvelope(raw, options.moveTo!) : "");
      const keys = target ? [key, target] : [key];
      const found = await client.evalScript(TAKE_SCRIPT, keys, args) as number[];
      for (const n of found.map(Number).sort((a, b) => a - b)) {
        try {
          out.push(decodeRedisEnvelope(batch[n - 1]!).message);
        } catch {
          // taskOf parsed it, so it is JSON; an envelope without delivery info is still
          // taken (and moved) but cannot be returned as a message.
        }
      }
    }
  }
  return out;
}
