/**
 * Receiving Celery events, as Celery 5.2's `EventReceiver`: subscribe to `celeryev` (binding
 * key `#` by default), accept a single event or a batch (array), keep a Lamport clock
 * (`adjust` on every event; `task-sent` clocks are not trusted), re-base timestamps onto this
 * machine's `utcoffset`, add `local_received`, and call the handler of the event's type, or
 * the `"*"` handler.
 *
 * @module
 */

import type { Broker, Subscription } from "../brokers/broker.ts";
import { ConfigError } from "../errors.ts";
import { encodeJsonBody, JSON_CONTENT_TYPE, type TransportMessage } from "../protocol/message.ts";
import {
  adjustTimestamp,
  type CeleryEvent,
  decodeEventBody,
  EVENT_EXCHANGE,
  LamportClock,
  localUtcOffset,
} from "./event.ts";

/** A handler of one event. */
export type EventHandler = (event: CeleryEvent) => void;

/** Options of an {@linkcode EventReceiver}. */
export interface EventReceiverOptions {
  /** Handlers by event type; `"*"` gets every event without its own handler. */
  handlers?: Record<string, EventHandler>;
  /** AMQP-style binding key (`#` everything, `worker.#`, `task.#`). @default "#" */
  routingKey?: string;
  /** Exchange. @default "celeryev" */
  exchange?: string;
  /** The Lamport clock to adjust. @default a new clock */
  clock?: LamportClock;
  /** Re-base timestamps onto the local `utcoffset`. @default true */
  localize?: boolean;
  /** Called when a message cannot be decoded or a handler throws. @default ignore */
  onError?: (error: unknown) => void;
}

/**
 * Listens to Celery events on a broker with fanout.
 *
 * @example Decode a batch without a broker subscription
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "../brokers/memory.ts";
 * import { EventReceiver } from "./receiver.ts";
 * const seen: string[] = [];
 * const receiver = new EventReceiver(new MemoryBroker(), {
 *   handlers: { "task-succeeded": (e) => seen.push(`ok ${e.result}`), "*": (e) => seen.push(e.type) },
 * });
 * receiver.process([
 *   { type: "task-started", uuid: "a", clock: 4, hostname: "w", timestamp: 1, utcoffset: 0 },
 *   { type: "task-succeeded", uuid: "a", result: "5", clock: 5, hostname: "w", timestamp: 2, utcoffset: 0 },
 * ]);
 * assert.deepEqual(seen, ["task-started", "ok 5"]);
 * assert.equal(receiver.clock.value, 6);
 * ```
 */
export class EventReceiver {
  /** The Lamport clock adjusted by received events. */
  readonly clock: LamportClock;
  /** Binding key. */
  readonly routingKey: string;
  /** Exchange. */
  readonly exchange: string;
  #broker: Broker;
  #handlers = new Map<string, Set<EventHandler>>();
  #localize: boolean;
  #onError: (error: unknown) => void;
  #subscription?: Subscription;

  /** Builds a receiver; `start()` subscribes. */
  constructor(broker: Broker, options: EventReceiverOptions = {}) {
    this.#broker = broker;
    this.clock = options.clock ?? new LamportClock();
    this.routingKey = options.routingKey ?? "#";
    this.exchange = options.exchange ?? EVENT_EXCHANGE;
    this.#localize = options.localize ?? true;
    this.#onError = options.onError ?? (() => {});
    for (const [type, handler] of Object.entries(options.handlers ?? {})) this.on(type, handler);
  }

  /** Adds a handler for an event type (or `"*"`); returns a function that removes it. */
  on(type: string, handler: EventHandler): () => void {
    let set = this.#handlers.get(type);
    if (!set) this.#handlers.set(type, set = new Set());
    set.add(handler);
    return () => set!.delete(handler);
  }

