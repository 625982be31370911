/**
 * Every Redis key and pub/sub channel celeriac touches, in one place. All but
 * {@linkcode DEAD_LETTERS} are kombu 5.2's layout (global_keyprefix `""`), so Python Celery
 * workers and clients on the same Redis database share them.
 *
 * | key | type | role |
 * |---|---|---|
 * | `<q>`, `<q>SEP3`, `<q>SEP6`, `<q>SEP9` | list | a queue's priority buckets |
 * | `_kombu.binding.<exchange>` | set | bindings `routing_key SEP pattern SEP queue` |
 * | `unacked` | hash | tag ⇒ `[envelope, exchange, routing_key]` of unsettled messages |
 * | `unacked_index` | zset | tag ⇒ delivery time, drives the visibility restore |
 * | `unacked_mutex` | string | lock held while restoring |
 * | `celeriac.dead` | list | celeriac's dead letters (JSON `{reason, queue, raw, at}`) |
 * | `/<db>.<exchange>[/<rk>]` | channel | fanout (pidbox, events) |
 * | `celery-task-meta-<id>` | string + channel | result record (backend database) |
 *
 * @module
 */

/**
 * kombu's separator inside binding members and priority bucket names (`sep` transport
 * option, `"\x06\x16"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SEP } from "./keys.ts";
 * assert.equal(SEP.length, 2);
 * ```
 */
export const SEP = "\x06\x16";

/**
 * kombu's priority steps: a message of priority p (clamped to 0..9) lives in the bucket of
 * the largest step ≤ p; buckets are served 0 first (lower number first on Redis).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PRIORITY_STEPS } from "./keys.ts";
 * assert.deepEqual([...PRIORITY_STEPS], [0, 3, 6, 9]);
 * ```
 */
export const PRIORITY_STEPS = [0, 3, 6, 9] as const;

/**
 * Hash `unacked`: delivery tag ⇒ JSON `[envelope, exchange, routing_key]` of every fetched,
 * unsettled message, written in the same step as the pop (kombu's ack emulation). Python
 * workers restore these entries too, so the format must stay kombu's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UNACKED } from "./keys.ts";
 * assert.equal(UNACKED, "unacked");
 * ```
 */
export const UNACKED = "unacked";

/**
 * Sorted set `unacked_index`: delivery tag scored by delivery time (unix seconds; celeriac
 * writes whole seconds, see {@linkcode unackedScore}). Entries older than the visibility
 * timeout are restored by any consumer, Python's included.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UNACKED_INDEX } from "./keys.ts";
 * assert.equal(UNACKED_INDEX, "unacked_index");
 * ```
 */
export const UNACKED_INDEX = "unacked_index";

/**
 * The `unacked_index` score celeriac writes for a delivery (or a refresh) at `nowMs`: unix
 * seconds rounded up to a whole number. kombu writes `time()`; a whole number is as valid a
 * score, and Redis keeps it as an integer in a small index (a listpack) instead of text it
 * parses again on every insert, which makes each FETCH's `ZADD` about 5× cheaper. Rounding
 * up, a message is never restored before its visibility timeout, and at most 1 s after.
 * The FETCH and RECORD scripts apply the same rule (`index_score`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unackedScore } from "./keys.ts";
 * assert.equal(unackedScore(1_700_000_000_001), 1_700_000_001);
 * assert.equal(unackedScore(1_700_000_000_000), 1_700_000_000);
 * ```
 */
export function unackedScore(nowMs: number = Date.now()): number {
  return Math.ceil(nowMs / 1000);
}

/**
 * String `unacked_mutex`: the lock a visibility restore holds (`SET NX PX 300000`, a random
 * token, released by compare-and-delete), shared with Python workers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UNACKED_MUTEX } from "./keys.ts";
 * assert.equal(UNACKED_MUTEX, "unacked_mutex");
 * ```
 */
export const UNACKED_MUTEX = "unacked_mutex";

/**
 * List `celeriac.dead`: celeriac's dead-letter store (kombu has none). Newest first (LPUSH);
 * each element is JSON `{reason, queue, raw, at}`: `raw` is the envelope exactly as it sat in
 * the queue, `at` unix milliseconds. Python Celery never reads it. Undecodable envelopes
 * land here from the fetch script itself, so they are never lost.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEAD_LETTERS } from "./keys.ts";
 * assert.equal(DEAD_LETTERS, "celeriac.dead");
 * ```
 */
export const DEAD_LETTERS = "celeriac.dead";

