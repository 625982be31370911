/**
 * RESP2, the Redis wire format, as pure code: commands encoded into one reusable byte
 * buffer, and a resumable reply parser fed with whatever chunks the socket delivers.
 *
 * Bulk strings are read as UTF-8 text: every value celeriac and Celery keep in Redis is
 * text (JSON envelopes, ids, numbers).
 *
 * @module
 */

/** One argument of a command: text, or a number written in decimal. */
export type RedisArg = string | number;

/** One reply: simple or bulk string, integer, nil, array, or an error reply. */
export type RedisReply = string | number | null | RedisReply[] | RedisReplyError;

/**
 * An error reply of the server (`-ERR …`, `-NOSCRIPT …`, `-WRONGTYPE …`): the command
 * failed, the connection is fine. `code` is the first word.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RedisReplyError } from "./resp.ts";
 * const err = new RedisReplyError("NOSCRIPT No matching script.");
 * assert.equal(err.code, "NOSCRIPT");
 * ```
 */
export class RedisReplyError extends Error {
  /** The first word of the reply: `ERR`, `NOSCRIPT`, `WRONGTYPE`, … */
  readonly code: string;
  /** Builds the error from the reply's text (without the leading `-`). */
  constructor(message: string) {
    super(message);
    this.name = "RedisReplyError";
    this.code = /^\S+/.exec(message)?.[0] ?? "ERR";
  }
}

const CR = 13;
const LF = 10;
const encoder = new TextEncoder();

/** Decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Texts shorter than this are copied by a loop; longer ones go to `TextEncoder`. */
const SHORT = 64;

/**
 * Encodes commands as RESP arrays of bulk strings into one growing buffer, so a batch of
 * pipelined commands becomes one write.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandEncoder } from "./resp.ts";
 * const enc = new CommandEncoder();
 * enc.push(["SET", "k", "é"]);
 * enc.push(["EXPIRE", "k", 10]);
 * assert.equal(
 *   new TextDecoder().decode(enc.take()),
 *   "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n10\r\n",
 * );
 * assert.equal(enc.size, 0);
 * ```
 */
export class CommandEncoder {
  #buf = new Uint8Array(16 * 1024);
  #len = 0;

  /** Bytes encoded and not yet taken. */
  get size(): number {
    return this.#len;
  }

  #reserve(extra: number): void {
    if (this.#len + extra <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + extra) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buf.subarray(0, this.#len));
    this.#buf = grown;
  }

