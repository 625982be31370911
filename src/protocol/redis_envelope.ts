/**
 * kombu's Redis envelope: the JSON object that sits in a Redis list (or is PUBLISHed) for
 * every message, with a base64 body and `delivery_tag`/`delivery_info` in `properties`.
 * A Python worker exits on an envelope without them, so {@linkcode encodeRedisEnvelope}
 * always writes both.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { DecodeError } from "../errors.ts";
import { parseJsonFast, stringifyJson } from "./json.ts";
import type { DeliveryInfo, TransportMessage } from "./message.ts";

// The ES2026 base64 codec of `Uint8Array` (V8 ≥ 13.7, Deno ≥ 2.4), when the runtime has it:
// 3–4× faster than Node's `Buffer` through Deno's compat layer, and no copy is needed to get
// a plain `Uint8Array`.
interface Base64Codec {
  fromBase64?: (text: string) => Uint8Array;
}
interface Base64Bytes {
  toBase64?: () => string;
  setFromBase64?: (text: string) => { read: number; written: number };
}
const NATIVE_FROM_BASE64 = typeof (Uint8Array as Base64Codec).fromBase64 === "function";
const NATIVE_TO_BASE64 = typeof (Uint8Array.prototype as Base64Bytes).toBase64 === "function";
const NATIVE_SET_FROM_BASE64 =
  typeof (Uint8Array.prototype as Base64Bytes).setFromBase64 === "function";
const UTF8_ENCODER = new TextEncoder();

/**
 * Small bodies are decoded into views of shared 8 KiB slabs, as Node's `Buffer` pool does:
 * a fresh `ArrayBuffer` costs about 0.7 µs in V8, more than decoding a typical task body
 * (0.2 µs). A slab lives as long as any body cut from it, so a body may keep up to 8 KiB
 * alive; bodies above 1 KiB get their own buffer.
 */
const SLAB_BYTES = 8192;
const SLAB_BODY_MAX = 1024;
let slab: Uint8Array | undefined;
let slabUsed = 0;

/** Decodes into the current slab; `undefined` when the text is too long or not strict base64. */
function decodeBase64IntoSlab(text: string): Uint8Array | undefined {
  const most = Math.ceil(text.length / 4) * 3;
  if (most > SLAB_BODY_MAX) return undefined;
  if (!slab || SLAB_BYTES - slabUsed < most) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  try {
    const free = slab.subarray(slabUsed) as Base64Bytes;
    const { read, written } = free.setFromBase64!(text);
    if (read !== text.length) return undefined;
    const bytes = slab.subarray(slabUsed, slabUsed + written);
    slabUsed += written;
    return bytes;
  } catch {
    return undefined;
  }
}

/**
 * Standard base64 to bytes. Text the strict native decoder refuses (stray characters,
 * URL-safe letters, padding in the middle) goes to Node's lenient decoder, as before.
 */
