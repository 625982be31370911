/**
 * A throwaway redis-server for tests: a free loopback port, a temp dir, no persistence
 * (`--save "" --appendonly no`). Tests never rely on a system Redis.
 *
 * @module
 */

import { makeCertificate } from "./certificate.ts";
import { type Child, spawnChild } from "./process.ts";

/** A running test Redis. */
export interface TestRedis {
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>/<db>` (db 0 by default). */
  url(db?: number): string;
  /**
   * With `{ tls: true }`: the TLS listener's port (a fresh self-signed certificate, in the
   * server's dir as `cert.pem`).
   */
  readonly tlsPort?: number;
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

async function launch(port: number, dir: string, tlsPort?: number): Promise<Child> {
  const tls = tlsPort === undefined ? [] : [
    ...["--tls-port", String(tlsPort), "--tls-cert-file", `${dir}/cert.pem`],
    ...["--tls-key-file", `${dir}/key.pem`, "--tls-ca-cert-file", `${dir}/cert.pem`],
    ...["--tls-auth-clients", "no"],
  ];
  const child = spawnChild("redis-server", {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
      .concat(["--dir", dir], tls),
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
export async function startRedis(options: { tls?: boolean } = {}): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-redis-" });
  if (options.tls) await makeCertificate(dir);
  let port = freePort();
  let tlsPort = options.tls ? freePort() : undefined;
  let child: Child;
  try {
    child = await launch(port, dir, tlsPort);
  } catch {
    // another process took a port in between: one more try
    port = freePort();
    tlsPort = options.tls ? freePort() : undefined;
    child = await launch(port, dir, tlsPort);
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
    tlsPort,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    async cli(...args: string[]) {
      return (await cli(port, args)).out;
    },
    async restart() {
      await child.stop({ signal: "SIGKILL" });
      child = await launch(port, dir, tlsPort);
    },
    async stop() {
      globalThis.removeEventListener("unload", onUnload);
      await child.stop({ signal: "SIGTERM" });
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
