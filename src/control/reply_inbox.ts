/**
 * Where a remote-control client collects the replies to one request: the reply exchange
 * (`reply.celery.pidbox`, direct) with the request's `oid` as routing key, read in one of
 * two ways, whichever the broker offers:
 *
 * - **a bound reply queue** (`bindQueue`: Redis, memory, embedded): replies are queued as
 *   kombu's Redis transport does it, and fetched;
 * - **a subscription** (`subscribe` on RabbitMQ): a private auto-delete queue bound to the
 *   reply exchange with the `oid`, as kombu's pidbox client has on AMQP.
 *
 * @module
 */

import type { Broker, Subscription } from "../brokers/broker.ts";
import { ConfigError } from "../errors.ts";
import type { TransportMessage } from "../protocol/message.ts";
import { replyQueue } from "./protocol.ts";

/** An open reply inbox. */
export interface ReplyInbox {
  /** Waits up to `timeoutMs` for replies; resolves with those that came (maybe none). */
  next(timeoutMs: number): Promise<TransportMessage[]>;
  /** Stops collecting and removes what was made for it. */
  close(): Promise<void>;
}

/**
 * Opens the inbox for `oid` on `exchange`, before the request is sent, so no reply is missed.
 * A bound reply queue is named {@linkcode replyQueue}`(oid)`, as kombu names it.
 *
 * @throws {ConfigError} When the broker can neither bind queues nor subscribe.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "../brokers/memory.ts";
 * import { openReplyInbox } from "./reply_inbox.ts";
 * import { encodeTaskMessage } from "../protocol/task.ts";
 * const broker = new MemoryBroker();
 * const inbox = await openReplyInbox(broker, "reply.celery.pidbox", "oid-1");
 * await broker.publish(encodeTaskMessage({ id: "r", task: "t", origin: "o" }, new Date()), {
 *   exchange: "reply.celery.pidbox",
 *   routingKey: "oid-1",
 * });
 * assert.equal((await inbox.next(100)).length, 1);
 * await inbox.close();
 * ```
 */
export async function openReplyInbox(
  broker: Broker,
  exchange: string,
  oid: string,
): Promise<ReplyInbox> {
  if (broker.bindQueue && broker.unbindQueue) return await queueInbox(broker, exchange, oid);
  if (broker.subscribe) return await subscriptionInbox(broker, exchange, oid);
  throw new ConfigError(
    `Cannot wait for remote-control replies on ${broker.displayUrl}: this broker can neither bind reply queues nor subscribe`,
  );
}

async function queueInbox(broker: Broker, exchange: string, oid: string): Promise<ReplyInbox> {
  const queue = replyQueue(oid);
  await broker.bindQueue!(queue, exchange, oid);
  return {
    async next(timeoutMs) {
      const deliveries = await broker.fetch([queue], { max: 100, timeoutMs });
      const out: TransportMessage[] = [];
      for (const d of deliveries) {
        await d.ack().catch(() => {});
        if (d.message) out.push(d.message);
      }
      return out;
    },
    async close() {
      await broker.unbindQueue!(queue, exchange, oid).catch(() => {});
      await broker.purge(queue).catch(() => {});
    },
  };
}

async function subscriptionInbox(
  broker: Broker,
  exchange: string,
  oid: string,
): Promise<ReplyInbox> {
  const buffered: TransportMessage[] = [];
  let wake: (() => void) | undefined;
  const subscription: Subscription = await broker.subscribe!(exchange, oid, (message) => {
    buffered.push(message);
    wake?.();
  });
  return {
    async next(timeoutMs) {
      if (buffered.length === 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, Math.max(0, timeoutMs));
        });
        clearTimeout(timer);
        wake = undefined;
      }
      return buffered.splice(0);
    },
    async close() {
      await subscription.close().catch(() => {});
    },
  };
}
