/**
 * kombu's ack emulation on Redis, the server side: the broker's Lua scripts on a client,
 * restoring one `unacked` entry (redelivered flags, target queues from exchange and routing
 * key), and the visibility restore that gives back any process's old entries under
 * `unacked_mutex`.
 *
 * @module
 */

import type { DeadLetter } from "../broker.ts";
import { DecodeError } from "../../errors.ts";
import { parseJsonFast } from "../../protocol/json.ts";
import { markRedelivered } from "../../protocol/redis_envelope.ts";
import { type RedisClient, RedisScript } from "../../redis/client.ts";
import {
  bucketKey,
  DEAD_LETTERS,
  UNACKED,
  UNACKED_INDEX,
  UNACKED_MUTEX,
  unackedScore,
} from "./keys.ts";
import { RELEASE_IF_HELD } from "../../redis/scripts.ts";
import { DEAD_LETTER, FETCH, PURGE, RECORD, RESTORE, SETTLE } from "./scripts.ts";

/**
 * The broker's Lua scripts (see `scripts.ts`), sent by `EVALSHA` (falling back to `EVAL`
 * after a server restart emptied the script cache).
 *
 * @example
 * ```ts ignore
 * await client.evalScript(BROKER_SCRIPTS.purge, keys, []);
 * ```
 */
export const BROKER_SCRIPTS = {
  /** Pops and records up to N messages. */
  fetch: new RedisScript(FETCH),
  /** Records one message popped by BRPOP. */
  record: new RedisScript(RECORD),
  /** Restores one unacked message. */
  restore: new RedisScript(RESTORE),
  /** Moves one unacked message to the dead letters. */
  deadLetter: new RedisScript(DEAD_LETTER),
  /** Deletes a queue's buckets. */
  purge: new RedisScript(PURGE),
  /** Stores results, then acks. */
  settle: new RedisScript(SETTLE),
  /** Compare-and-delete of the restore mutex. */
  release: RELEASE_IF_HELD,
} as const;

/** Finds the queues an (exchange, routing key) pair delivers to. */
export type Lookup = (exchange: string, routingKey: string) => Promise<string[]>;

/** One `unacked` entry, read. */
export interface UnackedEntry {
  /** The envelope text to restore (redelivered flags not set yet). */
  envelope: string;
  /** Exchange it was published to. */
  exchange: string;
  /** Routing key it was published with. */
  routingKey: string;
  /** Its priority (picks the bucket of a requeue to the back). */
  priority: number;
}

function priorityOf(env: Record<string, unknown>): number {
  const props = env.properties as Record<string, unknown> | undefined;
  return typeof props?.priority === "number" ? props.priority : 0;
}

/**
 * Reads an `unacked` hash value, `[envelope, exchange, routing_key]` (as kombu writes it).
 *
 * @throws {DecodeError} When it is not that shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseUnackedEntry } from "./unacked.ts";
 * const e = parseUnackedEntry('[{"headers": {}, "properties": {"priority": 3}}, "", "celery"]');
 * assert.deepEqual([e.exchange, e.routingKey, e.priority], ["", "celery", 3]);
 * ```
 */
export function parseUnackedEntry(text: string): UnackedEntry {
  let value: unknown;
  try {
    value = parseJsonFast(text);
  } catch (cause) {
    throw new DecodeError("Cannot parse unacked entry as JSON", text, { cause });
  }
  if (
    !Array.isArray(value) || typeof value[0] !== "object" || value[0] === null ||
    typeof value[1] !== "string" || typeof value[2] !== "string"
  ) {
    throw new DecodeError("Cannot read unacked entry: not [envelope, exchange, routing_key]", text);
  }
  const env = value[0] as Record<string, unknown>;
  return {
    envelope: JSON.stringify(env),
    exchange: value[1],
    routingKey: value[2],
    priority: priorityOf(env),
  };
}

/**
 * Reads the entry a delivery's own envelope text stands for (what the fetch script wrote to
 * `unacked`), without a round trip; `null` when the text is not readable here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { entryOfEnvelope } from "./unacked.ts";
 * const raw = '{"headers": {}, "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}}}';
 * assert.equal(entryOfEnvelope(raw)?.routingKey, "q");
 * assert.equal(entryOfEnvelope("not json"), null);
 * ```
 */
export function entryOfEnvelope(raw: string): UnackedEntry | null {
  try {
    const env = parseJsonFast(raw) as Record<string, unknown>;
    const info = (env.properties as Record<string, unknown>)?.delivery_info as
      | Record<string, unknown>
      | undefined;
    if (typeof info?.exchange !== "string" || typeof info.routing_key !== "string") return null;
    return {
      envelope: raw,
      exchange: info.exchange,
      routingKey: info.routing_key,
      priority: priorityOf(env),
    };
  } catch {
    return null;
  }
}

/**
 * Moves an unacked message to the dead-letter list, only while it is still unacked; returns
 * whether it moved.
 *
 * @example
 * ```ts ignore
 * await deadLetterTag(client, tag, { reason: "poison", queue: "celery", raw, at: Date.now() });
 * ```
 */
export async function deadLetterTag(
  client: RedisClient,
  tag: string,
  entry: DeadLetter,
): Promise<boolean> {
  const moved = await client.evalScript(
    BROKER_SCRIPTS.deadLetter,
    [UNACKED, UNACKED_INDEX, DEAD_LETTERS],
    [tag, JSON.stringify(entry)],
  );
  return moved === 1;
}

