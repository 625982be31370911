/**
 * src/protocol/redis_envelope.ts: kombu's JSON envelope on Redis, byte-level cases and the
 * envelopes a Python worker would die on.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { DecodeError } from "../../src/errors.ts";
import type { TransportMessage } from "../../src/protocol/message.ts";
import {
  decodeRedisEnvelope,
  encodeRedisEnvelope,
  markRedelivered,
} from "../../src/protocol/redis_envelope.ts";
import { decodeTaskMessage } from "../../src/protocol/task.ts";
import { loadFixture, text, utf8 } from "./_fixtures.ts";

const GOOD_PROPS = { delivery_tag: "t", delivery_info: { exchange: "", routing_key: "q" } };

Deno.test("decodeRedisEnvelope refuses what a Python worker would crash on, keeping the raw text", () => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", "not json", /Cannot parse Redis envelope as JSON/],
    ["truncated", '{"body": "W10=", "properties": {', /as JSON/],
    ["empty", "", /as JSON/],
    ["an array", "[]", /no string 'body'/],
    ["a string", '"x"', /no string 'body'/],
    ["no body", JSON.stringify({ properties: GOOD_PROPS }), /no string 'body'/],
    ["body not a string", JSON.stringify({ body: [1], properties: GOOD_PROPS }), /'body'/],
    ["no properties", JSON.stringify({ body: "W10=" }), /no 'properties'/],
    [
      "no delivery_tag",
      JSON.stringify({ body: "W10=", properties: { delivery_info: GOOD_PROPS.delivery_info } }),
      /delivery_tag/,
    ],
    [
      "no delivery_info",
      JSON.stringify({ body: "W10=", properties: { delivery_tag: "t" } }),
      /delivery_info/,
    ],
    [
      "delivery_info not an object",
      JSON.stringify({ body: "W10=", properties: { delivery_tag: "t", delivery_info: "x" } }),
      /delivery_info/,
    ],
    [
      "delivery_tag not a string",
      JSON.stringify({ body: "W10=", properties: { ...GOOD_PROPS, delivery_tag: 7 } }),
      /delivery_tag/,
    ],
    [
      "unknown body_encoding",
      JSON.stringify({ body: "W10=", properties: { ...GOOD_PROPS, body_encoding: "rot13" } }),
      /body_encoding "rot13" is not supported/,
    ],
  ];
  for (const [what, raw, pattern] of cases) {
    assert.throws(() => decodeRedisEnvelope(raw), (err: unknown) => {
      assert.ok(err instanceof DecodeError, `${what}: ${err}`);
      assert.equal(err.raw, raw, `${what}: carries the raw text`);
      assert.match(err.message, pattern, what);
      return true;
    }, what);
  }
});

Deno.test("decodeRedisEnvelope: a body without body_encoding is the raw text (as kombu reads it)", () => {
  const { message, deliveryTag } = decodeRedisEnvelope(JSON.stringify({
    body: '[[1, "é"], {}, {}]',
    headers: { task: "t", id: "i" },
    "content-type": "application/json",
    properties: { delivery_tag: "x", delivery_info: { exchange: "", routing_key: "q" } },
  }));
  assert.equal(deliveryTag, "x");
  assert.deepEqual(decodeTaskMessage(message).args, [1, "é"]);
  assert.equal(message.contentEncoding, "utf-8", "default");
});

Deno.test("decodeRedisEnvelope: base64 body bytes are kept exactly (binary, compressed)", () => {
  const bytes = new Uint8Array([0, 1, 2, 250, 255, 0x80]);
  const raw = JSON.stringify({
    body: Buffer.from(bytes).toString("base64"),
    "content-encoding": "binary",
    "content-type": "application/data",
    headers: {},
    properties: { ...GOOD_PROPS, body_encoding: "base64" },
  });
  const { message } = decodeRedisEnvelope(raw);
  assert.deepEqual(message.body, bytes);
  assert.equal(message.contentType, "application/data");
  assert.equal(message.contentEncoding, "binary");
  assert.deepEqual(message.properties, {}, "kombu's own keys are lifted out");
  assert.deepEqual(message.deliveryInfo, { exchange: "", routingKey: "q" });
});

Deno.test("encodeRedisEnvelope writes kombu's layout and key order, and round-trips", () => {
  const message: TransportMessage = {
    headers: { task: "t", id: "i" },
    properties: { correlation_id: "i", reply_to: "", delivery_mode: 2, priority: 5 },
    contentType: "application/json",
    contentEncoding: "utf-8",
    body: utf8('[[1], {"é": "☃"}, {}]'),
  };
  const raw = encodeRedisEnvelope(message, {
    exchange: "",
    routingKey: "celery",
    deliveryTag: "tag-1",
  });
  const env = JSON.parse(raw);
  assert.deepEqual(Object.keys(env), [
    "body",
    "content-encoding",
    "content-type",
    "headers",
    "properties",
  ]);
  assert.deepEqual(env.properties, {
    correlation_id: "i",
    reply_to: "",
    delivery_mode: 2,
    delivery_info: { exchange: "", routing_key: "celery" },
    priority: 5,
    body_encoding: "base64",
    delivery_tag: "tag-1",
  });
  assert.deepEqual(Object.keys(env.properties), [
    "correlation_id",
    "reply_to",
    "delivery_mode",
    "delivery_info",
    "priority",
    "body_encoding",
    "delivery_tag",
  ]);
  assert.equal(Buffer.from(env.body, "base64").toString("utf8"), text(message.body));
  const back = decodeRedisEnvelope(raw);
  assert.equal(back.deliveryTag, "tag-1");
  assert.deepEqual(back.message, {
    ...message,
    deliveryInfo: { exchange: "", routingKey: "celery" },
  });
});

Deno.test("encodeRedisEnvelope: priority defaults to 0; a bigint header is written exactly", () => {
  const raw = encodeRedisEnvelope({
    headers: { big: 2n ** 64n },
    properties: {},
    contentType: "application/json",
    contentEncoding: "utf-8",
    body: utf8("[]"),
  }, { exchange: "celeryev", routingKey: "worker.heartbeat", deliveryTag: "t" });
  assert.match(raw, /"big":18446744073709551616/);
  assert.equal(JSON.parse(raw).properties.priority, 0);
});

Deno.test("an envelope we write for a fixture's message reads back the same (events, pidbox)", () => {
  for (const name of ["redis-event-worker-heartbeat", "redis-pidbox-request-ping"]) {
    const f = loadFixture(name);
    const { message, deliveryTag } = decodeRedisEnvelope(f.raw);
    const info = message.deliveryInfo!;
    const raw = encodeRedisEnvelope(message, { ...info, deliveryTag });
    assert.deepEqual(JSON.parse(raw), f.envelope, name);
    assert.deepEqual(Object.keys(JSON.parse(raw).properties), Object.keys(f.envelope.properties));
  }
});

Deno.test("markRedelivered sets kombu's two flags, keeps the rest and the tag", () => {
  const raw = JSON.stringify({
    body: "x",
    headers: { a: 1 },
    properties: { delivery_tag: "t", delivery_info: { exchange: "", routing_key: "q" } },
  });
  const env = JSON.parse(markRedelivered(raw));
  assert.deepEqual(env.headers, { a: 1, redelivered: true });
  assert.deepEqual(env.properties.delivery_info, {
    exchange: "",
    routing_key: "q",
    redelivered: true,
  });
  assert.equal(env.properties.delivery_tag, "t");
  assert.throws(() => markRedelivered("nope"), DecodeError);
  assert.throws(() => markRedelivered("[1]"), DecodeError);
});

Deno.test("envelopes survive V8's mis-read of escaped keys (headers with non-ASCII names)", () => {
  // Teach V8 a key holding a backslash after "k" ...
  JSON.parse('{"k": 1, "\\\\": 2}');
  // ... then read an envelope whose headers have an escaped key after "k".
  const raw = encodeRedisEnvelope({
    headers: {},
    properties: {},
    contentType: "application/json",
    contentEncoding: "utf-8",
    body: utf8("[]"),
  }, { exchange: "", routingKey: "q", deliveryTag: "t" }).replace(
    '"headers":{}',
    '"headers":{"k": 1, "\\u00e9": 2}',
  );
  assert.deepEqual(decodeRedisEnvelope(raw).message.headers, { k: 1, "é": 2 });
  assert.deepEqual(JSON.parse(markRedelivered(raw)).headers, { k: 1, "é": 2, redelivered: true });
});

Deno.test("decodeRedisEnvelope: base64 the strict decoder refuses is read leniently, as before", () => {
  const bytes = new Uint8Array([0, 1, 2, 250, 255, 0x80, 0x3e, 0x3f]);
  const standard = Buffer.from(bytes).toString("base64");
  const variants = [
    standard,
    standard.replace(/=+$/, ""), // no padding
    `${standard.slice(0, 4)}\n${standard.slice(4)}`, // a line break
    standard.replaceAll("+", "-").replaceAll("/", "_"), // URL-safe letters
    `${standard.slice(0, 4)}!${standard.slice(4)}`, // a stray character
    `${standard}==`, // extra padding
  ];
  for (const b64 of variants) {
    const raw = JSON.stringify({
      body: b64,
      headers: {},
      properties: { ...GOOD_PROPS, body_encoding: "base64" },
    });
    const got = decodeRedisEnvelope(raw).message.body;
    assert.deepEqual(got, new Uint8Array(Buffer.from(b64, "base64")), JSON.stringify(b64));
    assert.equal(Object.getPrototypeOf(got), Uint8Array.prototype);
  }
  const msg = {
    headers: {},
    properties: {},
    contentType: "application/data",
    contentEncoding: "binary",
    body: bytes.subarray(2, 7),
  };
  const env = JSON.parse(
    encodeRedisEnvelope(msg, { exchange: "", routingKey: "q", deliveryTag: "t" }),
  );
  assert.equal(env.body, Buffer.from(bytes.subarray(2, 7)).toString("base64"));
});

Deno.test("decodeRedisEnvelope: bodies cut from shared slabs keep their own bytes", () => {
  // Sizes 0…2,000 bytes: small ones share 8 KiB slabs (and run past a slab's end), big
  // ones get their own buffer; a refused strict decode in between must not disturb them.
  const envelope = (b64: string) =>
    JSON.stringify({
      body: b64,
      headers: {},
      properties: { ...GOOD_PROPS, body_encoding: "base64" },
    });
  const expected: Uint8Array[] = [];
  const decoded: Uint8Array[] = [];
  for (let i = 0; i < 300; i++) {
    const size = (i * 37) % 2001;
    const bytes = Uint8Array.from({ length: size }, (_, k) => (i * 7 + k * 13) & 255);
    expected.push(bytes);
    decoded.push(decodeRedisEnvelope(envelope(Buffer.from(bytes).toString("base64"))).message.body);
    if (i % 50 === 0) {
      const lenient = decodeRedisEnvelope(envelope("AAE!C")).message.body;
      assert.deepEqual(lenient, new Uint8Array(Buffer.from("AAE!C", "base64")));
    }
  }
  decoded.forEach((got, i) => assert.deepEqual(got, expected[i], `body ${i}`));
  const small = decoded.filter((b) => b.length > 0 && b.length <= 1024);
  const buffers = new Set(small.map((b) => b.buffer));
  assert.ok(small.length > 100);
  assert.ok(
    buffers.size * 10 < small.length,
    `${small.length} small bodies in ${buffers.size} buffers`,
  );
});

Deno.test("decodeRedisEnvelope: properties lose kombu's keys only; odd keys stay plain data", () => {
  const raw =
    `{"body": "W10=", "headers": {}, "properties": {"__proto__": {"polluted": 1}, "reply_to": "r", "delivery_info": {"exchange": "e", "routing_key": "k", "redelivered": true}, "priority": 3, "body_encoding": "base64", "delivery_tag": "t"}}`;
  const { message, deliveryTag } = decodeRedisEnvelope(raw);
  assert.equal(deliveryTag, "t");
  assert.deepEqual(Object.keys(message.properties), ["__proto__", "reply_to", "priority"]);
  assert.equal(Object.getPrototypeOf(message.properties), Object.prototype);
  assert.equal((message.properties as Record<string, unknown>).polluted, undefined);
  assert.deepEqual(message.deliveryInfo, { exchange: "e", routingKey: "k", redelivered: true });
});
