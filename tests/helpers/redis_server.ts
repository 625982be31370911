/**
 * A throwaway redis-server for tests: a free loopback port, a temp dir, no persistence
 * (`--save "" --appendonly no`). Tests never rely on a system Redis.
 *
 * @module
 */

import { type Child, spawnChild } from "./process.ts";

/** A running test Redis. */
export interface TestRedis {
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>/<db>` (db 0 by default). */
  url(db?: number): string;
  /** Runs `redis-cli -h 127.0.0.1 -p <port> ...args` and returns its stdout. */
  cli(...args: string[]): Promise<string>;
  /** Kills it (SIGKILL, as a crash) and starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** Stops it (SIGTERM, waits for the exit) and removes its dir. */
  stop(): Promise<void>;
}

/**
 * A loopback port nobody listens on right now (bound on port 0, then closed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { freePort } from "./redis_server.ts";
 * assert.ok(freePort() > 0);
 * ```
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function cli(port: number, args: string[]): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", String(port), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { ok: out.success, out: new TextDecoder().decode(out.stdout) };
}

async function launch(port: number, dir: string): Promise<Child> {
  const child = spawnChild("redis-server", {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
      .concat(["--dir", dir]),
    label: `redis:${port}`,
  });
  try {
    await child.waitForLine(/Ready to accept connections/, { timeoutMs: 10_000 });
    // Ready means listening; PING proves it answers.
    for (let i = 0; i < 100; i++) {
      const { out } = await cli(port, ["PING"]);
      if (out.trim() === "PONG") return child;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`Cannot start redis-server on port ${port}: it does not answer PING`);
  } catch (err) {
    await child.stop({ signal: "SIGKILL" });
    throw err;
  }
}

/**
 * Starts redis-server on a free loopback port in a temp dir and waits until it answers
 * PING. If the test process exits without {@linkcode TestRedis.stop}, the server is killed.
 *
 * @example
 * ```ts ignore
 * const redis = await startRedis();
 * try {
 *   assert.equal((await redis.cli("PING")).trim(), "PONG");
 * } finally {
 *   await redis.stop();
 * }
 * ```
 */
export async function startRedis(): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-redis-" });
  let port = freePort();
  let child: Child;
  try {
    child = await launch(port, dir);
  } catch {
    port = freePort(); // another process took the port in between: one more try
    child = await launch(port, dir);
  }
  const onUnload = () => {
    child.kill("SIGKILL");
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  globalThis.addEventListener("unload", onUnload);
  return {
    port,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    async cli(...args: string[]) {
      return (await cli(port, args)).out;
    },
    async restart() {
      await child.stop({ signal: "SIGKILL" });
      child = await launch(port, dir);
    },
    async stop() {
      globalThis.removeEventListener("unload", onUnload);
      await child.stop({ signal: "SIGTERM" });
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
