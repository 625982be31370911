/**
 * Loading the Celery 5.2 golden samples (shared/fixtures/celery-5.2, beside the repository)
 * for the protocol tests. Not a test file itself.
 *
 * Files are read with our own exact parser, so the `2**53 + 1` of the *-kwargs-unicode
 * samples stays a bigint on both sides of every comparison.
 */

import { Buffer } from "node:buffer";
import type { TransportMessage } from "../../src/protocol/message.ts";
import { parseJson } from "../../src/protocol/json.ts";

/** The fixture directory: `<repo>/../shared/fixtures/celery-5.2/`. */
export const FIXTURE_DIR = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);

/** A fixture file, parsed. */
// deno-lint-ignore no-explicit-any
export type Fixture = Record<string, any>;

/** Every `.json` file name in the fixture directory, sorted. */
export function fixtureNames(): string[] {
  return [...Deno.readDirSync(FIXTURE_DIR)].filter((e) => e.isFile && e.name.endsWith(".json"))
    .map((e) => e.name).sort();
}

const cache = new Map<string, Fixture>();

/** Loads one fixture (`redis-task-basic` or `redis-task-basic.json`). */
export function loadFixture(name: string): Fixture {
  const file = name.endsWith(".json") ? name : `${name}.json`;
  let f = cache.get(file);
  if (!f) {
    f = parseJson(Deno.readTextFileSync(new URL(file, FIXTURE_DIR))) as Fixture;
    cache.set(file, f);
  }
  return structuredClone(f);
}

/** Text of a base64 string (a Redis envelope body). */
export function fromBase64(text: string): string {
  return Buffer.from(text, "base64").toString("utf8");
}

/** UTF-8 bytes of a text. */
export function utf8(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "utf8"));
}

/** Text of UTF-8 bytes. */
export function text(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

/**
 * The transport message of a RabbitMQ sample, as an AMQP broker would hand it over:
 * `content_type`/`content_encoding` lifted out of the basic properties, headers =
 * `application_headers`, the raw body bytes, and the delivery info.
 */
export function amqpMessage(f: Fixture): TransportMessage {
  const { content_type, content_encoding, ...properties } = f.properties;
  const info = f.delivery_info ??
    { exchange: f.published_to.exchange, routing_key: f.published_to.routing_keys[0] };
  const message: TransportMessage = {
    headers: f.headers,
    properties,
    contentType: content_type,
    contentEncoding: content_encoding,
    body: utf8(f.body),
    deliveryInfo: { exchange: info.exchange, routingKey: info.routing_key },
  };
  if (info.redelivered) message.deliveryInfo!.redelivered = true;
  return message;
}

/**
 * Milliseconds since the epoch of a Python ISO time, read independently of our parser
 * (microseconds truncated to milliseconds, as a JS Date keeps them).
 */
export function pythonIsoMs(iso: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(iso);
  if (!m) throw new Error(`not an ISO time: ${iso}`);
  const ms = m[2] ? m[2].slice(0, 3).padEnd(3, "0") : "000";
  return Date.parse(`${m[1]}.${ms}${m[3] || "Z"}`);
}

/** A key list without the given keys (order kept). */
export function keysWithout(value: object, ...drop: string[]): string[] {
  return Object.keys(value).filter((k) => !drop.includes(k));
}
