/**
 * {@linkcode TransportMessage} ↔ AMQP basic.publish / basic.deliver, as kombu maps them:
 * the body is the raw bytes (UTF-8 JSON for Celery, no envelope, no base64), `headers` are
 * the `application_headers` table, and the snake_case properties (`correlation_id`,
 * `reply_to`, `delivery_mode`, `priority`, `expiration`, …) are AMQP basic properties.
 * Properties AMQP has no field for (kombu leaks some on Redis) are dropped.
 *
 * Header values go through the AMQP field-table types: strings `S`, booleans `t`, null `V`,
 * integers the smallest signed type, other numbers `d`, lists `A`, objects `F`. A `bigint`
 * is sent as a number (exact up to 2^53); `undefined` inside a list becomes null.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { DeliveryInfo, TransportMessage } from "../../protocol/message.ts";

/** The snake_case properties that map to AMQP basic properties (amqplib's camelCase). */
const PROPERTY_NAMES: Record<string, string> = {
  delivery_mode: "deliveryMode",
  priority: "priority",
  correlation_id: "correlationId",
  reply_to: "replyTo",
  expiration: "expiration",
  message_id: "messageId",
  timestamp: "timestamp",
  type: "type",
  user_id: "userId",
  app_id: "appId",
};

/** amqplib's publish options (only what celeriac sets). */
export interface PublishOptions {
  /** MIME type. */
  contentType?: string;
  /** Body encoding. */
  contentEncoding?: string;
  /** `application_headers`. */
  headers: Record<string, unknown>;
  /** 1 transient, 2 persistent. */
  deliveryMode?: number;
  /** 0..255. */
  priority?: number;
  /** Correlation id. */
  correlationId?: string;
  /** Reply queue. */
  replyTo?: string;
  /** Per-message TTL, milliseconds as a string. */
  expiration?: string;
  /** Any other basic property. */
  [property: string]: unknown;
}

/** The parts of an amqplib message that the codec reads. */
export interface AmqpMessage {
  /** Delivery fields. */
  fields: {
    deliveryTag: number;
    redelivered: boolean;
    exchange: string;
    routingKey: string;
  };
  /** Basic properties (camelCase). */
  properties: Record<string, unknown> & { headers?: Record<string, unknown> };
  /** The body. */
  content: Uint8Array;
}

function toFieldValue(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "function" || typeof value === "symbol") return null;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) {
    return Buffer.isBuffer(value)
      ? value
      : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  if (Array.isArray(value)) return value.map(toFieldValue);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toFieldValue(v);
    return out;
  }
  return value;
}

function fromFieldValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromFieldValue);
  if (value instanceof Uint8Array) return value;
  if (value !== null && typeof value === "object") {
    const tagged = value as { "!"?: string; value?: unknown };
    if (tagged["!"] === "timestamp") return tagged.value;
    if (tagged["!"] === "decimal") {
      const d = tagged.value as { places: number; digits: number };
      return d.digits / 10 ** d.places;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromFieldValue(v);
    return out;
  }
  return value;
}

/**
 * The body and amqplib publish options for a message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toPublish } from "./codec.ts";
 * import { encodeTaskMessage } from "../../protocol/task.ts";
 * const { options } = toPublish(encodeTaskMessage({ id: "t1", task: "tasks.add", origin: "o" }, new Date()));
 * assert.equal(options.correlationId, "t1");
 * assert.equal(options.deliveryMode, 2);
 * assert.equal(options.contentType, "application/json");
 * assert.equal(options.replyTo, undefined); // "" is not sent
 * ```
 */
export function toPublish(message: TransportMessage): { body: Buffer; options: PublishOptions } {
  const options: PublishOptions = {
    contentType: message.contentType || undefined,
    contentEncoding: message.contentEncoding || undefined,
    headers: toFieldValue(message.headers ?? {}) as Record<string, unknown>,
  };
  for (const [name, value] of Object.entries(message.properties ?? {})) {
    const amqpName = PROPERTY_NAMES[name];
    if (!amqpName || value === null || value === undefined || value === "") continue;
    options[amqpName] = name === "expiration" ? String(value) : value;
  }
  const b = message.body;
  const body = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { body, options };
}

/**
 * A delivered (or fetched) AMQP message as a {@linkcode TransportMessage}: properties back
 * in kombu's snake_case, `deliveryInfo` from the delivery fields.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromAmqp } from "./codec.ts";
 * const m = fromAmqp({
 *   fields: { deliveryTag: 1, redelivered: false, exchange: "", routingKey: "celery" },
 *   properties: { contentType: "application/json", contentEncoding: "utf-8", correlationId: "t1", priority: 0, headers: { id: "t1" } },
 *   content: new TextEncoder().encode("[[], {}, {}]"),
 * });
 * assert.deepEqual(m.properties, { correlation_id: "t1", priority: 0 });
 * assert.deepEqual(m.deliveryInfo, { exchange: "", routingKey: "celery", redelivered: false });
 * ```
 */
export function fromAmqp(msg: AmqpMessage): TransportMessage {
  const props = msg.properties ?? {};
  const properties: Record<string, unknown> = {};
  for (const [name, amqpName] of Object.entries(PROPERTY_NAMES)) {
    const value = props[amqpName];
    if (value !== undefined && value !== null) properties[name] = value;
  }
  const deliveryInfo: DeliveryInfo = {
    exchange: msg.fields.exchange,
    routingKey: msg.fields.routingKey,
    redelivered: msg.fields.redelivered,
  };
  return {
    headers: (fromFieldValue(props.headers ?? {}) ?? {}) as Record<string, unknown>,
    properties,
    contentType: typeof props.contentType === "string" ? props.contentType : "",
    contentEncoding: typeof props.contentEncoding === "string" ? props.contentEncoding : "",
    body: msg.content,
    deliveryInfo,
  };
}

/**
 * The body as text for dead letters and logs: UTF-8 when it decodes, else base64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bodyText } from "./codec.ts";
 * assert.equal(bodyText(new TextEncoder().encode('["dl"]')), '["dl"]');
 * assert.equal(bodyText(new Uint8Array([0xff, 0xfe])), "//4=");
 * ```
 */
export function bodyText(body: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("base64");
  }
}
