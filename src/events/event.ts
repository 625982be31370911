/**
 * The shape of Celery events and the small pieces both sides share: the `celeryev` exchange,
 * routing keys (`task-succeeded` ⇒ `task.succeeded`), the Lamport clock, the `utcoffset`
 * field (hours **west** of UTC, floor division), timestamp re-basing, and the JSON body
 * (one event object, or an array of them on `task.multi`).
 *
 * @module
 */

import { DecodeError } from "../errors.ts";
import { decodeJsonBody, JSON_CONTENT_TYPE, type TransportMessage } from "../protocol/message.ts";
import { stringifyJson } from "../protocol/json.ts";

/**
 * Celery's event exchange (`event_exchange`): topic on AMQP, fanout (pub/sub) on Redis.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EVENT_EXCHANGE } from "./event.ts";
 * assert.equal(EVENT_EXCHANGE, "celeryev");
 * ```
 */
export const EVENT_EXCHANGE = "celeryev";

/**
 * One Celery event as it travels: the envelope fields (`hostname`, `utcoffset`, `pid`,
 * `clock`, `timestamp`, `type`) plus the fields of its type. A receiver adds
 * `local_received` (unix seconds).
 */
export interface CeleryEvent {
  /** Event type, e.g. `task-succeeded`. */
  type: string;
  /** Sender node name (`w1@host`, or `gen<pid>@host` for `task-sent`). */
  hostname?: string;
  /** Sender's offset from UTC in hours west (UTC+2 ⇒ -2). */
  utcoffset?: number;
  /** Sender process id. */
  pid?: number;
  /** Sender's Lamport clock when it sent the event. */
  clock?: number;
  /** When it was sent, unix seconds (float). */
  timestamp?: number;
  /** When the receiver got it, unix seconds (added by the receiver). */
  local_received?: number;
  /** Any field of the event type (`uuid`, `result`, `freq`, …). */
  [field: string]: unknown;
}

/**
 * A Lamport clock, as kombu's `LamportClock`: `forward()` for each sent event,
 * `adjust(other)` for each received one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LamportClock } from "./event.ts";
 * const clock = new LamportClock();
 * assert.equal(clock.forward(), 1);
 * assert.equal(clock.adjust(10), 11);
 * assert.equal(clock.adjust(3), 12);
 * ```
 */
export class LamportClock {
  /** The current value. */
  value: number;

  /** Starts at `initial` (default 0). */
  constructor(initial = 0) {
    this.value = initial;
  }

  /** Advances by one (before sending); returns the new value. */
  forward(): number {
    return ++this.value;
  }

  /** Merges a received value: `max(value, other) + 1`; returns the new value. */
  adjust(other: number): number {
    const n = Number(other);
    this.value = Math.max(this.value, Number.isFinite(n) ? n : 0) + 1;
    return this.value;
  }
}

/**
 * The routing key of an event type: `-` becomes `.` (`worker-heartbeat` ⇒
 * `worker.heartbeat`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventRoutingKey } from "./event.ts";
 * assert.equal(eventRoutingKey("worker-elect-ack"), "worker.elect.ack");
 * ```
 */
export function eventRoutingKey(type: string): string {
  return type.replaceAll("-", ".");
}

/**
 * The group of an event type: the part before the first `-` (`task`, `worker`, …).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventGroup } from "./event.ts";
 * assert.equal(eventGroup("task-sent"), "task");
 * ```
 */
export function eventGroup(type: string): string {
  const i = type.indexOf("-");
  return i < 0 ? type : type.slice(0, i);
}

/**
 * This machine's current offset from UTC as Celery writes it in `utcoffset`: hours **west**
 * of UTC, floor-divided (Python's `time.timezone // 3600`, or `altzone` in DST). UTC+2 ⇒ -2,
 * UTC+5:30 ⇒ -6, UTC-3:30 ⇒ 3.
 *
 * @param date The moment whose offset counts (DST). @default now
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { localUtcOffset } from "./event.ts";
 * assert.ok(Number.isInteger(localUtcOffset()));
 * ```
 */
export function localUtcOffset(date: Date = new Date()): number {
  // getTimezoneOffset() is in minutes west of UTC, like Python's time.timezone in seconds.
  return Math.floor(date.getTimezoneOffset() / 60);
}

/**
 * Re-bases a sender's timestamp onto this machine's offset, as Celery's receiver does:
 * `ts - (offset - here) * 3600`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adjustTimestamp } from "./event.ts";
 * assert.equal(adjustTimestamp(10_000, -2, 0), 17_200);
 * ```
 */
