/**
 * A `MONITOR` connection for tests: every command a redis-server runs, in order, with its db
 * and whether a Lua script ran it.
 *
 * @module
 */

import { closeRedis, connectRedis, parseRedisUrl } from "../../src/brokers/redis/connection.ts";
import type { TestRedis } from "./redis_server.ts";

/** One command as `MONITOR` reports it. */
export interface MonitoredCommand {
  /** The db it ran on. */
  db: number;
  /** True when a Lua script ran it (client `lua`). */
  lua: boolean;
  /** Command name and arguments, unquoted. */
  args: string[];
}

/** What {@linkcode monitor} returns. */
export interface Monitor {
  /** Every command seen so far, in the order the server ran them. */
  commands: MonitoredCommand[];
  /** Closes the monitoring connection. */
  close(): Promise<void>;
}

/**
 * Reads a `MONITOR` line, `<time> [<db> <client>] "arg" "arg" …`, the arguments quoted as
 * Redis quotes them (`\"`, `\\`, `\n`, `\xHH` bytes, …); `null` for any other line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMonitorLine } from "./redis_monitor.ts";
 * assert.deepEqual(parseMonitorLine('1.5 [1 lua] "SET" "k" "v"'), { db: 1, lua: true, args: ["SET", "k", "v"] });
 * ```
 */
export function parseMonitorLine(line: string): MonitoredCommand | null {
  const head = /^[\d.]+ \[(\d+) ([^\]]*)\] /.exec(line);
  if (!head) return null;
  const args: string[] = [];
  const escapes: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8 };
  let i = head[0].length;
  while (i < line.length) {
    if (line[i] !== '"') {
      i++;
      continue;
    }
    const bytes: number[] = [];
    for (i++; i < line.length && line[i] !== '"'; i++) {
      if (line[i] !== "\\") {
        bytes.push(...new TextEncoder().encode(line[i]!));
      } else if (line[i + 1] === "x") {
        bytes.push(parseInt(line.slice(i + 2, i + 4), 16));
        i += 3;
      } else {
        const c = line[++i]!;
        bytes.push(escapes[c] ?? c.charCodeAt(0));
      }
    }
    i++;
    args.push(new TextDecoder().decode(new Uint8Array(bytes)));
  }
  return { db: Number(head[1]), lua: head[2] === "lua", args };
}

/** Opens a `MONITOR` connection to `redis`. */
export async function monitor(redis: TestRedis): Promise<Monitor> {
  const client = await connectRedis(parseRedisUrl(redis.url(0)), "test monitor");
  const commands: MonitoredCommand[] = [];
  await client.monitor((line) => {
    const command = parseMonitorLine(line);
    if (command) commands.push(command);
  });
  return { commands, close: () => closeRedis(client) };
}
