/**
 * Sending Celery events on a broker's fanout (`celeryev`), as Celery 5.2's `EventDispatcher`:
 * every event gets the envelope `hostname, utcoffset, pid, clock, …fields, timestamp, type`;
 * buffered groups (a worker buffers `task`) go out as a JSON array on `<group>.multi`
 * (flushed on the next tick of the event loop or at 24 events); other events go singly on
 * their own routing key (`worker-heartbeat` ⇒ `worker.heartbeat`), after whatever was
 * buffered, so the wire stays in clock order.
 *
 * Groups: with `groups: null` every event is sent; otherwise only events whose group is in
 * the set. A worker starts with `["worker"]` and adds `"task"` for `-E` (or when remote
 * control asks: {@linkcode EventDispatcher.enableTaskEvents}).
 *
 * @module
 */

import type { Broker } from "../brokers/broker.ts";
import type { TransportMessage } from "../protocol/message.ts";
import {
  type CeleryEvent,
  EVENT_EXCHANGE,
  eventGroup,
  eventMessage,
  eventRoutingKey,
  LamportClock,
  localUtcOffset,
} from "./event.ts";

/** Options of an {@linkcode EventDispatcher}. */
export interface EventDispatcherOptions {
  /** Node name in every event and in the message header (`w1@host`). */
  hostname: string;
  /** Groups to send (`worker`, `task`, …); `null` sends every group. @default null */
  groups?: Iterable<string> | null;
  /** Groups whose events are batched on `<group>.multi`. @default [] */
  bufferGroups?: Iterable<string>;
  /** Batch size that forces a flush. @default 24 */
  bufferLimit?: number;
  /** The Lamport clock to forward (share it with remote control). @default a new clock */
  clock?: LamportClock;
  /** Process id in every event. @default Deno.pid */
  pid?: number;
  /** Exchange. @default "celeryev" */
  exchange?: string;
  /** Publishing is off (every send is a no-op). @default false */
  disabled?: boolean;
  /** Called when a publish fails (the event is dropped). @default ignore */
  onError?: (error: unknown, events: CeleryEvent[]) => void;
}

/**
 * Publishes Celery events on a broker that supports fanout (`broadcast`). A broker without
 * fanout gives a disabled dispatcher: `enabled` is false and sends do nothing.
 *
 * @example Send a worker event and a buffered task batch on the memory broker
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "../brokers/memory.ts";
 * import { decodeEventBody } from "./event.ts";
 * import { EventDispatcher } from "./dispatcher.ts";
 *
 * const broker = new MemoryBroker();
 * const seen: string[] = [];
 * const sub = await broker.subscribe("celeryev", "#", (m) =>
 *   seen.push(`${m.deliveryInfo!.routingKey}: ${decodeEventBody(m).map((e) => e.type)}`));
 * const events = new EventDispatcher(broker, { hostname: "w1@doc", bufferGroups: ["task"] });
 * events.send("worker-online", { freq: 2 });
 * events.send("task-received", { uuid: "a" });
 * events.send("task-started", { uuid: "a" });
 * await events.flush();
 * await new Promise((r) => setTimeout(r, 0));
 * assert.deepEqual(seen, ["worker.online: worker-online", "task.multi: task-received,task-started"]);
 * await events.close();
 * await sub.close();
 * ```
 */
export class EventDispatcher {
  /** Node name of the events. */
  readonly hostname: string;
  /** The Lamport clock forwarded for each event. */
  readonly clock: LamportClock;
  /** Process id of the events. */
  readonly pid: number;
  /** Exchange the events go to. */
  readonly exchange: string;
  #broker: Broker;
  #groups: Set<string> | null;
  #bufferGroups: Set<string>;
  #bufferLimit: number;
  #buffers = new Map<string, CeleryEvent[]>();
  #flushTimer?: ReturnType<typeof setTimeout>;
  #chain: Promise<void> = Promise.resolve();
  #disabled: boolean;
  #closed = false;
  #onError: (error: unknown, events: CeleryEvent[]) => void;

