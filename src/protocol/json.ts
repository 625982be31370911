/**
 * JSON as Celery's kombu writes it, read without losing integers above 2^53.
 *
 * Python's `json` keeps integers exact at any size; `JSON.parse` would round
 * 9007199254740993 to 9007199254740992. {@linkcode parseJson} revives such integers as
 * `bigint`, and {@linkcode stringifyJson} writes `bigint` back as plain JSON integers, so a
 * message round-trips exactly. Python's `json` also writes non-finite floats as `NaN`,
 * `Infinity` and `-Infinity`; {@linkcode parseJson} reads them (writing them back gives
 * `null`, as `JSON.stringify` does).
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
const JSONWithRaw = JSON as any;

const INTEGER_RE = /^-?\d+$/;

/**
 * An integer outside ±(2^53 − 1) has at least 16 digits (2^53 = 9007199254740992), so a
 * text without a run of 16 digits holds none, and plain `JSON.parse` reads it exactly. The
 * reviver costs about 7× the parse itself (it allocates a context per value).
 */
const LONG_DIGIT_RUN_RE = /\d{16}/;

function reviveBigInt(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context?.source) {
    const source = context.source;
    if (INTEGER_RE.test(source)) return BigInt(source);
  }
  return value;
}

function replaceBigInt(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? JSONWithRaw.rawJSON(value.toString()) : value;
}

// ---------------------------------------------------------------------------------------
// A plain recursive-descent reader, used only when JSON.parse cannot be trusted or refuses
// the text: Python's NaN/Infinity tokens, and object keys written with escapes that V8
// 15.0 (Deno 2.9) can decode wrongly. After any object with a key holding a backslash (for
// example {"k": 1, "\\": 2}) has been parsed, V8 reuses that key for a later object with the
// same previous keys whose next key has an escape and the same decoded length:
// JSON.parse('{"k": 1, "\u00e9": 2}') then yields the key "\" instead of "é". A key
// mis-read that way always contains a backslash, so results without one are trusted.

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};
const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERALS: [string, unknown][] = [
  ["true", true],
  ["false", false],
  ["null", null],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
];

class JsonReader {
  #text: string;
  #pos = 0;

  constructor(text: string) {
    this.#text = text;
  }

  read(): unknown {
    const value = this.#value();
    this.#space();
    if (this.#pos < this.#text.length) this.#fail("unexpected text after the value");
    return value;
  }

  #fail(what: string): never {
    throw new SyntaxError(`Cannot parse JSON at position ${this.#pos}: ${what}`);
  }

