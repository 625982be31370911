/**
 * The broker seam: a few transport primitives that every broker (memory, Redis, RabbitMQ,
 * embedded) implements, and one shared contract suite (`tests/brokers/contract.ts`) checks.
 *
 * Delivery guarantee: a fetched message stays recorded as unacknowledged until the worker
 * calls exactly one of `ack`, `requeue` or `deadLetter`; if the worker dies first the broker
 * gives it back (Redis after the visibility timeout, memory on close/restore).
 *
 * @module
 */

import type { ResultWrite } from "../backends/backend.ts";
import type { DecodeError } from "../errors.ts";
import type { TransportMessage } from "../protocol/message.ts";

/** Where a message is published. */
export interface Route {
  /** Exchange; `""` publishes straight to the queue named by `routingKey`. */
  exchange: string;
  /** Routing key (queue name for the default exchange). */
  routingKey: string;
}

/**
 * How a queue is declared and bound, as kombu's `Queue(name, Exchange(exchange, type),
 * routing_key)`.
 */
export interface QueueOptions {
  /** Exchange to bind to; `""` binds none (default exchange only). @default the queue's name */
  exchange?: string;
  /** Type of that exchange. @default "direct" */
  exchangeType?: "direct" | "topic" | "fanout";
  /** Binding key. @default the queue's name */
  routingKey?: string;
  /** `x-max-priority` (RabbitMQ serves higher numbers first). @default none */
  maxPriority?: number;
}

/** One fetched message, owned by the worker until it settles it. */
export interface Delivery {
  /** The message, or `null` when the broker could not decode it (see `decodeError`). */
  readonly message: TransportMessage | null;
  /** Why the message could not be decoded; set exactly when `message` is `null`. */
  readonly decodeError?: DecodeError;
  /** The queue it was fetched from. */
  readonly queue: string;
  /** Broker-native raw form (the Redis envelope text), kept for dead-lettering. */
  readonly raw: string | Uint8Array;
  /** True when the broker delivered it before (restored or requeued). */
  readonly redelivered: boolean;
  /** Removes the message for good: it was handled. */
  ack(): Promise<void>;
  /**
   * Applies a result store and then this ack in one atomic step on the broker's server, so
   * the ack cannot land without its result; resolves once both are applied. When that step
   * fails, the ack is not applied, the message goes back to the back of its queue (it runs
   * again), and the promise rejects. Returns `null`, doing nothing, when this broker cannot
   * apply `write` (another server, or a store kind it does not know): store, then `ack()`.
   * Optional.
   */
  ackWith?(write: ResultWrite): Promise<void> | null;
  /**
   * Gives the message back to its queue: `"front"` (the default, as kombu's restore: it is
   * consumed next) or `"back"` (as kombu's reject with requeue).
   */
  requeue(position?: "front" | "back"): Promise<void>;
  /** Moves the raw message to the broker's dead-letter store with a reason, then acks it. */
  deadLetter(reason: string): Promise<void>;
  /**
   * Tells the broker the worker still holds this message (an ETA task waiting for its
   * time), so no visibility-timeout restore, celeriac's or Python's, gives it back. Brokers
   * without a visibility timeout omit it.
   */
  touch?(): Promise<void>;
}

/** Options of {@linkcode Broker.fetch}. */
export interface FetchOptions {
  /** At most this many messages (the worker's free slots). Must be ≥ 1. */
  max: number;
  /** Wait at most this long for the first message, then return `[]`. */
  timeoutMs: number;
  /** Stops the wait early (returns `[]`). */
  signal?: AbortSignal;
  /**
   * Called once, synchronously, when the broker has taken `count` (≥ 1) messages for this
   * fetch and before it decodes them, so a consumer can send its next fetch while this one
   * is decoded. A command the callback sends goes out before the fetch resolves. Brokers
   * that have nothing to overlap (memory, RabbitMQ) do not call it; the worker then decides
   * its next fetch once this one resolves.
   */
  onTaken?: (count: number) => void;
}

/** One dead-lettered message as stored. */
export interface DeadLetter {
  /** Why it was dead-lettered. */
  reason: string;
  /** Queue it came from. */
  queue: string;
  /** The raw broker-native message text (base64 for binary). */
  raw: string;
  /** When (unix ms). */
  at: number;
}

/**
 * A message broker.
 *
 * @example Publish and fetch on the memory broker
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "./memory.ts";
 * import { encodeTaskMessage } from "../protocol/task.ts";
 * const broker = new MemoryBroker();
 * await broker.publish(encodeTaskMessage({ id: "1", task: "t", origin: "o" }, new Date()), { exchange: "", routingKey: "celery" });
 * const [d] = await broker.fetch(["celery"], { max: 1, timeoutMs: 10 });
 * await d!.ack();
 * assert.equal(await broker.queueSize("celery"), 0);
 * await broker.close();
 * ```
 */
