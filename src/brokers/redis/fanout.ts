/**
 * kombu's fanout on Redis: pub/sub on `/<db>.<exchange>[/<routing key>]`, for remote control
 * and events. Fire-and-forget: nothing is stored, a message nobody listens to is lost.
 *
 * @module
 */

import { type Subscription, topicMatches } from "../broker.ts";
import type { TransportMessage } from "../../protocol/message.ts";
import { decodeRedisEnvelope, encodeRedisEnvelope } from "../../protocol/redis_envelope.ts";
import { closeRedis, connectRedis, type RedisClient, type RedisTarget } from "./connection.ts";
import { fanoutChannel, fanoutPattern } from "./keys.ts";

/**
 * Fanout publish and subscribe for one broker: publishes on the broker's command connection
 * and listens on a subscriber connection of its own, opened on the first subscribe.
 *
 * @example
 * ```ts ignore
 * const fanout = new RedisFanout(parseRedisUrl("redis://127.0.0.1:6379/0"), () => client);
 * const sub = await fanout.subscribe("celeryev", "worker.*", (m) => console.log(m.headers));
 * await fanout.broadcast("celeryev", "worker.heartbeat", message);
 * await sub.close();
 * await fanout.close();
 * ```
 */
export class RedisFanout {
  #target: RedisTarget;
  #publisher: () => RedisClient;
  #subscriber?: Promise<RedisClient>;
  #handlers = new Map<string, Set<(raw: string) => void>>();
  #closed = false;

  /**
   * @param target The broker's parsed URL (its db prefixes channel names).
   * @param publisher Returns the connection to PUBLISH on.
   */
  constructor(target: RedisTarget, publisher: () => RedisClient) {
    this.#target = target;
    this.#publisher = publisher;
  }

  /** `PUBLISH /<db>.<exchange>[/<routing key>] <envelope>` with a fresh delivery tag. */
  async broadcast(exchange: string, routingKey: string, message: TransportMessage): Promise<void> {
    const raw = encodeRedisEnvelope(message, {
      exchange,
      routingKey,
      deliveryTag: crypto.randomUUID(),
    });
    await this.#publisher().call(
      "PUBLISH",
      fanoutChannel(this.#target.db, exchange, routingKey),
      raw,
    );
  }

  /**
   * Listens with `PSUBSCRIBE` (`#` becomes `*`), then filters by AMQP topic rules on the
   * envelope's routing key (a Redis glob `*` would span dots). Undecodable messages are
   * skipped: fanout messages are not stored, so there is nothing to keep.
   */
  async subscribe(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription> {
    if (this.#closed) throw new TypeError("Cannot subscribe: the Redis broker is closed");
    const glob = fanoutPattern(this.#target.db, exchange, pattern);
    const sub = await (this.#subscriber ??= connectRedis(this.#target, "broker, subscriber").then(
      (client) => {
        client.listen({
          onPMessage: (patternKey, _channel, raw) => {
            for (const h of this.#handlers.get(patternKey) ?? []) h(raw);
          },
        });
        return client;
      },
    ));
    const handler = (raw: string) => {
      let message: TransportMessage;
      try {
        message = decodeRedisEnvelope(raw).message;
      } catch {
        return;
      }
      if (pattern !== "" && !topicMatches(pattern, message.deliveryInfo?.routingKey ?? "")) return;
      onMessage(message);
    };
    let handlers = this.#handlers.get(glob);
    if (!handlers) {
      this.#handlers.set(glob, handlers = new Set());
      await sub.psubscribe(glob);
    }
    handlers.add(handler);
    return {
      close: async () => {
        handlers!.delete(handler);
        if (handlers!.size === 0 && this.#handlers.get(glob) === handlers) {
          this.#handlers.delete(glob);
          if (!this.#closed) await sub.punsubscribe(glob).catch(() => {});
        }
      },
    };
  }

  /** Closes the subscriber connection, if one was opened. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#handlers.clear();
    await closeRedis(await this.#subscriber?.catch(() => undefined));
  }
}
