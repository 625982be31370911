/**
 * celeriac's version, for banners and the `sw_ver` field of worker events.
 *
 * @module
 */

/**
 * The celeriac version (the same as `deno.json`'s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { VERSION } from "./version.ts";
 * assert.match(VERSION, /^\d+\.\d+\.\d+/);
 * ```
 */
export const VERSION = "0.1.0";
