/**
 * The transport-neutral message: what every broker carries (Celery's headers, AMQP basic
 * properties, a serialized body, and where it was published). Brokers turn it into their
 * own wire form (a kombu JSON envelope on Redis, an AMQP frame on RabbitMQ).
 *
 * @module
 */

import { DecodeError } from "../errors.ts";
import { nodeBuiltin } from "../node_builtin.ts";
import { parseJson, stringifyJson } from "./json.ts";

/** Exchange and routing key a message was (or is to be) published with. */
export interface DeliveryInfo {
  /** Exchange name; `""` is the default exchange (routing key = queue name). */
  exchange: string;
  /** Routing key. */
  routingKey: string;
  /** Set by the broker when the message is delivered again. */
  redelivered?: boolean;
}

/** A message as every broker carries it. */
export interface TransportMessage {
  /** Celery headers (AMQP `application_headers`). */
  headers: Record<string, unknown>;
  /**
   * AMQP basic properties other than content type and encoding, in kombu's snake_case:
   * `correlation_id`, `reply_to`, `delivery_mode`, `priority`, `expiration`, …
   */
  properties: Record<string, unknown>;
  /** MIME type of the body, `application/json` for Celery's default serializer. */
  contentType: string;
  /** Text encoding of the body, `utf-8`. */
  contentEncoding: string;
  /** The serialized (and possibly compressed) body bytes. */
  body: Uint8Array;
  /** Where it was published; filled in by the broker on delivery. */
  deliveryInfo?: DeliveryInfo;
}

// Shared codecs (a TextEncoder/TextDecoder per call costs an allocation each). `ignoreBOM`
// keeps a leading U+FEFF in the text, as Node's Buffer did, so such a body stays a JSON
// error (as in Python's `json.loads`) instead of being silently accepted.
const UTF8_ENCODER = new TextEncoder();
const UTF8_DECODER = new TextDecoder("utf-8", { ignoreBOM: true });

/** The content type of Celery's JSON serializer. */
export const JSON_CONTENT_TYPE = "application/json";

/**
 * Serializes a value as a UTF-8 JSON body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeJsonBody } from "./message.ts";
 * assert.equal(new TextDecoder().decode(encodeJsonBody([1])), "[1]");
 * ```
 */
export function encodeJsonBody(value: unknown): Uint8Array {
  return UTF8_ENCODER.encode(stringifyJson(value));
}

// node:zlib loads on the first compressed body only (see node_builtin.ts).
const DECOMPRESSORS: Record<string, (data: Uint8Array) => Uint8Array> = {
  // kombu's "gzip" is a zlib (RFC 1950) stream.
  "application/x-gzip": (data) => nodeBuiltin("node:zlib").inflateSync(data),
  "zlib": (data) => nodeBuiltin("node:zlib").inflateSync(data),
  "application/x-brotli": (data) => nodeBuiltin("node:zlib").brotliDecompressSync(data),
};

/**
 * Decodes a message body: undoes `compression` (header), checks the content type is JSON
 * and parses it (integers above 2^53 become `bigint`).
 *
 * @throws {DecodeError} When the body is compressed with an unknown method, is not JSON
 *   content, or does not parse; the error carries the raw body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeJsonBody, encodeJsonBody } from "./message.ts";
 * const body = encodeJsonBody({ a: 1 });
 * assert.deepEqual(decodeJsonBody({ headers: {}, properties: {}, contentType: "application/json", contentEncoding: "utf-8", body }), { a: 1 });
 * ```
 */
export function decodeJsonBody(message: TransportMessage): unknown {
  let bytes = message.body;
  const compression = message.headers["compression"];
  if (typeof compression === "string" && compression) {
    const decompress = DECOMPRESSORS[compression];
    if (!decompress) {
      throw new DecodeError(
        `Cannot decompress message body: compression "${compression}" is not supported`,
        bytes,
      );
    }
    try {
      bytes = decompress(bytes);
    } catch (cause) {
      throw new DecodeError(`Cannot decompress message body with "${compression}"`, bytes, {
        cause,
      });
    }
  }
  if (message.contentType !== JSON_CONTENT_TYPE) {
    throw new DecodeError(
      `Cannot decode message body of content type "${message.contentType}": only "${JSON_CONTENT_TYPE}" is accepted`,
      bytes,
    );
  }
  const text = UTF8_DECODER.decode(bytes);
  try {
    return parseJson(text);
  } catch (cause) {
    throw new DecodeError("Cannot parse message body as JSON", bytes, { cause });
  }
}
