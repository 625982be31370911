/**
 * src/protocol/message.ts: body encoding and decoding (content type, compression, bytes).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { brotliCompressSync, deflateSync } from "node:zlib";
import { DecodeError } from "../../src/errors.ts";
import {
  decodeJsonBody,
  encodeJsonBody,
  JSON_CONTENT_TYPE,
  type TransportMessage,
} from "../../src/protocol/message.ts";
import { amqpMessage, loadFixture, text, utf8 } from "./_fixtures.ts";

function body(bytes: Uint8Array, headers: Record<string, unknown> = {}): TransportMessage {
  return {
    headers,
    properties: {},
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: bytes,
  };
}

Deno.test("encodeJsonBody: UTF-8 JSON, bigints exact", () => {
  assert.equal(JSON_CONTENT_TYPE, "application/json");
  const bytes = encodeJsonBody([[2n ** 53n + 1n], { name: "Zoë ☃" }, null]);
  assert.equal(text(bytes), '[[9007199254740993],{"name":"Zoë ☃"},null]');
  assert.deepEqual(decodeJsonBody(body(bytes)), [[9007199254740993n], { name: "Zoë ☃" }, null]);
});

Deno.test("decodeJsonBody reads Python's bytes: \\u escapes, big integers, NaN", () => {
  const f = loadFixture("amqp-task-kwargs-unicode");
  const value = decodeJsonBody(amqpMessage(f)) as [unknown, Record<string, unknown>, unknown];
  assert.equal(value[1].name, "Zoë ☃");
  assert.equal(value[1].big, 9007199254740993n);
  // json.dumps(float("nan")) in Python: allow_nan is the default.
  assert.deepEqual(decodeJsonBody(body(utf8("[[NaN, Infinity, -Infinity], {}, {}]"))), [
    [NaN, Infinity, -Infinity],
    {},
    {},
  ]);
});

Deno.test("decodeJsonBody: other content types are refused with the raw bytes", () => {
  for (const contentType of ["application/x-python-serialize", "application/x-yaml", ""]) {
    const msg = { ...body(utf8("[]")), contentType };
    assert.throws(() => decodeJsonBody(msg), (err: unknown) => {
      assert.ok(err instanceof DecodeError);
      assert.match(err.message, /only "application\/json" is accepted/);
      assert.deepEqual(err.raw, msg.body);
      return true;
    });
  }
});

Deno.test("decodeJsonBody: unparsable JSON keeps the bytes and the cause", () => {
  for (const t of ["", "{", "[1,]", "[1] x", "{'a': 1}", "nan", "[NaN"]) {
    const msg = body(utf8(t));
    assert.throws(() => decodeJsonBody(msg), (err: unknown) => {
      assert.ok(err instanceof DecodeError, t);
      assert.match(err.message, /Cannot parse message body as JSON/);
      assert.deepEqual(err.raw, msg.body);
      assert.ok(err.cause instanceof SyntaxError, t);
      return true;
    }, t);
  }
});

Deno.test("decodeJsonBody: invalid UTF-8 is replaced, as kombu's bytes_to_str does", () => {
  const bytes = new Uint8Array([0x5b, 0x22, 0xff, 0x61, 0x22, 0x5d]); // ["\xffa"]
  assert.deepEqual(decodeJsonBody(body(bytes)), ["\ufffda"]);
});

Deno.test("decodeJsonBody: a body that is a view into a larger buffer", () => {
  const big = Buffer.from("xx[1, 2]yy");
  const view = new Uint8Array(big.buffer, big.byteOffset + 2, 6);
  assert.deepEqual(decodeJsonBody(body(view)), [1, 2]);
});

Deno.test("compression: x-gzip (zlib) and brotli decode; unknown or corrupt data is refused", () => {
  const plain = Buffer.from('{"a": [1, 2]}');
  assert.deepEqual(
    decodeJsonBody(
      body(new Uint8Array(deflateSync(plain)), { compression: "application/x-gzip" }),
    ),
    { a: [1, 2] },
  );
  assert.deepEqual(
    decodeJsonBody(body(new Uint8Array(deflateSync(plain)), { compression: "zlib" })),
    { a: [1, 2] },
  );
  assert.deepEqual(
    decodeJsonBody(
      body(new Uint8Array(brotliCompressSync(plain)), { compression: "application/x-brotli" }),
    ),
    { a: [1, 2] },
  );
  const corrupt = body(utf8("not zlib"), { compression: "application/x-gzip" });
  assert.throws(() => decodeJsonBody(corrupt), (err: unknown) => {
    assert.ok(err instanceof DecodeError);
    assert.match(err.message, /Cannot decompress message body with "application\/x-gzip"/);
    assert.deepEqual(err.raw, corrupt.body);
    return true;
  });
  const zstd = body(utf8("[]"), { compression: "application/zstd" });
  assert.throws(() => decodeJsonBody(zstd), /compression "application\/zstd" is not supported/);
  // An empty compression header means none.
  assert.deepEqual(decodeJsonBody(body(utf8("[1]"), { compression: "" })), [1]);
});

Deno.test("encodeJsonBody/decodeJsonBody: shared codecs give Buffer's bytes and text; a BOM stays an error", () => {
  const value = { s: "Zoë ☃ \u{1F600}", lone: "\ud800", n: [1, 2.5] };
  const bytes = encodeJsonBody(value);
  assert.ok(bytes instanceof Uint8Array);
  assert.deepEqual(bytes, new Uint8Array(Buffer.from(JSON.stringify(value), "utf8")));
  assert.deepEqual(decodeJsonBody(body(bytes)), value, "JSON.stringify escapes a lone surrogate");
  // Python's json.loads refuses a str starting with U+FEFF; so do we (the BOM is kept).
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8("[1]")]);
  assert.throws(() => decodeJsonBody(body(bom)), DecodeError);
});