  #space(): void {
    while (WHITESPACE.has(this.#text[this.#pos]!)) this.#pos++;
  }

  #value(): unknown {
    this.#space();
    const ch = this.#text[this.#pos];
    if (ch === "{") return this.#object();
    if (ch === "[") return this.#array();
    if (ch === '"') return this.#string();
    for (const [word, value] of LITERALS) {
      if (this.#text.startsWith(word, this.#pos)) {
        this.#pos += word.length;
        return value;
      }
    }
    NUMBER_RE.lastIndex = this.#pos;
    const m = NUMBER_RE.exec(this.#text);
    if (!m) this.#fail("expected a value");
    this.#pos += m[0].length;
    const n = Number(m[0]);
    return INTEGER_RE.test(m[0]) && !Number.isSafeInteger(n) ? BigInt(m[0]) : n;
  }

  #object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.#pos++;
    this.#space();
    if (this.#text[this.#pos] === "}") {
      this.#pos++;
      return out;
    }
    for (;;) {
      this.#space();
      if (this.#text[this.#pos] !== '"') this.#fail("expected a string key");
      const key = this.#string();
      this.#space();
      if (this.#text[this.#pos++] !== ":") this.#fail("expected ':'");
      const value = this.#value();
      if (key === "__proto__") {
        Object.defineProperty(out, key, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else out[key] = value;
      this.#space();
      const sep = this.#text[this.#pos++];
      if (sep === "}") return out;
      if (sep !== ",") this.#fail("expected ',' or '}'");
    }
  }

  #array(): unknown[] {
    const out: unknown[] = [];
    this.#pos++;
    this.#space();
    if (this.#text[this.#pos] === "]") {
      this.#pos++;
      return out;
    }
    for (;;) {
      out.push(this.#value());
      this.#space();
      const sep = this.#text[this.#pos++];
      if (sep === "]") return out;
      if (sep !== ",") this.#fail("expected ',' or ']'");
    }
  }

  #string(): string {
    const text = this.#text;
    let out = "";
    let start = ++this.#pos;
    for (;;) {
      const ch = text[this.#pos];
      if (ch === undefined) this.#fail("unterminated string");
      if (ch === '"') break;
      if (ch < " ") this.#fail("control character in string");
      if (ch !== "\\") {
        this.#pos++;
        continue;
      }
      out += text.slice(start, this.#pos);
      const esc = text[this.#pos + 1]!;
      if (esc === "u") {
        const hex = text.slice(this.#pos + 2, this.#pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.#fail("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        this.#pos += 6;
      } else {
        const decoded = ESCAPES[esc];
        if (decoded === undefined) this.#fail("bad escape");
        out += decoded;
        this.#pos += 2;
      }
      start = this.#pos;
    }
    out += text.slice(start, this.#pos);
    this.#pos++;
    return out;
  }
}

/** True when some object key (at any depth) contains a backslash. */
function hasBackslashKey(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length) {
    const value = stack.pop();
    if (value === null || typeof value !== "object") continue;
    if (Array.isArray(value)) {
      for (const item of value) if (item !== null && typeof item === "object") stack.push(item);
      continue;
    }
    for (const key in value) {
      if (key.includes("\\")) return true;
      const item = (value as Record<string, unknown>)[key];
      if (item !== null && typeof item === "object") stack.push(item);
    }
  }
  return false;
}

/**
 * Parses JSON text as Python's `json` does: integers outside the safe range become `bigint`
 * (exact), and Python's `NaN`, `Infinity` and `-Infinity` are read as numbers.
 *
 * @param text JSON text.
 * @returns The parsed value.
 * @throws {SyntaxError} When the text is not JSON.
 *
 * @example Big integers stay exact
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseJson } from "./json.ts";
 * assert.equal(parseJson("[9007199254740993]")[0], 9007199254740993n);
 * assert.deepEqual(parseJson('[NaN, -Infinity, "NaN"]'), [NaN, -Infinity, "NaN"]);
 * ```
 */
// deno-lint-ignore no-explicit-any
export function parseJson(text: string): any {
  let value: unknown;
  try {
    value = LONG_DIGIT_RUN_RE.test(text)
      ? JSON.parse(text, reviveBigInt as (k: string, v: unknown) => unknown)
      : JSON.parse(text);
  } catch (err) {
    if (!(err instanceof SyntaxError) || !/NaN|Infinity/.test(text)) throw err;
    try {
      return new JsonReader(text).read();
    } catch {
      throw err;
    }
  }
  // Escaped keys may have been mis-read by V8 (see above): read such texts again by hand.
  if (text.includes("\\") && hasBackslashKey(value)) return new JsonReader(text).read();
  return value;
}

/**
 * `JSON.parse` (numbers stay JS numbers), guarded against V8's mis-read escaped keys like
 * {@linkcode parseJson}: for texts where exact big integers do not matter (kombu envelopes)
 * and speed does.
 *
 * @param text JSON text.
 * @returns The parsed value.
 * @throws {SyntaxError} When the text is not JSON.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseJsonFast } from "./json.ts";
 * assert.deepEqual(parseJsonFast('{"k": 1, "\\u00e9": 2}'), { k: 1, "é": 2 });
 * ```
 */
// deno-lint-ignore no-explicit-any
export function parseJsonFast(text: string): any {
  const value = JSON.parse(text);
  if (text.includes("\\") && hasBackslashKey(value)) return new JsonReader(text).read();
  return value;
}

/**
 * Writes a value as compact JSON; `bigint` values are written as integers. Plain
 * `JSON.stringify` is tried first (a replacer function costs a call per value); only a value
 * holding a `bigint`, which makes it throw, is written again with the replacer.
 *
 * @param value Any JSON-compatible value (plus `bigint`).
 * @returns JSON text.
 * @throws {TypeError} On a cyclic structure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stringifyJson } from "./json.ts";
 * assert.equal(stringifyJson({ big: 9007199254740993n }), '{"big":9007199254740993}');
 * ```
 */
export function stringifyJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (err instanceof TypeError && /BigInt/i.test(err.message)) {
      return JSON.stringify(value, replaceBigInt);
    }
    throw err;
  }
}
