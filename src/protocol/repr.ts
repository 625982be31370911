/**
 * Python text forms of JSON values, as Celery shows them.
 *
 * Two different Python functions are involved, and they disagree on strings:
 *
 * - {@linkcode reprArgs}, {@linkcode reprKwargs} and {@linkcode safeRepr} follow Celery's
 *   `celery.utils.saferepr.saferepr`, which writes the `argsrepr`/`kwargsrepr` headers and the
 *   `result` of `task-succeeded` events: strings in single quotes with only `'` escaped (a
 *   newline stays a newline), containers nested deeper than 3 levels shown as `[...]`, and a
 *   streaming cut at 1024 characters that ends in `, ...` plus the closing brackets.
 * - {@linkcode pyRepr} is Python's own `repr()`, used in exception texts such as
 *   `ValueError('bad input')`: the shorter-quote rule, backslash escapes, and `\xNN`/`\uNNNN`
 *   for characters Python does not print.
 *
 * Values are shown as a Python peer would see them after decoding our JSON body: `null` ⇒
 * `None`, `bigint` ⇒ an exact `int`, objects with `toJSON()` (dates) ⇒ what `toJSON()` returns,
 * a number written as a JSON integer ⇒ `int`, any other number ⇒ a Python `float` (`1.5`,
 * `1e+21`, `1e-07`).
 *
 * @module
 */

/** Celery's limit for `argsrepr`/`kwargsrepr` (`resultrepr_maxsize` is the same). */
export const REPR_MAX_LENGTH = 1024;

/** Celery's `saferepr` nesting limit: deeper containers are shown as `[...]` / `{...}`. */
export const REPR_MAX_LEVELS = 3;

// ---------------------------------------------------------------------------------------
// Shared helpers

type Json = Record<string, unknown>;

function hasToJson(value: object): value is { toJSON(key: string): unknown } {
  return typeof (value as { toJSON?: unknown }).toJSON === "function";
}

/** What `JSON.stringify` would write for an object value (dates become strings). */
function jsonView(value: unknown, key: string): unknown {
  return value !== null && typeof value === "object" && hasToJson(value)
    ? value.toJSON(key)
    : value;
}

/** `JSON.stringify` drops these from objects and writes `null` for them in arrays. */
function isSkipped(value: unknown): boolean {
  return value === undefined || typeof value === "function" || typeof value === "symbol";
}

function objectEntries(value: Json): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const key of Object.keys(value)) {
    const item = jsonView(value[key], key);
    if (!isSkipped(item)) out.push([key, item]);
  }
  return out;
}

/** Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16. */
function pyFloat(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (!Number.isFinite(n)) return n > 0 ? "inf" : "-inf";
  if (n === 0) return Object.is(n, -0) ? "-0.0" : "0.0";
  const [mantissa, expText] = n.toExponential().split("e") as [string, string];
  const sign = mantissa.startsWith("-") ? "-" : "";
  const digits = mantissa.replace("-", "").replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const rest = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const expAbs = String(Math.abs(exp)).padStart(2, "0");
    return `${sign}${digits[0]}${rest}e${exp < 0 ? "-" : "+"}${expAbs}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const fraction = digits.slice(exp + 1);
  return `${sign}${whole}.${fraction || "0"}`;
}

/**
 * A JS number as Python prints it after reading our JSON: text that `JSON.stringify` writes
 * as an integer is a Python `int`, anything else a `float`.
 */
function pyNumber(n: number): string {
  // Fast paths where JS and Python print the same digits.
  if (Number.isInteger(n)) {
    if (Math.abs(n) < 1e21) return String(n); // plain digits: a JSON integer
  } else {
    const abs = Math.abs(n);
    if (abs >= 1e-4 && abs < 1e16) return String(n); // fixed notation in both
  }
  return pyFloat(n);
}

/** Number of code points (Python's `len`) of a string. */
function codePoints(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Python repr()

// Python's str.isprintable(): everything but categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs
// (the ASCII space excepted).
const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

function escapeCodePoint(cp: number): string {
  if (cp < 0x100) return "\\x" + cp.toString(16).padStart(2, "0");
  if (cp < 0x10000) return "\\u" + cp.toString(16).padStart(4, "0");
  return "\\U" + cp.toString(16).padStart(8, "0");
}

/** Python's `repr(str)`. */
function reprString(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch !== " " && NON_PRINTABLE.test(ch)) out += escapeCodePoint(ch.codePointAt(0)!);
    else out += ch;
  }
  return out + quote;
}

function reprValue(value: unknown, path: object[]): string {
  if (value === null || isSkipped(value)) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return pyNumber(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return reprString(value);
  if (typeof value !== "object") return reprString(String(value));
  if (hasToJson(value)) return reprValue(value.toJSON(""), path);
  const isList = Array.isArray(value);
  if (path.includes(value)) return isList ? "[...]" : "{...}";
  path.push(value);
  let text: string;
  if (isList) {
    text = `[${
      (value as unknown[]).map((item, i) => reprValue(jsonView(item, String(i)), path)).join(", ")
    }]`;
  } else {
    text = `{${
      objectEntries(value as Json).map(([k, v]) => `${reprString(k)}: ${reprValue(v, path)}`)
        .join(", ")
    }}`;
  }
  path.pop();
  return text;
}

/**
 * Python `repr()` of a JSON-like value: `null` ⇒ `None`, booleans ⇒ `True`/`False`,
 * strings quoted and escaped as Python does (`'a\nb'`, `"it's"`, `'\x00'`), arrays as lists,
 * objects as dicts. A cyclic reference prints as `[...]`/`{...}`, like Python.
 *
 * This is the form of exception reprs (`ValueError('bad input')`); the `argsrepr`/`kwargsrepr`
 * headers and event results use Celery's {@linkcode safeRepr} instead.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pyRepr } from "./repr.ts";
 * assert.equal(pyRepr({ y: 3, ok: true, none: null }), "{'y': 3, 'ok': True, 'none': None}");
 * assert.equal(pyRepr("it's"), `"it's"`);
 * assert.equal(pyRepr([1.5, 1e21, 2n ** 64n]), "[1.5, 1e+21, 18446744073709551616]");
 * ```
 */
export function pyRepr(value: unknown): string {
  return reprValue(value, []);
}

// ---------------------------------------------------------------------------------------
// Celery saferepr()

/** `celery.utils.text.truncate`: cut at `maxlen` code points, back to the last space. */
function truncate(text: string, maxlen: number): string {
  if (!maxlen || text.length < maxlen) return text; // UTF-16 length >= code point count
  const chars = [...text];
  if (chars.length < maxlen) return text;
  const head = chars.slice(0, maxlen).join("");
  const space = head.lastIndexOf(" ");
  return (space >= 0 ? head.slice(0, space) : head) + "...";
}

/** saferepr's string form: single quotes, only `'` escaped. */
function quoteSafe(text: string): string {
  return text.includes("'") ? `'${text.replaceAll("'", "\\'")}'` : `'${text}'`;
}

function formatChars(text: string, maxlen: number): string {
  return quoteSafe(truncate(text, maxlen));
}

function scalarText(value: unknown): string {
  if (value === null || isSkipped(value)) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return pyNumber(value);
  if (typeof value === "bigint") return value.toString();
  return String(value);
}

/** Brackets of a container: `[`/`]`, `{`/`}`, or a tuple's `(`/`)` (`,)` for one item). */
function brackets(value: object, tuple: boolean): [string, string] {
  if (!Array.isArray(value)) return ["{", "}"];
  if (!tuple) return ["[", "]"];
  return ["(", value.length === 1 ? ",)" : ")"];
}

/** The untruncated saferepr text (depth cut only); exact when shorter than `maxlen`. */
function fullSafeRepr(value: unknown, level: number, maxlevels: number, tuple: boolean): string {
  if (typeof value === "string") return quoteSafe(value);
  if (value === null || typeof value !== "object") return scalarText(value);
  if (hasToJson(value)) return fullSafeRepr(value.toJSON(""), level, maxlevels, false);
  const [open, close] = brackets(value, tuple);
  if (maxlevels && level >= maxlevels) return `${open}...${close}`;
  let out = open;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ", ";
      out += fullSafeRepr(jsonView(value[i], String(i)), level + 1, maxlevels, false);
    }
  } else {
    let first = true;
    for (const key of Object.keys(value)) {
      const item = jsonView((value as Json)[key], key);
      if (isSkipped(item)) continue;
      out += (first ? "" : ", ") + quoteSafe(key) + ": " +
        fullSafeRepr(item, level + 1, maxlevels, false);
      first = false;
    }
  }
  return out + close;
}

/** One token of saferepr's stream (`reprstream`). */
type Token =
  | { kind: "open"; text: string; close: string }
  | { kind: "close" | "sep"; text: string }
  | { kind: "key" | "quoted" | "text"; text: string };

