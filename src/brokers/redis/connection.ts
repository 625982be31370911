/**
 * Redis URLs and connections shared by the Redis broker, the Redis result backend and the
 * Redis beat store.
 *
 * The client is celeriac's own (`src/redis/client.ts`, on `Deno.connect`). A first connect
 * fails fast with a clear error; after that the client reconnects by itself (commands wait
 * meanwhile).
 *
 * @module
 */

import { BrokerConnectionError, ConfigError, PermissionMissingError } from "../../errors.ts";
import { isPermissionError, requireNet } from "../../permissions.ts";
import { RedisClient, type RedisClientOptions } from "../../redis/client.ts";
import { redactUrl } from "../mod.ts";

export { RedisClient };

/** A parsed redis:// URL. */
export interface RedisTarget {
  /** Host as written (brackets of an IPv6 address removed). */
  host: string;
  /** Port. @default 6379 */
  port: number;
  /** Database number, from the path. @default 0 */
  db: number;
  /** Password, if any. */
  password?: string;
  /** ACL user name, if any. */
  username?: string;
  /** `rediss://`. */
  tls: boolean;
  /** `rediss://…?ssl_cert_reqs=none` (Celery's spelling): do not verify the certificate. */
  insecureTls: boolean;
  /** The URL with the password hidden. */
  display: string;
  /** Query parameters other than `ssl_cert_reqs`, for the caller to read and check. */
  params: URLSearchParams;
}

/**
 * Parses `redis://[[user]:password@]host[:port][/db][?params]` (and `rediss://`).
 *
 * @throws {ConfigError} For a URL that is not a Redis URL, or a bad database number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRedisUrl } from "./connection.ts";
 * const t = parseRedisUrl("redis://:pw@127.0.0.1:6380/2");
 * assert.deepEqual([t.host, t.port, t.db, t.password], ["127.0.0.1", 6380, 2, "pw"]);
 * assert.equal(t.display, "redis://:**@127.0.0.1:6380/2");
 * assert.deepEqual([parseRedisUrl("redis://h").port, parseRedisUrl("redis://h").db], [6379, 0]);
 * ```
 */
export function parseRedisUrl(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new ConfigError(`Cannot parse Redis URL "${redactUrl(url)}"`, { cause });
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new ConfigError(
      `Cannot use "${redactUrl(url)}" as a Redis URL: scheme must be redis:// or rediss://`,
    );
  }
  const dbText = parsed.pathname.replace(/^\/|\/$/g, "");
  const db = dbText === "" ? 0 : Number(dbText);
  if (!/^\d*$/.test(dbText) || !Number.isSafeInteger(db)) {
    throw new ConfigError(
      `Cannot use Redis URL "${redactUrl(url)}": database "${dbText}" is not a number`,
    );
  }
  const params = new URLSearchParams(parsed.search);
  const certReqs = params.get("ssl_cert_reqs");
  params.delete("ssl_cert_reqs");
  if (certReqs !== null && !/^(CERT_)?(required|optional|none)$/i.test(certReqs)) {
    throw new ConfigError(
      `Cannot use Redis URL "${
        redactUrl(url)
      }": ssl_cert_reqs must be required, optional or none, got "${certReqs}"`,
    );
  }
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
    port: parsed.port ? Number(parsed.port) : 6379,
    db,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    tls: parsed.protocol === "rediss:",
    insecureTls: /none$/i.test(certReqs ?? ""),
    display: redactUrl(url),
    params,
  };
}

/**
 * Names the server a target connects to, as `redis[s]://[user@]host:port` (no password, no
 * db): the broker carries a result write (`Delivery.ackWith`) only to the server it is on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRedisUrl, serverOf } from "./connection.ts";
 * assert.equal(serverOf(parseRedisUrl("redis://:pw@127.0.0.1:6380/2")), "redis://127.0.0.1:6380");
 * assert.equal(serverOf(parseRedisUrl("redis://127.0.0.1:6380/0")), serverOf(parseRedisUrl("redis://127.0.0.1:6380/1")));
 * assert.notEqual(serverOf(parseRedisUrl("redis://ann:pw@h/0")), serverOf(parseRedisUrl("redis://bob:pw@h/0")));
 * ```
 */