  /** Writes a non-negative integer in decimal. */
  #decimal(n: number): void {
    const buf = this.#buf;
    const end = this.#len + digits(n);
    let at = end;
    do {
      buf[--at] = 48 + n % 10;
      n = Math.floor(n / 10);
    } while (n > 0);
    this.#len = end;
  }

  #header(prefix: number, n: number): void {
    const buf = this.#buf;
    buf[this.#len++] = prefix;
    this.#decimal(n);
    buf[this.#len++] = CR;
    buf[this.#len++] = LF;
  }

  #bulk(text: string): void {
    const n = text.length;
    this.#reserve(n * 3 + 24);
    const buf = this.#buf;
    const start = this.#len;
    if (n < SHORT) {
      // Short text: copied by a loop while it is ASCII (its byte length is then its
      // length), cheaper than a call into the native encoder; on the first other character
      // it starts over below.
      this.#header(36, n);
      let at = this.#len;
      let i = 0;
      for (; i < n; i++) {
        const c = text.charCodeAt(i);
        if (c > 127) break;
        buf[at++] = c;
      }
      if (i === n) {
        buf[at++] = CR;
        buf[at++] = LF;
        this.#len = at;
        return;
      }
      this.#len = start;
    }
    // Encode right after the header it would have if every character took one byte; when
    // some take more, the byte count may need a longer header: slide the bytes over.
    const guess = 3 + digits(n);
    const { written } = encoder.encodeInto(text, buf.subarray(start + guess));
    const headerLength = 3 + digits(written);
    if (headerLength !== guess) {
      buf.copyWithin(start + headerLength, start + guess, start + guess + written);
    }
    this.#header(36, written);
    this.#len = start + headerLength + written;
    buf[this.#len++] = CR;
    buf[this.#len++] = LF;
  }

  /** Appends one command. */
  push(args: readonly RedisArg[]): void {
    this.#reserve(16);
    this.#header(42, args.length);
    for (const arg of args) {
      if (typeof arg === "string") this.#bulk(arg);
      else if (Number.isSafeInteger(arg) && arg >= 0) {
        this.#reserve(24);
        this.#header(36, digits(arg));
        this.#decimal(arg);
        this.#buf[this.#len++] = CR;
        this.#buf[this.#len++] = LF;
      } else this.#bulk(String(arg));
    }
  }

  /** The bytes encoded so far (a copy), and starts over. */
  take(): Uint8Array {
    const out = this.#buf.slice(0, this.#len);
    this.#len = 0;
    if (this.#buf.length > 1 << 20) this.#buf = new Uint8Array(16 * 1024); // give big ones back
    return out;
  }
}

interface Frame {
  items: RedisReply[];
  left: number;
}

const decoder = new TextDecoder();
/** The parser's buffer when it holds nothing (shared: it is never written). */
const NO_BYTES = new Uint8Array(0);

/**
 * Parses replies from a byte stream, resuming where a chunk ended (a reply may span any
 * number of chunks; a chunk may hold many replies).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReplyParser, RedisReplyError } from "./resp.ts";
 * const parser = new ReplyParser();
 * const replies: unknown[] = [];
 * const bytes = new TextEncoder().encode("+OK\r\n:42\r\n*2\r\n$3\r\nhé\r\n$-1\r\n-ERR no\r\n");
 * for (const b of bytes) parser.feed(new Uint8Array([b]), (r) => replies.push(r));
 * assert.deepEqual(replies.slice(0, 3), ["OK", 42, ["hé", null]]);
 * assert.ok(replies[3] instanceof RedisReplyError);
 * ```
 */
export class ReplyParser {
  #buf: Uint8Array = NO_BYTES;
  #pos = 0;
  #end = 0;
  #stack: Frame[] = [];

  /** Drops any partial reply (after a reconnect). */
  reset(): void {
    this.#buf = NO_BYTES;
    this.#pos = this.#end = 0;
    this.#stack = [];
  }

  /**
   * Parses `chunk` (it may be reused by the caller afterwards) and calls `emit` with each
   * complete top-level reply, in order.
   *
   * @throws {SyntaxError} For bytes that are not RESP2 (the stream cannot be trusted).
   */
  feed(chunk: Uint8Array, emit: (reply: RedisReply) => void): void {
    if (this.#pos === this.#end) {
      this.#buf = chunk;
      this.#pos = 0;
      this.#end = chunk.length;
    } else {
      const left = this.#end - this.#pos;
      const joined = new Uint8Array(left + chunk.length);
      joined.set(this.#buf.subarray(this.#pos, this.#end));
      joined.set(chunk, left);
      this.#buf = joined;
      this.#pos = 0;
      this.#end = joined.length;
    }
    this.#parse(emit);
    if (this.#pos < this.#end && this.#buf === chunk) {
      this.#buf = chunk.slice(this.#pos, this.#end); // keep our own copy of the partial reply
      this.#end -= this.#pos;
      this.#pos = 0;
    } else if (this.#pos === this.#end) {
      this.#buf = NO_BYTES;
      this.#pos = this.#end = 0;
    }
  }

  /** Index of the `\r` ending the line that starts at `from`, or -1. */
  #lineEnd(from: number): number {
    const buf = this.#buf;
    for (let i = from; i < this.#end - 1; i++) if (buf[i] === CR) return i;
    return -1;
  }

  #int(from: number, to: number): number {
    const buf = this.#buf;
    let i = from;
    let sign = 1;
    if (buf[i] === 45) {
      sign = -1;
      i++;
    }
    let n = 0;
    for (; i < to; i++) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) {
        return Number(decoder.decode(buf.subarray(from, to))); // rare: not a plain integer
      }
      n = n * 10 + d;
    }
    return sign * n;
  }

  #parse(emit: (reply: RedisReply) => void): void {
    const buf = this.#buf;
    while (this.#pos < this.#end) {
      const start = this.#pos;
      const eol = this.#lineEnd(start + 1);
      if (eol < 0) return;
      let value: RedisReply;
      const type = buf[start];
      if (type === 36) { // $ bulk string
        const n = this.#int(start + 1, eol);
        if (n < 0) {
          value = null;
          this.#pos = eol + 2;
        } else {
          if (eol + 2 + n + 2 > this.#end) return;
          value = decoder.decode(buf.subarray(eol + 2, eol + 2 + n));
          this.#pos = eol + 2 + n + 2;
        }
      } else if (type === 42) { // * array
        const n = this.#int(start + 1, eol);
        this.#pos = eol + 2;
        if (n > 0) {
          this.#stack.push({ items: [], left: n });
          continue;
        }
        value = n < 0 ? null : [];
      } else if (type === 58) { // : integer
        value = this.#int(start + 1, eol);
        this.#pos = eol + 2;
      } else if (type === 43) { // + simple string
        value = decoder.decode(buf.subarray(start + 1, eol));
        this.#pos = eol + 2;
      } else if (type === 45) { // - error
        value = new RedisReplyError(decoder.decode(buf.subarray(start + 1, eol)));
        this.#pos = eol + 2;
      } else {
        throw new SyntaxError(`Cannot parse Redis reply: unexpected type byte ${type}`);
      }
      // Hand the value to its array, closing every array it completes.
      for (;;) {
        const frame = this.#stack.at(-1);
        if (!frame) {
          emit(value);
          break;
        }
        frame.items.push(value);
        if (--frame.left > 0) break;
        this.#stack.pop();
        value = frame.items;
      }
    }
  }
}