function decodeBase64(text: string): Uint8Array {
  if (NATIVE_SET_FROM_BASE64) {
    const bytes = decodeBase64IntoSlab(text);
    if (bytes) return bytes;
  }
  if (NATIVE_FROM_BASE64) {
    try {
      return (Uint8Array as Base64Codec).fromBase64!(text);
    } catch {
      // fall through
    }
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

function encodeBase64(bytes: Uint8Array): string {
  if (NATIVE_TO_BASE64) return (bytes as Base64Bytes).toBase64!();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** Where and under which tag an envelope is published. */
export interface EnvelopeRoute {
  /** Exchange name (`""` for direct-to-queue). */
  exchange: string;
  /** Routing key (the queue name for the default exchange). */
  routingKey: string;
  /** kombu delivery tag, a fresh UUID per publish. */
  deliveryTag: string;
}

/** A decoded envelope: the message plus kombu's bookkeeping. */
export interface DecodedEnvelope {
  /** The transport message, `deliveryInfo` filled from the envelope. */
  message: TransportMessage;
  /** kombu delivery tag (key of the `unacked` hash). */
  deliveryTag: string;
}

/**
 * Writes a message as a kombu Redis envelope (base64 body).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeRedisEnvelope, decodeRedisEnvelope } from "./redis_envelope.ts";
 * const raw = encodeRedisEnvelope(
 *   { headers: { a: 1 }, properties: {}, contentType: "application/json", contentEncoding: "utf-8", body: new TextEncoder().encode("[]") },
 *   { exchange: "", routingKey: "celery", deliveryTag: "tag1" },
 * );
 * assert.equal(decodeRedisEnvelope(raw).deliveryTag, "tag1");
 * ```
 */
export function encodeRedisEnvelope(message: TransportMessage, route: EnvelopeRoute): string {
  const body = encodeBase64(message.body);
  // kombu's order: the message's own properties, then delivery_info, priority, body_encoding, tag.
  const { priority, ...own } = message.properties;
  const properties: Record<string, unknown> = {
    ...own,
    delivery_info: { exchange: route.exchange, routing_key: route.routingKey },
    priority: priority ?? 0,
    body_encoding: "base64",
    delivery_tag: route.deliveryTag,
  };
  const envelope = {
    body,
    "content-encoding": message.contentEncoding,
    "content-type": message.contentType,
    headers: message.headers,
    properties,
  };
  return stringifyJson(envelope);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * Reads a kombu Redis envelope. The envelope itself is read with `JSON.parse` (numbers as
 * JS numbers; see {@linkcode parseJsonFast}): the task arguments live in the (base64) body,
 * which `decodeJsonBody` reads with big integers exact.
 *
 * @throws {DecodeError} When the text is not an envelope or lacks `properties.delivery_tag`
 *   or `properties.delivery_info`; the error carries the raw text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecodeError } from "../errors.ts";
 * import { decodeRedisEnvelope } from "./redis_envelope.ts";
 * assert.throws(() => decodeRedisEnvelope("not json"), DecodeError);
 * ```
 */
export function decodeRedisEnvelope(raw: string): DecodedEnvelope {
  let env: unknown;
  try {
    env = parseJsonFast(raw);
  } catch (cause) {
    throw new DecodeError("Cannot parse Redis envelope as JSON", raw, { cause });
  }
  if (!isObject(env) || typeof env.body !== "string") {
    throw new DecodeError("Cannot decode Redis envelope: it has no string 'body'", raw);
  }
  if (!isObject(env.properties)) {
    throw new DecodeError("Cannot decode Redis envelope: it has no 'properties'", raw);
  }
  // A rest copy without kombu's bookkeeping (copying then `delete`ing would turn the object
  // into a slow dictionary-mode one).
  const { delivery_tag: tag, delivery_info: info, body_encoding: encoding, ...props } =
    env.properties;
  if (typeof tag !== "string" || !isObject(info)) {
    throw new DecodeError(
      "Cannot decode Redis envelope: 'properties.delivery_tag' or 'properties.delivery_info' is missing",
      raw,
    );
  }
  let body: Uint8Array;
  if (encoding === "base64") body = decodeBase64(env.body);
  else if (encoding === undefined || encoding === null) body = UTF8_ENCODER.encode(env.body);
  else {
    throw new DecodeError(
      `Cannot decode Redis envelope: body_encoding "${encoding}" is not supported`,
      raw,
    );
  }
  const deliveryInfo: DeliveryInfo = {
    exchange: typeof info.exchange === "string" ? info.exchange : "",
    routingKey: typeof info.routing_key === "string" ? info.routing_key : "",
  };
  if (info.redelivered === true) deliveryInfo.redelivered = true;
  return {
    deliveryTag: tag,
    message: {
      headers: isObject(env.headers) ? env.headers : {},
      properties: props,
      contentType: typeof env["content-type"] === "string"
        ? env["content-type"]
        : "application/json",
      contentEncoding: typeof env["content-encoding"] === "string"
        ? env["content-encoding"]
        : "utf-8",
      body,
      deliveryInfo,
    },
  };
}

/**
 * Marks an envelope as redelivered, as kombu's restore does (`headers.redelivered` and
 * `properties.delivery_info.redelivered`), keeping everything else, the tag included.
 *
 * @throws {DecodeError} When the text is not a JSON object.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { markRedelivered } from "./redis_envelope.ts";
 * const out = JSON.parse(markRedelivered('{"headers":{},"properties":{"delivery_info":{}}}'));
 * assert.equal(out.headers.redelivered, true);
 * ```
 */
export function markRedelivered(raw: string): string {
  let env: unknown;
  try {
    env = parseJsonFast(raw);
  } catch (cause) {
    throw new DecodeError("Cannot parse Redis envelope as JSON", raw, { cause });
  }
  if (!isObject(env)) throw new DecodeError("Cannot decode Redis envelope: not an object", raw);
  const headers = isObject(env.headers) ? env.headers : (env.headers = {});
  (headers as Record<string, unknown>).redelivered = true;
  const props = isObject(env.properties) ? env.properties : (env.properties = {});
  const info = isObject((props as Record<string, unknown>).delivery_info)
    ? (props as Record<string, unknown>).delivery_info as Record<string, unknown>
    : ((props as Record<string, unknown>).delivery_info = {}) as Record<string, unknown>;
  info.redelivered = true;
  return stringifyJson(env);
}