  /**
   * Subscribes to the exchange.
   *
   * @throws {ConfigError} When the broker has no fanout.
   */
  async start(): Promise<void> {
    if (this.#subscription) return;
    if (!this.#broker.subscribe) {
      throw new ConfigError(
        `Cannot receive events from ${this.#broker.displayUrl}: this broker has no fanout (use redis://, amqp://, sqlite:// or memory://)`,
      );
    }
    this.#subscription = await this.#broker.subscribe(
      this.exchange,
      this.routingKey,
      (message) => this.handleMessage(message),
    );
  }

  /** Unsubscribes. */
  async close(): Promise<void> {
    const sub = this.#subscription;
    this.#subscription = undefined;
    await sub?.close();
  }

  /** Decodes one broker message (an event or a batch) and processes its events. */
  handleMessage(message: TransportMessage): CeleryEvent[] {
    let events: CeleryEvent[];
    try {
      events = decodeEventBody(message);
    } catch (error) {
      this.#onError(error);
      return [];
    }
    return this.process(events);
  }

  /**
   * Processes decoded event bodies (a single event or an array): clock, timestamps,
   * `local_received`, then the handlers. Returns the processed events.
   */
  process(body: CeleryEvent | readonly CeleryEvent[]): CeleryEvent[] {
    const list = Array.isArray(body) ? body : [body as CeleryEvent];
    const out: CeleryEvent[] = [];
    for (const raw of list) {
      const event = this.eventFromMessage(raw);
      out.push(event);
      const handlers = this.#handlers.get(event.type) ?? this.#handlers.get("*");
      for (const handler of handlers ?? []) {
        try {
          handler(event);
        } catch (error) {
          this.#onError(error);
        }
      }
    }
    return out;
  }

  /**
   * Celery's `event_from_message`: a copy of the event with its clock merged (a `task-sent`
   * clock is replaced by `(local or 1) - 1`; a missing clock gets `forward()`), its timestamp
   * re-based, and `local_received` set.
   */
  eventFromMessage(raw: CeleryEvent): CeleryEvent {
    const event: CeleryEvent = { ...raw };
    if (event.type === "task-sent") {
      // Clients never sync their clocks, so theirs cannot be used.
      event.clock = (this.clock.value || 1) - 1;
      this.clock.adjust(event.clock);
    } else if (typeof event.clock === "number") {
      this.clock.adjust(event.clock);
    } else {
      event.clock = this.clock.forward();
    }
    if (
      this.#localize && typeof event.utcoffset === "number" && typeof event.timestamp === "number"
    ) {
      event.timestamp = adjustTimestamp(event.timestamp, event.utcoffset, localUtcOffset());
    }
    event.local_received = Date.now() / 1000;
    return event;
  }
}

/**
 * Asks every worker for a heartbeat now, as `celery events` does on start: a remote-control
 * `heartbeat` **cast** on `celery.pidbox` (no reply). Python workers answer with a
 * `worker-heartbeat` event (`freq: 5`).
 *
 * @throws {ConfigError} When the broker has no fanout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "../brokers/memory.ts";
 * import { decodeJsonBody } from "../protocol/message.ts";
 * import { wakeupWorkers } from "./receiver.ts";
 * const broker = new MemoryBroker();
 * let method = "";
 * const sub = await broker.subscribe("celery.pidbox", "", (m) => method = (decodeJsonBody(m) as { method: string }).method);
 * await wakeupWorkers(broker);
 * await new Promise((r) => setTimeout(r, 0));
 * assert.equal(method, "heartbeat");
 * await sub.close();
 * ```
 */
export async function wakeupWorkers(
  broker: Broker,
  clock: LamportClock = new LamportClock(),
): Promise<void> {
  if (!broker.broadcast) {
    throw new ConfigError(
      `Cannot wake up workers on ${broker.displayUrl}: this broker has no fanout`,
    );
  }
  const message: TransportMessage = {
    headers: { clock: clock.forward(), expires: Date.now() / 1000 + 1 },
    properties: { delivery_mode: 2 },
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: encodeJsonBody({
      method: "heartbeat",
      arguments: {},
      destination: null,
      pattern: null,
      matcher: null,
    }),
  };
  await broker.broadcast("celery.pidbox", "", message);
}