export function serverOf(target: RedisTarget): string {
  const user = target.username ? `${encodeURIComponent(target.username)}@` : "";
  const host = target.host.includes(":") ? `[${target.host}]` : target.host;
  return `${target.tls ? "rediss" : "redis"}://${user}${host}:${target.port}`;
}

/**
 * Reads a positive number of seconds from a URL query parameter, or `undefined` when absent.
 *
 * @throws {ConfigError} When it is present but not a positive number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRedisUrl, secondsParam } from "./connection.ts";
 * const t = parseRedisUrl("redis://h/0?visibility_timeout=30");
 * assert.equal(secondsParam(t, "visibility_timeout"), 30);
 * assert.equal(secondsParam(t, "expires"), undefined);
 * ```
 */
export function secondsParam(target: RedisTarget, name: string): number | undefined {
  const text = target.params.get(name);
  if (text === null) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !(value > 0) || !Number.isFinite(value)) {
    throw new ConfigError(
      `Cannot use Redis URL "${target.display}": ${name} must be a positive number of seconds, got "${text}"`,
    );
  }
  return value;
}

/**
 * Rejects query parameters a caller does not know, naming the ones it does.
 *
 * @throws {ConfigError} For an unknown parameter.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkParams, parseRedisUrl } from "./connection.ts";
 * assert.throws(() => checkParams(parseRedisUrl("redis://h/0?typo=1"), ["expires"]), /typo/);
 * ```
 */
export function checkParams(target: RedisTarget, known: readonly string[]): void {
  for (const name of target.params.keys()) {
    if (!known.includes(name)) {
      throw new ConfigError(
        `Cannot use Redis URL "${target.display}": unknown parameter "${name}" (known: ${
          ["ssl_cert_reqs", ...known].join(", ")
        })`,
      );
    }
  }
}

/**
 * Opens a connection. It fails fast (no retries) on the first connect; once connected it
 * reconnects with backoff (100 ms doubling to 2 s) forever, and queued commands wait
 * (or, with `whileDown: "fail"`, fail at once).
 *
 * @param role Who connects, for error messages (`broker`, `result backend`, …).
 * @param options Client options that override the defaults.
 * @throws {PermissionMissingError} When Deno does not grant `--allow-net=<host>:<port>`.
 * @throws {BrokerConnectionError} When the server cannot be reached (names host:port), or
 *   refuses the password or the database.
 *
 * @example
 * ```ts ignore
 * import { closeRedis, connectRedis, parseRedisUrl } from "./connection.ts";
 * const client = await connectRedis(parseRedisUrl("redis://127.0.0.1:6379/0"), "broker");
 * await closeRedis(client);
 * ```
 */
export async function connectRedis(
  target: RedisTarget,
  role: string,
  options: Pick<RedisClientOptions, "whileDown"> = {},
): Promise<RedisClient> {
  const where = `${target.host}:${target.port}`;
  const what = `connect to Redis (${role}) at ${where}`;
  requireNet(target.host, target.port, what);
  try {
    return await RedisClient.connect({
      host: target.host,
      port: target.port,
      db: target.db,
      password: target.password,
      username: target.username,
      tls: target.tls,
      insecureTls: target.insecureTls,
      ...options,
    });
  } catch (cause) {
    if (isPermissionError(cause)) {
      throw new PermissionMissingError(`--allow-net=${where}`, what, { cause });
    }
    throw new BrokerConnectionError(
      `Cannot connect to Redis (${role}) at ${where}: ${(cause as Error)?.message ?? cause}`,
      { cause },
    );
  }
}

/**
 * Closes a connection without hanging: `QUIT` when it is up (replies already queued are
 * read first), a plain disconnect when it is down or reconnecting (its queued commands fail).
 *
 * @example
 * ```ts ignore
 * await closeRedis(client);
 * ```
 */
export async function closeRedis(client: RedisClient | undefined): Promise<void> {
  await client?.quit();
}