export function adjustTimestamp(
  timestamp: number,
  offset: number,
  here: number = localUtcOffset(),
): number {
  return timestamp - (offset - here) * 3600;
}

/** Fields Python writes as floats; an integral JS number is written with `.0` for them. */
const FLOAT_FIELDS = new Set(["freq", "timestamp", "runtime", "loadavg"]);

// deno-lint-ignore no-explicit-any
const JSONWithRaw = JSON as any;

function pyFloat(value: unknown): unknown {
  return typeof value === "number" && Number.isInteger(value)
    ? JSONWithRaw.rawJSON(value.toFixed(1))
    : value;
}

/**
 * Serializes one event or a batch as a UTF-8 JSON body. `freq`, `timestamp`, `runtime` and
 * `loadavg` keep a fractional part (`2.0`, not `2`) so Python reads them as floats, as it
 * wrote them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeEventBody } from "./event.ts";
 * const text = new TextDecoder().decode(encodeEventBody({ type: "worker-heartbeat", freq: 2, loadavg: [0, 0.5, 1] }));
 * assert.equal(text, '{"type":"worker-heartbeat","freq":2.0,"loadavg":[0.0,0.5,1.0]}');
 * ```
 */
export function encodeEventBody(body: CeleryEvent | readonly CeleryEvent[]): Uint8Array {
  const floats = (event: CeleryEvent): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(event)) {
      if (!FLOAT_FIELDS.has(key)) out[key] = value;
      else out[key] = Array.isArray(value) ? value.map(pyFloat) : pyFloat(value);
    }
    return out;
  };
  const value = Array.isArray(body) ? body.map(floats) : floats(body as CeleryEvent);
  return new TextEncoder().encode(stringifyJson(value));
}

/**
 * Builds the transport message of an event (or batch) as Celery publishes it: JSON body,
 * header `{hostname}`, `delivery_mode` 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventMessage } from "./event.ts";
 * const msg = eventMessage({ type: "worker-online", hostname: "w1@h" }, "w1@h");
 * assert.deepEqual([msg.headers, msg.properties], [{ hostname: "w1@h" }, { delivery_mode: 1 }]);
 * ```
 */
export function eventMessage(
  body: CeleryEvent | readonly CeleryEvent[],
  hostname: string,
): TransportMessage {
  return {
    headers: { hostname },
    properties: { delivery_mode: 1 },
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: encodeEventBody(body),
  };
}

/**
 * Decodes an event message body into its events: a single object gives one, an array (the
 * `task.multi` batches) gives each of its objects. Events without a string `type` are left
 * out.
 *
 * @throws {DecodeError} When the body is not JSON, or neither an object nor an array.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeEventBody, eventMessage } from "./event.ts";
 * const msg = eventMessage([{ type: "task-started", uuid: "a" }, { type: "task-succeeded", uuid: "a" }], "w");
 * assert.deepEqual(decodeEventBody(msg).map((e) => e.type), ["task-started", "task-succeeded"]);
 * ```
 */
export function decodeEventBody(message: TransportMessage): CeleryEvent[] {
  const body = decodeJsonBody(message);
  const isEvent = (v: unknown): v is CeleryEvent =>
    v !== null && typeof v === "object" && !Array.isArray(v) &&
    typeof (v as { type?: unknown }).type === "string";
  if (Array.isArray(body)) return body.filter(isEvent);
  if (body !== null && typeof body === "object") return isEvent(body) ? [body] : [];
  throw new DecodeError(
    "Cannot decode event message: the body is neither an event object nor a list of events",
    message.body,
  );
}

/**
 * Task states by task event type, as Celery's monitors map them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TASK_EVENT_STATES } from "./event.ts";
 * assert.equal(TASK_EVENT_STATES["task-received"], "RECEIVED");
 * ```
 */
export const TASK_EVENT_STATES: Readonly<Record<string, string>> = Object.freeze({
  "task-sent": "PENDING",
  "task-received": "RECEIVED",
  "task-started": "STARTED",
  "task-succeeded": "SUCCESS",
  "task-failed": "FAILURE",
  "task-retried": "RETRY",
  "task-revoked": "REVOKED",
  "task-rejected": "REJECTED",
});

/**
 * The task state a task event leads to: the mapping above, or the upper-cased subject of any
 * other `task-foo` event (`FOO`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { taskStateOf } from "./event.ts";
 * assert.equal(taskStateOf("task-succeeded"), "SUCCESS");
 * assert.equal(taskStateOf("task-cancelled"), "CANCELLED");
 * ```
 */
export function taskStateOf(type: string): string {
  return TASK_EVENT_STATES[type] ?? type.slice(type.indexOf("-") + 1).toUpperCase();
}