/**
 * The list holding a queue's messages of one priority: `<q>` for step 0, `<q>SEP<step>` else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bucketKey } from "./keys.ts";
 * assert.equal(bucketKey("celery", 5), "celery\x06\x163");
 * assert.equal(bucketKey("celery", 0), "celery");
 * assert.equal(bucketKey("celery", 42), "celery\x06\x169");
 * ```
 */
export function bucketKey(queue: string, priority: number): string {
  const p = Number.isFinite(priority) ? Math.min(9, Math.max(0, Math.trunc(priority))) : 0;
  let step = 0;
  for (const s of PRIORITY_STEPS) if (s <= p) step = s;
  return step === 0 ? queue : `${queue}${SEP}${step}`;
}

/**
 * The four bucket lists of a queue, in the order they are served (0 first).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bucketKeys } from "./keys.ts";
 * assert.deepEqual(bucketKeys("q"), ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]);
 * ```
 */
export function bucketKeys(queue: string): string[] {
  return PRIORITY_STEPS.map((s) => bucketKey(queue, s));
}

/**
 * The queue name of a bucket list key (cut at the last SEP, as kombu does).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { queueOfBucket } from "./keys.ts";
 * assert.equal(queueOfBucket("celery\x06\x166"), "celery");
 * assert.equal(queueOfBucket("celery"), "celery");
 * ```
 */
export function queueOfBucket(key: string): string {
  const i = key.lastIndexOf(SEP);
  return i < 0 ? key : key.slice(0, i);
}

/**
 * The set of bindings of an exchange: `_kombu.binding.<exchange>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bindingKey } from "./keys.ts";
 * assert.equal(bindingKey("celery"), "_kombu.binding.celery");
 * ```
 */
export function bindingKey(exchange: string): string {
  return `_kombu.binding.${exchange}`;
}

/**
 * A binding set member: `routing_key SEP pattern SEP queue` (pattern `""` for direct).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bindingMember } from "./keys.ts";
 * assert.equal(bindingMember("celery", "celery"), "celery\x06\x16\x06\x16celery");
 * ```
 */
export function bindingMember(routingKey: string, queue: string, pattern = ""): string {
  return `${routingKey}${SEP}${pattern}${SEP}${queue}`;
}

/**
 * Parses a binding set member (the inverse of {@linkcode bindingMember}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseBindingMember } from "./keys.ts";
 * assert.deepEqual(parseBindingMember("rk\x06\x16\x06\x16q"), { routingKey: "rk", pattern: "", queue: "q" });
 * ```
 */
export function parseBindingMember(
  member: string,
): { routingKey: string; pattern: string; queue: string } {
  const [routingKey = "", pattern = "", ...rest] = member.split(SEP);
  return { routingKey, pattern, queue: rest.join(SEP) };
}

/**
 * The pub/sub channel of a fanout publish: `/<db>.<exchange>` plus `/<routing key>` when the
 * key is not empty (kombu's `fanout_prefix` and `fanout_patterns`; `db` is the broker's).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fanoutChannel } from "./keys.ts";
 * assert.equal(fanoutChannel(0, "celeryev", "task.multi"), "/0.celeryev/task.multi");
 * assert.equal(fanoutChannel(0, "celery.pidbox", ""), "/0.celery.pidbox");
 * ```
 */
export function fanoutChannel(db: number, exchange: string, routingKey: string): string {
  return `/${db}.${exchange}${routingKey ? `/${routingKey}` : ""}`;
}

/**
 * The `PSUBSCRIBE` pattern of a fanout binding: `#` in the binding key becomes the Redis
 * glob `*` (which spans dots; filter with AMQP rules afterwards).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fanoutPattern } from "./keys.ts";
 * assert.equal(fanoutPattern(0, "celeryev", "task.#"), "/0.celeryev/task.*");
 * assert.equal(fanoutPattern(0, "celery.pidbox", ""), "/0.celery.pidbox");
 * ```
 */
export function fanoutPattern(db: number, exchange: string, bindingKey: string): string {
  return `/${db}.${exchange}${bindingKey === "" ? "" : `/${bindingKey.replaceAll("#", "*")}`}`;
}

/**
 * A task's result record key, also the pub/sub channel its writes are announced on
 * (in the result backend's database).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resultKey } from "./keys.ts";
 * assert.equal(resultKey("abc"), "celery-task-meta-abc");
 * ```
 */
export function resultKey(taskId: string): string {
  return `celery-task-meta-${taskId}`;
}