  /**
   * @throws {RangeError} When `bufferLimit` is not a positive integer.
   */
  constructor(broker: Broker, options: EventDispatcherOptions) {
    this.#broker = broker;
    this.hostname = options.hostname;
    this.clock = options.clock ?? new LamportClock();
    this.pid = options.pid ?? Deno.pid;
    this.exchange = options.exchange ?? EVENT_EXCHANGE;
    this.#groups = options.groups === null || options.groups === undefined
      ? null
      : new Set(options.groups);
    this.#bufferGroups = new Set(options.bufferGroups ?? []);
    this.#bufferLimit = options.bufferLimit ?? 24;
    if (!Number.isInteger(this.#bufferLimit) || this.#bufferLimit < 1) {
      throw new RangeError(
        `Cannot create event dispatcher: bufferLimit must be a positive integer, got ${this.#bufferLimit}`,
      );
    }
    this.#disabled = options.disabled ?? false;
    this.#onError = options.onError ?? (() => {});
  }

  /** Whether events can go out at all: the broker has fanout, and the dispatcher is open. */
  get enabled(): boolean {
    return !this.#disabled && !this.#closed && typeof this.#broker.broadcast === "function";
  }

  /** The groups sent, or `null` for every group. */
  get groups(): ReadonlySet<string> | null {
    return this.#groups;
  }

  /** Whether a group's events are sent. */
  sends(group: string): boolean {
    return this.enabled && (this.#groups === null || this.#groups.has(group));
  }

  /** Whether task events are sent (`-E`, or enabled by remote control). */
  get taskEventsEnabled(): boolean {
    return this.sends("task");
  }

  /**
   * Starts sending task events (remote control's `enable_events`). Returns false when they
   * were already on.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MemoryBroker } from "../brokers/memory.ts";
   * import { EventDispatcher } from "./dispatcher.ts";
   * const events = new EventDispatcher(new MemoryBroker(), { hostname: "w@h", groups: ["worker"] });
   * assert.equal(events.enableTaskEvents(), true);
   * assert.equal(events.enableTaskEvents(), false);
   * assert.equal(events.taskEventsEnabled, true);
   * ```
   */
  enableTaskEvents(): boolean {
    if (this.#groups === null || this.#groups.has("task")) return false;
    this.#groups.add("task");
    return true;
  }

  /**
   * Stops sending task events (remote control's `disable_events`). Returns false when they
   * were already off. A dispatcher sending every group switches to every group but `task`
   * (`worker` only, as Celery).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MemoryBroker } from "../brokers/memory.ts";
   * import { EventDispatcher } from "./dispatcher.ts";
   * const events = new EventDispatcher(new MemoryBroker(), { hostname: "w@h" });
   * assert.equal(events.disableTaskEvents(), true);
   * assert.equal(events.taskEventsEnabled, false);
   * assert.equal(events.sends("worker"), true);
   * ```
   */
  disableTaskEvents(): boolean {
    if (this.#groups === null) {
      this.#groups = new Set(["worker"]);
      return true;
    }
    return this.#groups.delete("task");
  }

  /**
   * Builds an event with the envelope fields, in Celery's order: `hostname, utcoffset, pid,
   * clock, …fields, timestamp, type`. Forwards the clock (unless `fields.clock` is given).
   */
  makeEvent(type: string, fields: Record<string, unknown> = {}): CeleryEvent {
    const { timestamp, clock, ...rest } = fields;
    return {
      hostname: this.hostname,
      utcoffset: localUtcOffset(),
      pid: this.pid,
      clock: typeof clock === "number" ? clock : this.clock.forward(),
      ...rest,
      timestamp: typeof timestamp === "number" ? timestamp : Date.now() / 1000,
      type,
    };
  }

  /**
   * Sends an event, if its group is sent: buffered groups are batched (published on the
   * next tick or at `bufferLimit` events), others are published at once. Returns the event,
   * or `undefined` when it was not sent. Publishing errors go to `onError`, never to the
   * caller.
   */
  send(type: string, fields: Record<string, unknown> = {}): CeleryEvent | undefined {
    const group = eventGroup(type);
    if (!this.sends(group)) return undefined;
    const event = this.makeEvent(type, fields);
    if (this.#bufferGroups.has(group)) {
      let buffer = this.#buffers.get(group);
      if (!buffer) this.#buffers.set(group, buffer = []);
      buffer.push(event);
      if (buffer.length >= this.#bufferLimit) void this.flush();
      else this.#flushTimer ??= setTimeout(() => void this.flush(), 0);
    } else {
      // Buffered events were sent first (their clocks are lower): keep the wire in order.
      void this.flush();
      this.#enqueue(eventRoutingKey(type), event, [event]);
    }
    return event;
  }

  /**
   * Publishes one event now, without buffering and regardless of groups (Celery's
   * `publish`, used for `task-sent`). Resolves when it was published.
   */
  async publish(type: string, fields: Record<string, unknown> = {}): Promise<CeleryEvent> {
    const event = this.makeEvent(type, fields);
    if (this.enabled) {
      void this.flush();
      this.#enqueue(eventRoutingKey(type), event, [event]);
      await this.#chain;
    }
    return event;
  }

  #enqueue(routingKey: string, body: CeleryEvent | CeleryEvent[], events: CeleryEvent[]): void {
    const message = eventMessage(body, this.hostname);
    this.#chain = this.#chain.then(() =>
      this.#broker.broadcast!(this.exchange, routingKey, message).catch((error) =>
        this.#onError(error, events)
      )
    );
  }

  /** Publishes the buffered batches now; resolves when everything sent so far is out. */
  flush(): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const [group, buffer] of this.#buffers) {
      if (!buffer.length) continue;
      const batch = buffer.splice(0);
      if (this.#broker.broadcast) this.#enqueue(`${group}.multi`, batch, batch);
    }
    return this.#chain;
  }

  /** Flushes, then stops: later sends do nothing. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}

/**
 * The fields of a `task-sent` event for a task message published to a queue (Celery's
 * `task_send_sent_event`), in Celery's order: `uuid, root_id, parent_id, name, args, kwargs,
 * retries, eta, expires, queue, exchange, routing_key`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeTaskMessage } from "../protocol/task.ts";
 * import { taskSentFields } from "./dispatcher.ts";
 * const msg = encodeTaskMessage({ id: "t1", task: "tasks.add", args: [2, 3], origin: "gen1@h" }, new Date());
 * const fields = taskSentFields(msg, "celery");
 * assert.deepEqual([fields.name, fields.args, fields.routing_key], ["tasks.add", "(2, 3)", "celery"]);
 * ```
 */
export function taskSentFields(
  message: TransportMessage,
  queue: string,
): Record<string, unknown> {
  const h = message.headers;
  return {
    uuid: h["id"],
    root_id: h["root_id"] ?? null,
    parent_id: h["parent_id"] ?? null,
    name: h["task"],
    args: h["argsrepr"] ?? null,
    kwargs: h["kwargsrepr"] ?? null,
    retries: h["retries"] ?? 0,
    eta: h["eta"] ?? null,
    expires: h["expires"] ?? null,
    queue,
    exchange: "",
    routing_key: queue,
  };
}
