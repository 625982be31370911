/**
 * Exceptions in Celery's JSON form: `{"exc_type", "exc_message", "exc_module"}`.
 *
 * A JS error is written so that a Python client rebuilds a real exception class: names that
 * are Python built-in exceptions (`TypeError`, `ValueError`, …) go under `builtins`; others
 * (`Error`, `RangeError`, custom classes) go under module `celeriac`, which Python does not
 * import, so it synthesizes a class of that name instead of refusing it.
 *
 * @module
 */

/** The serialized exception record. */
export interface SerializedException {
  /** Class name (qualname). */
  exc_type: string;
  /** Constructor arguments. */
  exc_message: unknown[];
  /** Module of the class. */
  exc_module: string;
}

const PYTHON_BUILTIN_EXCEPTIONS = new Set([
  "TypeError",
  "ValueError",
  "KeyError",
  "IndexError",
  "RuntimeError",
  "ZeroDivisionError",
  "AttributeError",
  "LookupError",
  "ArithmeticError",
  "OverflowError",
  "AssertionError",
  "NotImplementedError",
  "TimeoutError",
  "ConnectionError",
  "PermissionError",
  "OSError",
  "FileNotFoundError",
  "Exception",
  "MemoryError",
  "RecursionError",
  "UnicodeError",
]);

/** Module name used for errors that are not Python built-ins. */
export const CELERIAC_EXC_MODULE = "celeriac";

/**
 * Serializes a thrown value. An error may carry `excType`/`excModule`/`excArgs` to choose
 * its Python identity (e.g. `excType: "NotRegistered", excModule: "celery.exceptions"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serializeException } from "./exception.ts";
 * assert.deepEqual(serializeException(new TypeError("bad")),
 *   { exc_type: "TypeError", exc_message: ["bad"], exc_module: "builtins" });
 * assert.equal(serializeException(new Error("x")).exc_module, "celeriac");
 * ```
 */
export function serializeException(error: unknown): SerializedException {
  if (error instanceof Error) {
    const custom = error as Error & { excType?: unknown; excModule?: unknown; excArgs?: unknown };
    const type = typeof custom.excType === "string" ? custom.excType : error.name || "Error";
    const module = typeof custom.excModule === "string"
      ? custom.excModule
      : PYTHON_BUILTIN_EXCEPTIONS.has(type)
      ? "builtins"
      : CELERIAC_EXC_MODULE;
    const args = Array.isArray(custom.excArgs) ? custom.excArgs : [error.message];
    return { exc_type: type, exc_message: args, exc_module: module };
  }
  return { exc_type: "Error", exc_message: [String(error)], exc_module: CELERIAC_EXC_MODULE };
}

/**
 * Reads a serialized exception; returns `undefined` when the value is not one.
 * `exc_message` given as a single string (older Celery) becomes a one-element list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readException } from "./exception.ts";
 * assert.deepEqual(readException({ exc_type: "ValueError", exc_message: "bad", exc_module: "builtins" }),
 *   { exc_type: "ValueError", exc_message: ["bad"], exc_module: "builtins" });
 * ```
 */
export function readException(value: unknown): SerializedException | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const rec = value as Record<string, unknown>;
  if (typeof rec.exc_type !== "string") return undefined;
  const msg = rec.exc_message;
  return {
    exc_type: rec.exc_type,
    exc_message: Array.isArray(msg) ? msg : msg === undefined || msg === null ? [] : [msg],
    exc_module: typeof rec.exc_module === "string" ? rec.exc_module : "builtins",
  };
}

/**
 * Formats a JS error's stack like a traceback string for the result record.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTraceback } from "./exception.ts";
 * assert.match(formatTraceback(new Error("boom")) ?? "", /boom/);
 * ```
 */
export function formatTraceback(error: unknown): string | null {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  return null;
}
