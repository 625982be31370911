/**
 * An in-process broker for tests and single-process demos. Same semantics as the Redis
 * broker: priority buckets 0,3,6,9 served lowest first, queues round robin, unacked
 * deliveries tracked until settled, restored at {@linkcode MemoryBroker.restoreUnacked}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  type Broker,
  type DeadLetter,
  type Delivery,
  type FetchOptions,
  type Route,
  type Subscription,
  type TakeTaskMessagesOptions,
  topicMatches,
} from "./broker.ts";
import type { TransportMessage } from "../protocol/message.ts";

const PRIORITY_STEPS = [0, 3, 6, 9] as const;

/** Maps a 0..9 priority to kombu's bucket step (0, 3, 6 or 9). */
export function priorityStep(priority: unknown): number {
  const p = typeof priority === "number" && Number.isFinite(priority)
    ? Math.min(9, Math.max(0, Math.trunc(priority)))
    : 0;
  let step = 0;
  for (const s of PRIORITY_STEPS) if (s <= p) step = s;
  return step;
}

interface Stored {
  message: TransportMessage;
  queue: string;
  redelivered: boolean;
}

/**
 * The in-memory broker. Share one instance between an app and a worker in one process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "./memory.ts";
 * const broker = new MemoryBroker();
 * assert.equal(await broker.queueSize("celery"), 0);
 * ```
 */
export class MemoryBroker implements Broker {
  /** Always `memory`. */
  readonly kind = "memory";
  /** `memory://`. */
  readonly displayUrl: string;
  #queues = new Map<string, Map<number, Stored[]>>();
  #unacked = new Set<Stored>();
  #dead: DeadLetter[] = [];
  #waiters = new Set<() => void>();
  #rotation = 0;

  /** Builds an empty broker; `name` only shows in `displayUrl`. */
  constructor(name = "") {
    this.displayUrl = `memory://${name}`;
  }

  /** Nothing to connect. */
  connect(): Promise<void> {
    return Promise.resolve();
  }

  /** Creates the queue if missing. */
  declareQueue(queue: string): Promise<void> {
    this.#buckets(queue);
    return Promise.resolve();
  }

