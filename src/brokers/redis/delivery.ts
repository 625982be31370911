/**
 * Deliveries of the Redis broker: one fetched message and how to settle it (ack, requeue,
 * dead-letter), each applied only while its tag is still in `unacked`.
 *
 * @module
 */

import type { ResultWrite } from "../../backends/backend.ts";
import type { Bag } from "../../bag.ts";
import type { Delivery } from "../broker.ts";
import { DecodeError } from "../../errors.ts";
import type { TransportMessage } from "../../protocol/message.ts";
import { decodeRedisEnvelope } from "../../protocol/redis_envelope.ts";
import { queueOfBucket, UNACKED } from "./keys.ts";
import type { Popped } from "./popper.ts";
import {
  deadLetterTag,
  entryOfEnvelope,
  type Lookup,
  parseUnackedEntry,
  restoreEntry,
} from "./unacked.ts";
import type { RedisClient } from "../../redis/client.ts";

/** An unsettled delivery and its tag. */
export interface Outstanding {
  /** Delivery tag (key of `unacked`). */
  tag: string;
  /** The delivery. */
  delivery: Delivery;
}

/** What a delivery needs from its broker. */
export interface DeliveryContext {
  /** The command connection (throws when the broker is not connected). */
  client(): RedisClient;
  /** Queues of an (exchange, routing key) pair. */
  lookup: Lookup;
  /** The broker's unsettled deliveries: added here, removed on settle. */
  outstanding: Bag<Outstanding>;
  /** The broker's server (`serverOf`): the only one it carries result writes to. */
  server: string;
  /** Queues one settle for the next SETTLE script (batched with other settles). */
  settle(unit: Settle): Promise<void>;
}

/**
 * One unit of a SETTLE script: a result store, then an ack; either may be absent. Both parts
 * of a unit always go in the same script, the store first.
 */
export interface Settle {
  /** Delivery tag to remove from `unacked` and `unacked_index`, or `null`. */
  tag: string | null;
  /** Result to store before the ack. */
  write?: ResultWrite;
}

const noop = () => Promise.resolve();

/** A message the fetch script already dead-lettered: reported, nothing left to settle. */
function deadOnArrival(raw: string, queue: string): Delivery {
  let decodeError = new DecodeError("Cannot decode Redis envelope", raw);
  try {
    decodeRedisEnvelope(raw);
  } catch (err) {
    if (err instanceof DecodeError) decodeError = err;
  }
  return {
    message: null,
    decodeError,
    queue,
    raw,
    redelivered: false,
    ack: noop,
    requeue: noop,
    deadLetter: noop,
  };
}

/**
 * Builds the delivery of one popped message. A message that the script recorded but that
 * does not decode here (say, an unknown body encoding) comes with `message: null` and a
 * working `deadLetter`, so the worker can keep it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bag } from "../../bag.ts";
 * import { createDelivery } from "./delivery.ts";
 * const d = createDelivery({ key: "celery", raw: "not json", tag: "" }, {
 *   client: () => { throw new Error("unused"); },
 *   lookup: () => Promise.resolve([]),
 *   outstanding: new Bag(),
 *   server: "redis://127.0.0.1:6379",
 *   settle: () => Promise.resolve(),
 * });
 * assert.equal(d.message, null);
 * assert.equal(d.queue, "celery");
 * await d.ack(); // dead-lettered by the fetch already: nothing to do
 * ```
 */
export function createDelivery({ key, raw, tag }: Popped, ctx: DeliveryContext): Delivery {
  const queue = queueOfBucket(key);
  if (tag === "") return deadOnArrival(raw, queue);
  let message: TransportMessage | null = null;
  let decodeError: DecodeError | undefined;
  try {
    message = decodeRedisEnvelope(raw).message;
  } catch (err) {
    decodeError = err instanceof DecodeError ? err : new DecodeError(String(err), raw);
  }
  // `place` (the delivery's place among the broker's unsettled ones) is set below, before
  // any of the delivery's methods can run.
  const settle = () => ctx.outstanding.remove(place);
  const restore = async (position: "front" | "back") => {
    const c = ctx.client();
    let entry = entryOfEnvelope(raw);
    if (!entry) {
      const stored = await c.call("HGET", UNACKED, tag) as string | null;
      if (stored === null) return; // restored or settled elsewhere meanwhile
      entry = parseUnackedEntry(stored);
    }
    await restoreEntry(c, ctx.lookup, tag, entry, position);
  };
  const delivery: Delivery = {
    message,
    decodeError,
    queue,
    raw,
    redelivered: message?.deliveryInfo?.redelivered === true ||
      message?.headers.redelivered === true,
    ack: async () => {
      if (settle()) await ctx.settle({ tag });
    },
    ackWith: (write) => {
      if (write.kind !== "redis" || write.server !== ctx.server) return null;
      // Settled already (not in normal use): the result is still stored.
      if (!settle()) return ctx.settle({ tag: null, write });
      return ctx.settle({ tag, write }).catch(async (err) => {
        // The script did not run to its acks: the message goes back, as after a failed store.
        await restore("back").catch(() => {});
        throw err;
      });
    },
    requeue: async (position = "front") => {
      if (settle()) await restore(position);
    },
    deadLetter: async (reason: string) => {
      if (!settle()) return;
      await deadLetterTag(ctx.client(), tag, { reason, queue, raw, at: Date.now() });
    },
  };
  const place = ctx.outstanding.add({ tag, delivery });
  return delivery;
}
