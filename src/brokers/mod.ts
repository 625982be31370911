/**
 * Broker factory: picks an implementation by URL scheme. Drivers are loaded only when their
 * scheme is used (`npm:amqplib` never loads for `redis://`, the Redis client never for
 * `memory://`).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { Broker } from "./broker.ts";
import { MemoryBroker } from "./memory.ts";

export type { Broker, DeadLetter, Delivery, FetchOptions, QueueOptions, Route } from "./broker.ts";
export { MemoryBroker } from "./memory.ts";

const memoryBrokers = new Map<string, MemoryBroker>();

/**
 * The embedded store the worker CLI and the demo use when nothing else is configured: one
 * SQLite file under the current directory (see `docs/embedded.md`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EMBEDDED_DEFAULT_URL } from "./mod.ts";
 * assert.equal(EMBEDDED_DEFAULT_URL, "sqlite://./.celeriac/celeriac.db");
 * ```
 */
export const EMBEDDED_DEFAULT_URL = "sqlite://./.celeriac/celeriac.db";

/**
 * Returns the broker for a URL, or the given instance unchanged.
 *
 * - `memory://` or `memory://<name>`: an in-process broker; the same name gives the same
 *   instance within one process.
 * - `redis://[:password@]host[:port][/db]`, `rediss://…`: Redis, kombu's layout.
 * - `sqlite://<path>[?visibility_timeout=<s>&owner=<name>]`: the embedded broker, one file
 *   shared by the processes of one machine (`sqlite://./.celeriac/celeriac.db`).
 * - `amqp://[user:password@]host[:port][/vhost][?heartbeat=<s>]`, `amqps://…`: RabbitMQ,
 *   kombu's entities (`npm:amqplib` loads only for these schemes).
 *
 * @throws {ConfigError} For an unknown scheme or a URL that cannot be parsed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createBroker } from "./mod.ts";
 * assert.equal((await createBroker("memory://a")).kind, "memory");
 * assert.equal(await createBroker("memory://a"), await createBroker("memory://a"));
 * ```
 */
export async function createBroker(url: string | Broker): Promise<Broker> {
  if (typeof url !== "string") return url;
  const scheme = schemeOf(url, "broker");
  switch (scheme) {
    case "memory": {
      const name = url.slice("memory://".length);
      let broker = memoryBrokers.get(name);
      if (!broker) memoryBrokers.set(name, broker = new MemoryBroker(name));
      return broker;
    }
    case "redis":
    case "rediss": {
      const { RedisBroker } = await import("./redis/broker.ts");
      return new RedisBroker(url);
    }
    case "sqlite": {
      const { SqliteBroker } = await import("./sqlite.ts");
      return new SqliteBroker(url);
    }
    case "amqp":
    case "amqps": {
      const { AmqpBroker } = await import("./amqp/broker.ts");
      return new AmqpBroker(url);
    }
    default:
      throw new ConfigError(
        `Cannot use broker URL "${
          redactUrl(url)
        }": scheme "${scheme}" is not supported (use memory://, redis://, amqp:// or sqlite://)`,
      );
  }
}

/**
 * The scheme of a URL, lower-cased.
 *
 * @throws {ConfigError} When the text is not a URL.
 */
export function schemeOf(url: string, what: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (!m) {
    throw new ConfigError(
      `Cannot use ${what} URL "${redactUrl(url)}": it is not a URL like redis://host:6379/0`,
    );
  }
  return m[1]!.toLowerCase();
}

/**
 * Hides the password of a URL for logs and banners.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactUrl } from "./mod.ts";
 * assert.equal(redactUrl("redis://:secret@host:6379/0"), "redis://:**@host:6379/0");
 * ```
 */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, "$1**@");
}