  #buckets(queue: string): Map<number, Stored[]> {
    let buckets = this.#queues.get(queue);
    if (!buckets) {
      buckets = new Map(PRIORITY_STEPS.map((s) => [s, []]));
      this.#queues.set(queue, buckets);
    }
    return buckets;
  }

  /**
   * Appends the message to its queue's priority bucket; wakes waiting fetchers. The default
   * exchange `""` (and a named exchange nobody ever bound) delivers to the queue named by
   * the routing key; a named exchange with bindings delivers to the queues bound with that
   * key (none: dropped, as kombu on Redis).
   */
  publish(message: TransportMessage, route: Route): Promise<void> {
    for (const queue of this.#route(route)) {
      const stored: Stored = {
        message: {
          ...message,
          deliveryInfo: { exchange: route.exchange, routingKey: route.routingKey },
        },
        queue,
        redelivered: false,
      };
      this.#buckets(queue).get(priorityStep(message.properties.priority))!.push(stored);
    }
    this.#wake();
    return Promise.resolve();
  }

  #bindings = new Map<string, Map<string, Set<string>>>();

  #route(route: Route): string[] {
    const bound = route.exchange === "" ? undefined : this.#bindings.get(route.exchange);
    if (!bound) return [route.routingKey];
    return [...bound.get(route.routingKey) ?? []];
  }

  /** Binds a queue to a direct exchange with a routing key. */
  bindQueue(queue: string, exchange: string, routingKey: string): Promise<void> {
    let byKey = this.#bindings.get(exchange);
    if (!byKey) this.#bindings.set(exchange, byKey = new Map());
    let queues = byKey.get(routingKey);
    if (!queues) byKey.set(routingKey, queues = new Set());
    queues.add(queue);
    this.#buckets(queue);
    return Promise.resolve();
  }

  /** Removes a binding (the exchange keeps routing by its remaining bindings). */
  unbindQueue(queue: string, exchange: string, routingKey: string): Promise<void> {
    this.#bindings.get(exchange)?.get(routingKey)?.delete(queue);
    return Promise.resolve();
  }

  /**
   * Takes the waiting messages of one task name out of a queue, the others keeping their
   * order; with `moveTo` they are appended to that queue (same priority). Oldest first.
   */
  takeTaskMessages(
    queue: string,
    taskName: string,
    options: TakeTaskMessagesOptions = {},
  ): Promise<TransportMessage[]> {
    const taken: TransportMessage[] = [];
    const buckets = this.#queues.get(queue);
    if (!buckets || options.moveTo === queue) return Promise.resolve(taken);
    for (const [step, bucket] of buckets) {
      const keep: Stored[] = [];
      const move: Stored[] = [];
      for (const s of bucket) (s.message.headers["task"] === taskName ? move : keep).push(s);
      if (!move.length) continue;
      bucket.splice(0, bucket.length, ...keep);
      for (const s of move) taken.push(s.message);
      if (options.moveTo !== undefined) {
        const target = this.#buckets(options.moveTo).get(step)!;
        for (const s of move) {
          target.push({
            message: { ...s.message, deliveryInfo: { exchange: "", routingKey: options.moveTo } },
            queue: options.moveTo,
            redelivered: s.redelivered,
          });
        }
      }
    }
    if (taken.length && options.moveTo !== undefined) this.#wake();
    return Promise.resolve(taken);
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  #take(queues: readonly string[], max: number): Stored[] {
    const out: Stored[] = [];
    const order = queues.length
      ? [
        ...queues.slice(this.#rotation % queues.length),
        ...queues.slice(0, this.#rotation % queues.length),
      ]
      : [];
    for (const step of PRIORITY_STEPS) {
      for (const q of order) {
        const bucket = this.#queues.get(q)?.get(step);
        while (bucket && bucket.length && out.length < max) out.push(bucket.shift()!);
        if (out.length >= max) break;
      }
      if (out.length >= max) break;
    }
    if (out.length) this.#rotation++;
    return out;
  }

  /**
   * Takes up to `max` messages, waiting up to `timeoutMs` for the first. Once `signal` is
   * aborted it returns `[]` and takes nothing (the caller is shutting down).
   */
  async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    if (options.signal?.aborted) return [];
    let taken = this.#take(queues, options.max);
    if (!taken.length && options.timeoutMs > 0 && !options.signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          options.signal?.removeEventListener("abort", done);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, options.timeoutMs);
        options.signal?.addEventListener("abort", done, { once: true });
        this.#waiters.add(done);
      });
      // Aborted while waiting: leave whatever arrived meanwhile in the queue.
      if (options.signal?.aborted) return [];
      taken = this.#take(queues, options.max);
    }
    return taken.map((s) => this.#delivery(s));
  }

  #delivery(stored: Stored): Delivery {
    this.#unacked.add(stored);
    let settled = false;
    const settle = () => {
      if (settled) return false;
      settled = true;
      return this.#unacked.delete(stored);
    };
    const raw = JSON.stringify({
      headers: stored.message.headers,
      properties: stored.message.properties,
      body: Buffer.from(stored.message.body).toString("base64"),
    });
    return {
      message: {
        ...stored.message,
        deliveryInfo: { ...stored.message.deliveryInfo!, redelivered: stored.redelivered },
      },
      queue: stored.queue,
      raw,
      redelivered: stored.redelivered,
      ack: () => {
        settle();
        return Promise.resolve();
      },
      requeue: (position = "front") => {
        if (settle()) this.#putBack(stored, position);
        return Promise.resolve();
      },
      deadLetter: (reason: string) => {
        if (settle()) this.#dead.unshift({ reason, queue: stored.queue, raw, at: Date.now() });
        return Promise.resolve();
      },
    };
  }

  #putBack(stored: Stored, position: "front" | "back"): void {
    const again = { ...stored, redelivered: true };
    const bucket = this.#buckets(stored.queue).get(
      position === "front" ? 0 : priorityStep(stored.message.properties.priority),
    )!;
    if (position === "front") bucket.unshift(again);
    else bucket.push(again);
    this.#wake();
  }

  /** Gives every unsettled delivery back to the front of its queue (a restart's restore). */
  restoreUnacked(): number {
    const all = [...this.#unacked];
    this.#unacked.clear();
    for (const s of all.reverse()) this.#putBack(s, "front");
    return all.length;
  }

  /** Deliveries fetched but not yet settled. */
  get unackedCount(): number {
    return this.#unacked.size;
  }

  /** Sum over the priority buckets. */
  queueSize(queue: string): Promise<number> {
    let n = 0;
    for (const b of this.#queues.get(queue)?.values() ?? []) n += b.length;
    return Promise.resolve(n);
  }

  /** Empties a queue. */
  purge(queue: string): Promise<number> {
    let n = 0;
    for (const b of this.#queues.get(queue)?.values() ?? []) n += b.splice(0).length;
    return Promise.resolve(n);
  }

  /** Dead letters, newest first. */
  deadLetters(limit = 100): Promise<DeadLetter[]> {
    return Promise.resolve(this.#dead.slice(0, limit));
  }

  #subscribers = new Set<
    { exchange: string; pattern: string; onMessage: (m: TransportMessage) => void }
  >();

  /** Delivers to current subscribers of the exchange whose pattern matches (async). */
  broadcast(exchange: string, routingKey: string, message: TransportMessage): Promise<void> {
    const copy = { ...message, deliveryInfo: { exchange, routingKey } };
    for (const sub of this.#subscribers) {
      if (sub.exchange === exchange && topicMatches(sub.pattern, routingKey)) {
        queueMicrotask(() => sub.onMessage(copy));
      }
    }
    return Promise.resolve();
  }

  /** Listens to a fanout exchange. */
  subscribe(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription> {
    const sub = { exchange, pattern, onMessage };
    this.#subscribers.add(sub);
    return Promise.resolve({
      close: () => {
        this.#subscribers.delete(sub);
        return Promise.resolve();
      },
    });
  }

  /** Wakes waiting fetchers; keeps messages (the instance can be reused). */
  close(): Promise<void> {
    this.#wake();
    return Promise.resolve();
  }
}