export interface Broker {
  /** `memory`, `redis`, `amqp`, … */
  readonly kind: string;
  /** The URL with any password hidden, for banners and logs. */
  readonly displayUrl: string;
  /**
   * True when an ack *issued* before a {@linkcode Broker.fetch} call (`Delivery.ack()` or
   * `Delivery.ackWith()` called, its promise not settled yet) is applied on the server before
   * that fetch reserves anything. The worker then frees the message's place in its prefetch
   * window when the ack is issued rather than when it is confirmed, so the next fetch goes
   * out in the same round trip as the acks, and the broker still never holds more unacked
   * messages for the worker than its window. Absent: the worker waits for the confirmation.
   */
  readonly acksBeforeFetch?: boolean;
  /** Opens connections; fails with `BrokerConnectionError` or `PermissionMissingError`. */
  connect(): Promise<void>;
  /**
   * Declares a queue and its binding, idempotently: by default bound to the direct exchange
   * of the same name with the name as key (kombu's default). `options` set another exchange,
   * type, binding key or `x-max-priority` (exact on `amqp://`; other brokers keep their own
   * layout and may ignore them).
   */
  declareQueue(queue: string, options?: QueueOptions): Promise<void>;
  /** Publishes one message. */
  publish(message: TransportMessage, route: Route): Promise<void>;
  /**
   * Fetches up to `max` messages from the queues (Celery's order: priority first, then
   * queues round robin), waiting up to `timeoutMs` for the first one.
   */
  fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]>;
  /** Messages waiting in a queue (all priorities). */
  queueSize(queue: string): Promise<number>;
  /** Deletes every waiting message of a queue; returns how many. */
  purge(queue: string): Promise<number>;
  /** The dead-letter store, newest first. */
  deadLetters(limit?: number): Promise<DeadLetter[]>;
  /** Closes connections. Unsettled deliveries stay recorded (they come back later). */
  close(): Promise<void>;
  /**
   * Fanout publish for remote control and events: fire-and-forget, nothing stored, lost
   * when nobody listens (kombu's fanout on Redis is pub/sub). Optional: a broker without it
   * cannot carry remote control or events.
   */
  broadcast?(exchange: string, routingKey: string, message: TransportMessage): Promise<void>;
  /**
   * Listens to a fanout exchange. `pattern` is an AMQP-style binding key (`#` any words,
   * `*` one word; `""` or `#` everything). Returns a subscription to close.
   */
  subscribe?(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription>;
  /**
   * Binds `queue` to the direct `exchange` with `routingKey` (kombu's `queue_bind`; on Redis
   * `SADD _kombu.binding.<exchange> "<rk>SEP<SEP><queue>"`), so a publish to that exchange
   * with that key lands in the queue. Optional: remote control binds its reply queues here.
   */
  bindQueue?(queue: string, exchange: string, routingKey: string): Promise<void>;
  /** Removes a binding made by {@linkcode Broker.bindQueue} (kombu's `queue_unbind`). */
  unbindQueue?(queue: string, exchange: string, routingKey: string): Promise<void>;
  /**
   * Takes every waiting message of one task name (`headers.task`) out of a queue, all
   * priorities, atomically per priority bucket: the other messages stay, in their order.
   * With `moveTo`, the taken messages are appended to that queue instead (same priority,
   * their routing key rewritten to it, their order kept). Returns the taken messages,
   * oldest first. Optional: remote control's `revoke_by_name`, `purge --task-name` and
   * `move` use it.
   */
  takeTaskMessages?(
    queue: string,
    taskName: string,
    options?: TakeTaskMessagesOptions,
  ): Promise<TransportMessage[]>;
}

/** Options of {@linkcode Broker.takeTaskMessages}. */
export interface TakeTaskMessagesOptions {
  /** Append the taken messages to this queue instead of dropping them. */
  moveTo?: string;
}

/** An open fanout subscription. */
export interface Subscription {
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * Whether a routing key matches an AMQP topic binding key (`*` one word, `#` zero or more).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { topicMatches } from "./broker.ts";
 * assert.ok(topicMatches("task.#", "task.multi"));
 * assert.ok(topicMatches("#", "worker.heartbeat"));
 * assert.ok(!topicMatches("worker.*", "task.multi"));
 * ```
 */
export function topicMatches(pattern: string, routingKey: string): boolean {
  if (pattern === "" || pattern === "#") return true;
  const p = pattern.split(".");
  const k = routingKey.split(".");
  const match = (i: number, j: number): boolean => {
    if (i === p.length) return j === k.length;
    if (p[i] === "#") return match(i + 1, j) || (j < k.length && match(i, j + 1));
    if (j === k.length) return false;
    return (p[i] === "*" || p[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}
