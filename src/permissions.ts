/**
 * Turns Deno's permission errors into one line that names the flag to add.
 *
 * @module
 */

import { PermissionMissingError } from "./errors.ts";

const KINDS: Record<string, string> = {
  net: "--allow-net",
  read: "--allow-read",
  write: "--allow-write",
  env: "--allow-env",
  sys: "--allow-sys",
  run: "--allow-run",
  ffi: "--allow-ffi",
  import: "--allow-import",
};

/**
 * If `error` is (or wraps) a Deno permission error, returns one line naming the flag to add;
 * otherwise `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { permissionHint } from "./permissions.ts";
 * const err = new Deno.errors.NotCapable('Requires net access to "127.0.0.1:6379", run again with the --allow-net flag');
 * assert.equal(permissionHint(err), 'Missing permission: net access to "127.0.0.1:6379"; run again with --allow-net=127.0.0.1:6379');
 * assert.equal(permissionHint(new Error("other")), undefined);
 * ```
 */
export function permissionHint(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    if (e instanceof PermissionMissingError) return `Missing permission: ${e.message}`;
    const isDenied = e instanceof Deno.errors.NotCapable ||
      e instanceof Deno.errors.PermissionDenied;
    const message = (e as Error)?.message ?? "";
    const m = /Requires (\w+) access to "?([^",]+)"?/.exec(message);
    if (m) {
      const flag = KINDS[m[1]!] ?? `--allow-${m[1]}`;
      return `Missing permission: ${m[1]} access to "${m[2]}"; run again with ${flag}=${m[2]}`;
    }
    if (isDenied) return `Missing permission: ${message}`;
  }
  return undefined;
}

/**
 * Whether `error`, or one of its causes (5 deep), is Deno's refusal of a permission
 * (`NotCapable`, or `PermissionDenied` from older runtimes and node: modules).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isPermissionError } from "./permissions.ts";
 * const denied = new Deno.errors.NotCapable("Requires net access");
 * assert.ok(isPermissionError(new Error("connect failed", { cause: denied })));
 * assert.ok(!isPermissionError(new Error("refused")));
 * ```
 */
export function isPermissionError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    const name = (e as Error).name;
    if (name === "NotCapable" || name === "PermissionDenied") return true;
  }
  return false;
}

/**
 * Checks up front that Deno grants net access to `host:port`, because some network drivers
 * catch the permission error of a refused connect and retry forever, so the worker would
 * hang instead of naming the missing flag; checking first gives the same one line for
 * every broker and backend.
 *
 * @param host Host name or address as it appears in the URL (Deno matches it as written).
 * @param port Port number.
 * @param what The action, for the message: `connect to the broker at 127.0.0.1:6379`.
 * @throws {PermissionMissingError} When the permission is not granted; `flag` is
 *   `--allow-net=<host>:<port>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { permissionHint, requireNet } from "./permissions.ts";
 * import { PermissionMissingError } from "./errors.ts";
 * // Granted (doc tests run with -A): returns quietly.
 * requireNet("127.0.0.1", 6379, "connect to the broker at 127.0.0.1:6379");
 * // Not granted, the worker CLI prints this hint:
 * const err = new PermissionMissingError("--allow-net=127.0.0.1:6379", "connect to the broker at 127.0.0.1:6379");
 * assert.equal(
 *   permissionHint(err),
 *   "Missing permission: Cannot connect to the broker at 127.0.0.1:6379: permission denied; run again with --allow-net=127.0.0.1:6379",
 * );
 * ```
 */
export function requireNet(host: string, port: number, what: string): void {
  const target = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
  let state: Deno.PermissionState;
  try {
    state = Deno.permissions.querySync({ name: "net", host: target }).state;
  } catch {
    return; // Cannot tell: let the connect itself fail.
  }
  if (state !== "granted") {
    throw new PermissionMissingError(`--allow-net=${target}`, what);
  }
}

/**
 * Imports an npm driver without needing `--allow-env`. Some drivers read the whole
 * environment while they load (a `debug` dependency runs `Object.keys(process.env)`), which
 * Deno only allows with an unscoped `--allow-env`. When env access is not granted, this
 * shows them an empty `process.env` for the duration of the import, so a scoped worker
 * needs no env access at all; with env access it just imports.
 *
 * @param load The import, e.g. `() => import("npm:amqplib@0.10")`.
 * @returns What `load` resolves to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importWithoutEnv } from "./permissions.ts";
 * const mod = await importWithoutEnv(() => import("node:path"));
 * assert.equal(typeof mod.join, "function");
 * ```
 */
export async function importWithoutEnv<T>(load: () => Promise<T>): Promise<T> {
  let granted = true;
  try {
    granted = Deno.permissions.querySync({ name: "env" }).state === "granted";
  } catch {
    // Cannot tell: import as is.
  }
  if (granted) return await load();
  const { default: process } = await import("node:process");
  const descriptor = Object.getOwnPropertyDescriptor(process, "env");
  if (!descriptor?.configurable) return await load();
  Object.defineProperty(process, "env", {
    configurable: true,
    enumerable: descriptor.enumerable,
    writable: true,
    value: {},
  });
  try {
    return await load();
  } finally {
    Object.defineProperty(process, "env", descriptor);
  }
}
