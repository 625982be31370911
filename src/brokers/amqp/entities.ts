/**
 * The RabbitMQ entities Celery 5.2 / kombu 5.2 declare, with their exact flags and
 * arguments. RabbitMQ answers a re-declare with different flags or arguments with 406
 * PRECONDITION_FAILED, so every declare celeriac makes comes from here:
 *
 * | entity | name | flags | arguments |
 * |---|---|---|---|
 * | task exchange | the queue's (e.g. `celery`) | direct, durable | — |
 * | task queue | `celery` | durable, bound with key = name | `x-max-priority` if set |
 * | pidbox exchange | `celery.pidbox` | fanout, non-durable | — |
 * | reply exchange | `reply.celery.pidbox` | direct, non-durable | — |
 * | event exchange | `celeryev` | topic, durable | — |
 * | pidbox / reply queues | (unique) | auto-delete | `x-message-ttl: 300000`, `x-expires: 10000` |
 * | event queues | `celeryev.<uuid>` | auto-delete | `x-message-ttl: 5000`, `x-expires: 60000` |
 * | RPC result queue | `<oid>` | auto-delete, default exchange | `x-expires` = result expiry (ms) |
 * | dead letters (celeriac) | `celeriac.dead` | durable, default exchange | — |
 *
 * Integer arguments are sent as signed 32-bit (`I`), as py-amqp does.
 *
 * @module
 */

import type { QueueOptions } from "../broker.ts";

/** An AMQP exchange type. */
export type ExchangeType = "direct" | "topic" | "fanout" | "headers";

/** An exchange declaration. */
export interface ExchangeSpec {
  /** Name (never `""`: the default exchange is not declared). */
  name: string;
  /** Type. */
  type: ExchangeType;
  /** Survives a broker restart. */
  durable: boolean;
  /** Deleted when its last binding goes. */
  autoDelete: boolean;
}

/** A queue declaration with its bindings. */
export interface QueueSpec {
  /** Name. */
  name: string;
  /** Survives a broker restart. */
  durable: boolean;
  /** Deleted when its last consumer goes. */
  autoDelete: boolean;
  /** Only this connection may use it; deleted with the connection. */
  exclusive: boolean;
  /** `x-` arguments (integers as py-amqp sends them). */
  arguments: Record<string, number>;
  /** Bindings, declared after the exchange and the queue. */
  bindings: { exchange: ExchangeSpec; routingKey: string }[];
}

/**
 * The dead-letter queue celeriac moves undeliverable messages to (the same name as on Redis
 * and SQLite).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEAD_LETTER_QUEUE } from "./entities.ts";
 * assert.equal(DEAD_LETTER_QUEUE, "celeriac.dead");
 * ```
 */
export const DEAD_LETTER_QUEUE = "celeriac.dead";

/**
 * The exchange kombu declares for a name, when nothing else is known about it: `celeryev`
 * is topic and durable, `<ns>.pidbox` fanout and `reply.<ns>.pidbox` direct (both
 * non-durable), anything else direct and durable (kombu's `Exchange` default).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exchangeFor } from "./entities.ts";
 * assert.deepEqual(exchangeFor("celeryev"), { name: "celeryev", type: "topic", durable: true, autoDelete: false });
 * assert.equal(exchangeFor("celery.pidbox").type, "fanout");
 * assert.equal(exchangeFor("reply.celery.pidbox").durable, false);
 * assert.equal(exchangeFor("celery").type, "direct");
 * ```
 */
export function exchangeFor(name: string): ExchangeSpec {
  if (name === "celeryev") return { name, type: "topic", durable: true, autoDelete: false };
  if (/^reply\..+\.pidbox$/.test(name)) {
    return { name, type: "direct", durable: false, autoDelete: false };
  }
  if (/\.pidbox$/.test(name)) return { name, type: "fanout", durable: false, autoDelete: false };
  return { name, type: "direct", durable: true, autoDelete: false };
}

/**
 * A task queue as Celery declares it: durable, bound to a durable exchange (by default the
 * direct exchange of the same name) with the routing key (by default the name), and
 * `x-max-priority` only when asked for.
 *
 * @throws {RangeError} For a `maxPriority` outside 1..255.
 *
 * @example The default `celery` queue
 * ```ts
 * import assert from "node:assert/strict";
 * import { taskQueue } from "./entities.ts";
 * const q = taskQueue("celery");
 * assert.deepEqual([q.durable, q.autoDelete, q.exclusive, q.arguments], [true, false, false, {}]);
 * assert.deepEqual(q.bindings, [{ exchange: { name: "celery", type: "direct", durable: true, autoDelete: false }, routingKey: "celery" }]);
 * assert.deepEqual(taskQueue("hi", { maxPriority: 10 }).arguments, { "x-max-priority": 10 });
 * ```
 */
