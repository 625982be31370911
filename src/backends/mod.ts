/**
 * Result backend factory: picks an implementation by URL scheme.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { redactUrl, schemeOf } from "../brokers/mod.ts";
import type { ResultBackend } from "./backend.ts";
import { MemoryBackend } from "./memory.ts";

export type { ResultBackend, WaitOptions } from "./backend.ts";
export { MemoryBackend } from "./memory.ts";

const memoryBackends = new Map<string, MemoryBackend>();

/** Options of {@linkcode createBackend}. */
export interface CreateBackendOptions {
  /**
   * Seconds results live (the app's `resultExpires`), used when the URL has no `?expires=`.
   * @default 86400
   */
  expires?: number;
}

function urlExpires(url: string, options: CreateBackendOptions): number | undefined {
  return /[?&]expires=/.test(url) ? undefined : options.expires;
}

/**
 * Returns the result backend for a URL, or the given instance unchanged.
 *
 * - `memory://[name]`: in-process (same name, same instance).
 * - `redis://[:password@]host[:port][/db]`: Celery's Redis backend layout.
 * - `sqlite://<path>[?expires=<s>]`: the embedded backend (one file for the machine).
 * - `rpc://[?expires=<s>]`: Celery's RPC backend, results as messages to the client's reply
 *   queue on an `amqp://` broker (the app hands it its broker).
 *
 * @throws {ConfigError} For an unknown scheme.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createBackend } from "./mod.ts";
 * assert.equal((await createBackend("memory://")).kind, "memory");
 * ```
 */
export async function createBackend(
  url: string | ResultBackend,
  options: CreateBackendOptions = {},
): Promise<ResultBackend> {
  if (typeof url !== "string") return url;
  const scheme = schemeOf(url, "result backend");
  switch (scheme) {
    case "memory": {
      const name = url.slice("memory://".length);
      let backend = memoryBackends.get(name);
      if (!backend) memoryBackends.set(name, backend = new MemoryBackend());
      return backend;
    }
    case "redis":
    case "rediss": {
      const { RedisBackend } = await import("./redis.ts");
      return new RedisBackend(url, { expires: urlExpires(url, options) });
    }
    case "sqlite": {
      const { SqliteBackend } = await import("./sqlite.ts");
      return new SqliteBackend(url, { expires: urlExpires(url, options) });
    }
    case "rpc": {
      // Results travel as messages on the app's broker (`useBroker`); amqp:// only.
      const { RpcBackend } = await import("./rpc.ts");
      return new RpcBackend(url);
    }
    default:
      throw new ConfigError(
        `Cannot use result backend URL "${
          redactUrl(url)
        }": scheme "${scheme}" is not supported (use memory://, redis://, sqlite:// or rpc://)`,
      );
  }
}
