/**
 * Node names. Reading the host name needs `--allow-sys=hostname`; without it celeriac uses
 * `localhost` rather than failing, so a scoped worker runs with only `--allow-net`.
 *
 * @module
 */

/**
 * The host name, or `localhost` when the permission is not granted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostName } from "./host.ts";
 * assert.ok(hostName().length > 0);
 * ```
 */
export function hostName(): string {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state !== "granted") {
      return "localhost";
    }
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

/**
 * A producer's node name as Celery writes it in `origin`: `gen<pid>@<host>`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { producerName } from "./host.ts";
 * assert.match(producerName(), /^gen\d+@/);
 * ```
 */
export function producerName(): string {
  return `gen${Deno.pid}@${hostName()}`;
}