export function taskQueue(name: string, options: QueueOptions = {}): QueueSpec {
  const args: Record<string, number> = {};
  if (options.maxPriority !== undefined) {
    const p = options.maxPriority;
    if (!Number.isInteger(p) || p < 1 || p > 255) {
      throw new RangeError(
        `Cannot declare queue "${name}": maxPriority must be an integer in 1..255, got ${p}`,
      );
    }
    args["x-max-priority"] = p;
  }
  const exchangeName = options.exchange ?? name;
  const bindings = exchangeName === "" ? [] : [{
    exchange: {
      name: exchangeName,
      type: options.exchangeType ?? "direct",
      durable: true,
      autoDelete: false,
    } satisfies ExchangeSpec,
    routingKey: options.routingKey ?? name,
  }];
  return { name, durable: true, autoDelete: false, exclusive: false, arguments: args, bindings };
}

/**
 * The private queue of one fanout subscription: a unique name, exclusive and auto-delete,
 * bound with `pattern` (`""` on a topic exchange means everything, `#`), carrying the TTL
 * and expiry kombu gives the queues of that exchange.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { subscriptionQueue } from "./entities.ts";
 * const q = subscriptionQueue("celeryev", "");
 * assert.match(q.name, /^celeryev\.[0-9a-f-]{36}$/);
 * assert.deepEqual(q.arguments, { "x-message-ttl": 5000, "x-expires": 60000 });
 * assert.equal(q.bindings[0]!.routingKey, "#");
 * assert.deepEqual(subscriptionQueue("celery.pidbox", "").arguments, { "x-message-ttl": 300000, "x-expires": 10000 });
 * ```
 */
export function subscriptionQueue(exchange: string, pattern: string): QueueSpec {
  const spec = exchangeFor(exchange);
  const id = crypto.randomUUID();
  let name: string;
  let args: Record<string, number> = {};
  if (exchange === "celeryev") {
    name = `celeryev.${id}`;
    args = { "x-message-ttl": 5000, "x-expires": 60000 };
  } else if (/\.pidbox$/.test(exchange)) {
    name = `${id}.${exchange}`;
    args = { "x-message-ttl": 300000, "x-expires": 10000 };
  } else {
    name = `${exchange}.${id}`;
  }
  const routingKey = spec.type === "topic" && pattern === "" ? "#" : pattern;
  return {
    name,
    durable: false,
    autoDelete: true,
    exclusive: true,
    arguments: args,
    bindings: [{ exchange: spec, routingKey }],
  };
}

/**
 * The `rpc://` result queue of one client, as Celery's RPC backend declares it: named by
 * the client's oid, non-durable, auto-delete, on the default exchange only, with
 * `x-expires` = the result expiry in milliseconds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { replyQueue } from "./entities.ts";
 * assert.deepEqual(replyQueue("oid-1", 86_400_000), {
 *   name: "oid-1", durable: false, autoDelete: true, exclusive: false,
 *   arguments: { "x-expires": 86400000 }, bindings: [],
 * });
 * ```
 */
export function replyQueue(oid: string, expiresMs: number): QueueSpec {
  return {
    name: oid,
    durable: false,
    autoDelete: true,
    exclusive: false,
    arguments: { "x-expires": Math.round(expiresMs) },
    bindings: [],
  };
}

/**
 * The durable queue dead letters are kept in (default exchange, no arguments).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadLetterQueue } from "./entities.ts";
 * assert.equal(deadLetterQueue().name, "celeriac.dead");
 * assert.equal(deadLetterQueue().durable, true);
 * ```
 */
export function deadLetterQueue(): QueueSpec {
  return {
    name: DEAD_LETTER_QUEUE,
    durable: true,
    autoDelete: false,
    exclusive: false,
    arguments: {},
    bindings: [],
  };
}

/**
 * Declare arguments in amqplib's form, integers forced to signed 32-bit (`I`) as py-amqp
 * sends them (amqplib would pick the smallest type).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wireArguments } from "./entities.ts";
 * assert.deepEqual(wireArguments({ "x-expires": 10000 }), { "x-expires": { "!": "int", value: 10000 } });
 * ```
 */
export function wireArguments(args: Record<string, number>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(args)) {
    out[key] = Number.isInteger(value) && value >= -0x80000000 && value < 0x80000000
      ? { "!": "int", value }
      : value;
  }
  return out;
}