/**
 * Restores one unacked message as kombu does: `headers.redelivered` and
 * `properties.delivery_info.redelivered` set, tag kept, queues from (exchange, routing key).
 * `"front"` RPUSHes to the base list `<q>` (kombu's restore: consumed next, bucket lost);
 * `"back"` LPUSHes to the message's own priority bucket (the back of its line). Applied only
 * if the tag is still unacked (and, with a `ceiling`, not re-scored above it). An entry with
 * no queue to go to is dead-lettered rather than dropped.
 *
 * @returns `true` when the message went back to a queue.
 *
 * @example
 * ```ts ignore
 * const entry = parseUnackedEntry(await client.hget("unacked", tag));
 * await restoreEntry(client, lookup, tag, entry, "front");
 * ```
 */
export async function restoreEntry(
  client: RedisClient,
  lookup: Lookup,
  tag: string,
  entry: UnackedEntry,
  position: "front" | "back",
  ceiling = "",
): Promise<boolean> {
  const queues = await lookup(entry.exchange, entry.routingKey);
  if (!queues.length) {
    await deadLetterTag(client, tag, {
      reason:
        `Cannot restore message: exchange "${entry.exchange}" has no queue bound to routing key "${entry.routingKey}"`,
      queue: "",
      raw: entry.envelope,
      at: Date.now(),
    });
    return false;
  }
  const targets = queues.map((q) => position === "front" ? q : bucketKey(q, entry.priority));
  const restored = await client.evalScript(
    BROKER_SCRIPTS.restore,
    [UNACKED, UNACKED_INDEX, ...targets],
    [tag, markRedelivered(entry.envelope), position, ceiling],
  );
  return restored === 1;
}

/**
 * Re-scores the given unacked tags to now (`ZADD XX`: tags no longer unacked stay out).
 *
 * @example
 * ```ts ignore
 * await touchTags(client, ["3b9c…"]);
 * ```
 */
export async function touchTags(client: RedisClient, tags: readonly string[]): Promise<void> {
  const now = unackedScore();
  for (let i = 0; i < tags.length; i += 500) {
    await client.call(
      "ZADD",
      UNACKED_INDEX,
      "XX",
      ...tags.slice(i, i + 500).flatMap((t) => [now, t]),
    );
  }
}

/**
 * Reads the dead-letter list, newest first.
 *
 * @example
 * ```ts ignore
 * const [newest] = await readDeadLetters(client, 1);
 * ```
 */
export async function readDeadLetters(
  client: RedisClient,
  limit: number,
): Promise<DeadLetter[]> {
  if (limit <= 0) return [];
  const items = await client.call("LRANGE", DEAD_LETTERS, 0, limit - 1) as string[];
  return items.map((item) => {
    try {
      return JSON.parse(item) as DeadLetter;
    } catch {
      return { reason: "Cannot read dead-letter entry", queue: "", raw: item, at: 0 };
    }
  });
}

/** Most tags one visibility pass reads at a time, and most batches per pass. */
const BATCH = 500;
const MAX_BATCHES = 40;

/**
 * kombu's `restore_visible`: under `SET unacked_mutex <token> NX PX 300000` (skipped while
 * another process, Python's included, holds it), restores to the front every `unacked`
 * entry whose `unacked_index` score is older than `visibilityTimeout` seconds, whoever
 * fetched it; releases the mutex by compare-and-delete. Unreadable entries are
 * dead-lettered. Returns how many messages went back.
 *
 * @example
 * ```ts ignore
 * const restored = await restoreVisible(client, lookup, 3600);
 * ```
 */
export async function restoreVisible(
  client: RedisClient,
  lookup: Lookup,
  visibilityTimeout: number,
  held?: { has(tag: string): boolean },
): Promise<number> {
  const token = crypto.randomUUID();
  if (await client.call("SET", UNACKED_MUTEX, token, "PX", 300_000, "NX") !== "OK") return 0;
  let count = 0;
  try {
    const ceiling = (Date.now() / 1000 - visibilityTimeout).toFixed(6);
    for (let batch = 0; batch < MAX_BATCHES; batch++) {
      const tags = await client.call(
        "ZRANGEBYSCORE",
        UNACKED_INDEX,
        "-inf",
        ceiling,
        "LIMIT",
        0,
        BATCH,
      ) as string[];
      if (!tags.length) break;
      // Tags this process still holds (alive, just not re-scored yet): refresh, never restore.
      const mine = held ? tags.filter((tag) => held.has(tag)) : [];
      await touchTags(client, mine);
      const stored = await client.call("HMGET", UNACKED, ...tags) as (string | null)[];
      for (let i = 0; i < tags.length; i++) {
        const tag = tags[i]!;
        if (held?.has(tag)) continue;
        const text = stored[i];
        if (text === null || text === undefined) {
          await client.call("ZREM", UNACKED_INDEX, tag); // settled meanwhile: only the index was left
          continue;
        }
        let entry: UnackedEntry;
        try {
          entry = parseUnackedEntry(text);
        } catch (err) {
          await deadLetterTag(client, tag, {
            reason: (err as Error).message,
            queue: "",
            raw: text,
            at: Date.now(),
          });
          continue;
        }
        if (await restoreEntry(client, lookup, tag, entry, "front", ceiling)) count++;
      }
      if (tags.length < BATCH) break;
    }
  } finally {
    await client.evalScript(BROKER_SCRIPTS.release, [UNACKED_MUTEX], [token]);
  }
  return count;
}
