/**
 * Node built-in modules loaded on first use instead of at start-up. Deno builds a `node:`
 * module (and what it pulls in of the Node compatibility layer) when it is first imported,
 * and a worker that never needs it should not pay for it: `node:zlib`, for instance, adds
 * about 3 MiB to every process that imports it, while only compressed message bodies need
 * it. `process.getBuiltinModule` (Node 22.3+, Deno 2.1+) returns one synchronously, so
 * callers stay synchronous and nothing is loaded until they run.
 *
 * @module
 */

/** What celeriac uses of `node:zlib`: the decompressors of compressed message bodies. */
export interface NodeZlib {
  /** zlib (RFC 1950) stream → bytes. */
  inflateSync(data: Uint8Array | string): Uint8Array;
  /** Brotli stream → bytes. */
  brotliDecompressSync(data: Uint8Array): Uint8Array;
  /** bytes → zlib stream (tests and examples). */
  deflateSync(data: Uint8Array | string): Uint8Array;
}

/**
 * The Node built-ins celeriac loads lazily, by their `node:` specifier, typed by hand (what
 * celeriac calls) so that no import of them appears in the module graph at all.
 */
export interface LazyBuiltins {
  /** Decompressors for compressed message bodies. */
  "node:zlib": NodeZlib;
}

/**
 * The Node built-in module `id`, loaded on the first call (cached by the runtime after).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeBuiltin } from "./node_builtin.ts";
 * const zlib = nodeBuiltin("node:zlib");
 * const text = new TextDecoder().decode(zlib.inflateSync(zlib.deflateSync("hi")));
 * assert.equal(text, "hi");
 * assert.equal(nodeBuiltin("node:zlib"), zlib);
 * ```
 */
export function nodeBuiltin<K extends keyof LazyBuiltins>(id: K): LazyBuiltins[K] {
  const process = (globalThis as { process?: { getBuiltinModule?(id: string): unknown } })
    .process;
  const mod = process?.getBuiltinModule?.(id);
  if (!mod) throw new TypeError(`Cannot load ${id}: this runtime has no process.getBuiltinModule`);
  return mod as LazyBuiltins[K];
}
