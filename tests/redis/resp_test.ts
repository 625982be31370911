/**
 * RESP2 encoding and parsing, pure: commands byte for byte, and replies split across
 * chunks at every possible boundary.
 */
import assert from "node:assert/strict";
import {
  CommandEncoder,
  type RedisReply,
  RedisReplyError,
  ReplyParser,
} from "../../src/redis/resp.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (s: string) => new TextEncoder().encode(s);

function encode(...commands: (string | number)[][]): string {
  const enc = new CommandEncoder();
  for (const c of commands) enc.push(c);
  return text(enc.take());
}

Deno.test("resp: commands are arrays of bulk strings with byte lengths", () => {
  assert.equal(encode(["PING"]), "*1\r\n$4\r\nPING\r\n");
  assert.equal(encode(["SET", "k", ""]), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  assert.equal(
    encode(["ZADD", "z", 1.5, -2]),
    "*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n1.5\r\n$2\r\n-2\r\n",
  );
  // Non-ASCII text counts bytes, not UTF-16 units, short and long alike.
  assert.equal(encode(["SET", "é€😀"]), "*2\r\n$3\r\nSET\r\n$9\r\né€😀\r\n");
  const long = "é".repeat(5000) + "x";
  assert.equal(encode(["SET", long]), `*2\r\n$3\r\nSET\r\n$10001\r\n${long}\r\n`);
  const ascii = "a".repeat(70_000);
  assert.equal(
    encode(["SET", ascii], ["GET", "k"]),
    `*2\r\n$3\r\nSET\r\n$70000\r\n${ascii}\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
  );
});

Deno.test("resp: every length and digit boundary, ASCII or not, matches a plain encoding", () => {
  // Short texts are copied by a loop, longer ones by TextEncoder after a guessed header;
  // a text with multi-byte characters may need more header digits than its length has.
  const pieces = ["a", "é", "€", "😀", "\u0000", "\u007f", "\u0080"];
  const args: (string | number)[] = [0, 9, 10, 86400, 2 ** 53 - 1, -1, 0.25];
  for (const n of [0, 1, 8, 9, 10, 23, 24, 25, 33, 34, 63, 64, 65, 99, 100, 101, 1000]) {
    for (const piece of pieces) {
      args.push(piece.repeat(n));
      args.push("x".repeat(n) + piece); // ASCII until the last character
    }
  }
  const plain = `*${args.length}\r\n` +
    args.map((a) => {
      const s = String(a);
      return `$${bytes(s).length}\r\n${s}\r\n`;
    }).join("");
  assert.equal(encode(args), plain);
});

Deno.test("resp: the encoder starts over after take() and grows past its first buffer", () => {
  const enc = new CommandEncoder();
  for (let i = 0; i < 2000; i++) enc.push(["LPUSH", "q", `message ${i} ${"x".repeat(20)}`]);
  const first = text(enc.take());
  assert.equal(first.split("*3\r\n").length - 1, 2000);
  assert.ok(first.endsWith(`$33\r\nmessage 1999 ${"x".repeat(20)}\r\n`));
  assert.equal(enc.size, 0);
  enc.push(["PING"]);
  assert.equal(text(enc.take()), "*1\r\n$4\r\nPING\r\n");
});

const STREAM = "+OK\r\n" +
  ":-42\r\n" +
  "$5\r\nhé\r\n\r\n" + // bulk text holding CRLF, and a 2-byte character
  "$-1\r\n" +
  "*-1\r\n" +
  "*0\r\n" +
  "*3\r\n*2\r\n:1\r\n$1\r\na\r\n*0\r\n$-1\r\n" +
  "-NOSCRIPT No matching script\r\n" +
  "*2\r\n$7\r\nmessage\r\n$0\r\n\r\n";

function expectStream(replies: RedisReply[]): void {
  assert.deepEqual(replies.slice(0, 7), ["OK", -42, "hé\r\n", null, null, [], [
    [1, "a"],
    [],
    null,
  ]]);
  const err = replies[7];
  assert.ok(err instanceof RedisReplyError);
  assert.equal(err.code, "NOSCRIPT");
  assert.equal(err.message, "NOSCRIPT No matching script");
  assert.deepEqual(replies[8], ["message", ""]);
  assert.equal(replies.length, 9);
}

Deno.test("resp: replies parse the same whole, byte by byte, and split at every offset", () => {
  const all = bytes(STREAM);
  const whole: RedisReply[] = [];
  new ReplyParser().feed(all, (r) => whole.push(r));
  expectStream(whole);
  const single: RedisReply[] = [];
  const parser = new ReplyParser();
  for (const b of all) parser.feed(new Uint8Array([b]), (r) => single.push(r));
  expectStream(single);
  for (let cut = 1; cut < all.length; cut++) {
    const out: RedisReply[] = [];
    const p = new ReplyParser();
    // The caller reuses its read buffer: the parser must have copied what it keeps.
    const reused = new Uint8Array(all.length);
    reused.set(all.subarray(0, cut));
    p.feed(reused.subarray(0, cut), (r) => out.push(r));
    reused.fill(0);
    reused.set(all.subarray(cut));
    p.feed(reused.subarray(0, all.length - cut), (r) => out.push(r));
    expectStream(out);
  }
});

Deno.test("resp: a large array arriving in many chunks comes out once, whole", () => {
  const items = Array.from({ length: 3000 }, (_, i) => `item-${i}-${"é".repeat(i % 7)}`);
  const stream = bytes(
    `*${items.length}\r\n` + items.map((s) => `$${bytes(s).length}\r\n${s}\r\n`).join("") +
      ":7\r\n",
  );
  const out: RedisReply[] = [];
  const parser = new ReplyParser();
  for (let at = 0; at < stream.length; at += 1000) {
    parser.feed(stream.subarray(at, at + 1000), (r) => out.push(r));
  }
  assert.deepEqual(out, [items, 7]);
});

Deno.test("resp: bytes that are not RESP fail loudly; reset() drops a partial reply", () => {
  assert.throws(() => new ReplyParser().feed(bytes("?what\r\n"), () => {}), SyntaxError);
  const parser = new ReplyParser();
  const out: RedisReply[] = [];
  parser.feed(bytes("*2\r\n:1\r\n"), (r) => out.push(r));
  parser.reset();
  parser.feed(bytes(":5\r\n"), (r) => out.push(r));
  assert.deepEqual(out, [5]);
});