function* tokens(
  value: unknown,
  level: number,
  maxlevels: number,
  tuple: boolean,
): Generator<Token> {
  if (typeof value === "string") {
    yield { kind: "quoted", text: value };
    return;
  }
  if (value === null || typeof value !== "object") {
    yield { kind: "text", text: scalarText(value) };
    return;
  }
  if (hasToJson(value)) {
    yield* tokens(value.toJSON(""), level, maxlevels, false);
    return;
  }
  const [open, close] = brackets(value, tuple);
  if (maxlevels && level >= maxlevels) {
    yield { kind: "text", text: `${open}...${close}` };
    return;
  }
  yield { kind: "open", text: open, close };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (i > 0) yield { kind: "sep", text: ", " };
      yield* tokens(jsonView(value[i], String(i)), level + 1, maxlevels, false);
    }
  } else {
    const entries = objectEntries(value as Json);
    for (let i = 0; i < entries.length; i++) {
      if (i > 0) yield { kind: "sep", text: ", " };
      const [k, v] = entries[i]!;
      yield { kind: "key", text: k };
      yield { kind: "sep", text: ": " };
      yield* tokens(v, level + 1, maxlevels, false);
    }
  }
  yield { kind: "close", text: close };
}

/**
 * Celery's streaming cut: each token may use what is left of `maxlen`; once nothing is left
 * the next token is dropped, `, ...` is written, then the brackets still open are closed.
 */
function streamSafeRepr(value: unknown, maxlen: number, maxlevels: number, tuple: boolean) {
  let out = "";
  let left = maxlen;
  const open: string[] = [];
  for (const token of tokens(value, 0, maxlevels, tuple)) {
    if (token.kind === "open") open.push(token.close);
    else if (token.kind === "close") open.pop();
    if (left <= 0) return out + ", ..." + open.reverse().join("");
    let text: string;
    if (token.kind === "key" || token.kind === "quoted") text = formatChars(token.text, left);
    else if (token.kind === "text") text = truncate(token.text, left);
    else text = token.text;
    out += text;
    left -= codePoints(text);
  }
  return out;
}

function saferepr(value: unknown, maxlen: number, maxlevels: number, tuple: boolean): string {
  const full = fullSafeRepr(value, 0, maxlevels, tuple);
  if (!maxlen || full.length < maxlen) return full;
  return streamSafeRepr(value, maxlen, maxlevels, tuple);
}

/**
 * Celery's `saferepr(value, maxlen)`: the text of `task-succeeded` event results and of the
 * `argsrepr`/`kwargsrepr` headers. Strings are single-quoted with only `'` escaped,
 * containers deeper than {@linkcode REPR_MAX_LEVELS} become `[...]`, and output longer than
 * `maxlen` is cut the way Celery cuts it (`'xxx...', ...]`).
 *
 * @param value A JSON-like value.
 * @param maxlen Length budget in characters; `0` for no limit. @default 1024
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { safeRepr } from "./repr.ts";
 * assert.equal(safeRepr({ name: "it's", n: [1, [2, [3, [4]]]] }), `{'name': 'it\\'s', 'n': [1, [2, [...]]]}`);
 * // Celery's cut drops the token that finds the budget spent:
 * assert.equal(safeRepr([1, 2, 3], 4), "[1, , ...]");
 * ```
 */
export function safeRepr(value: unknown, maxlen: number = REPR_MAX_LENGTH): string {
  return saferepr(value, maxlen, REPR_MAX_LEVELS, false);
}

/**
 * The `argsrepr` header: Celery's `saferepr` of the args tuple (`(2, 3)`, `(2,)` or `()`),
 * cut at {@linkcode REPR_MAX_LENGTH} characters as Celery cuts it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reprArgs } from "./repr.ts";
 * assert.equal(reprArgs([2]), "(2,)");
 * assert.equal(reprArgs([2, 3]), "(2, 3)");
 * assert.equal(reprArgs(["it's\n"]), "('it\\'s\n',)");
 * ```
 */
export function reprArgs(args: readonly unknown[]): string {
  return saferepr(args, REPR_MAX_LENGTH, REPR_MAX_LEVELS, true);
}

/**
 * The `kwargsrepr` header: Celery's `saferepr` of the kwargs dict, cut at
 * {@linkcode REPR_MAX_LENGTH} characters.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reprKwargs } from "./repr.ts";
 * assert.equal(reprKwargs({ y: 3 }), "{'y': 3}");
 * assert.equal(reprKwargs({ name: "Zoë ☃" }), "{'name': 'Zoë ☃'}");
 * ```
 */
export function reprKwargs(kwargs: Readonly<Record<string, unknown>>): string {
  return saferepr(kwargs, REPR_MAX_LENGTH, REPR_MAX_LEVELS, false);
}
