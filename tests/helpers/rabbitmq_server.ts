/**
 * A throwaway RabbitMQ node for tests, never the system service:
 *
 * 1. its own `epmd` on a free loopback port (`ERL_EPMD_PORT`), started and killed by us;
 * 2. `rabbitmq-server` run through the versioned `sbin` script (the `/usr/sbin` wrapper
 *    would `su rabbitmq` and drop our environment) with `RABBITMQ_ALLOW_INPUT` so the script
 *    `exec`s the Erlang VM: the child's pid *is* the VM, a signal reaches it directly;
 * 3. a temp dir holding HOME (Erlang cookie), mnesia, logs, an empty plugins file (no
 *    management plugin), an empty env file, and `rabbitmq.conf` with
 *    `listeners.tcp.default = 127.0.0.1:<port>`; node name `celeriac-<random>@localhost`,
 *    distribution bound to 127.0.0.1 on a free `RABBITMQ_DIST_PORT`;
 * 4. ready when the log says "Server startup complete" and the AMQP port accepts a TCP
 *    connection.
 *
 * 5. with `{ tls: true }`, also a TLS listener with a fresh self-signed certificate.
 *
 * Start-up takes seconds (about 3–7 s on 2 cores): share one server per test file.
 *
 * @module
 */

import { makeCertificate } from "./certificate.ts";
import { type Child, runChild, spawnChild } from "./process.ts";
import { freePort } from "./redis_server.ts";

const SBIN = "/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin";

/** A running test RabbitMQ. */
export interface TestRabbit {
  /** AMQP port on 127.0.0.1. */
  readonly port: number;
  /** Erlang node name, `celeriac-<id>@localhost`. */
  readonly nodename: string;
  /** Milliseconds the last start (or restart) took until the server accepted AMQP. */
  readonly startupMs: number;
  /** `amqp://guest:guest@127.0.0.1:<port>/<vhost>` (kombu's `//` for the default vhost). */
  url(vhost?: string): string;
  /**
   * With `{ tls: true }`: `amqps://guest:guest@127.0.0.1:<tls port>//` (a self-signed
   * certificate for localhost/127.0.0.1, in `certFile`); otherwise `undefined`.
   */
  readonly tlsUrl?: string;
  /** The self-signed certificate (PEM) of the TLS listener. */
  readonly certFile?: string;
  /** Runs `rabbitmqctl -n <node> ...args` and returns its stdout (throws on failure). */
  ctl(...args: string[]): Promise<string>;
  /**
   * Stops the node and starts it again on the same port and data dir (durable queues and
   * persistent messages survive). `crash: true` kills the VM (SIGKILL) instead of a clean
   * stop. Resolves once it accepts AMQP again.
   */
  restart(options?: { crash?: boolean }): Promise<void>;
  /** Stops the node (SIGTERM, SIGKILL after a grace period) and its epmd; removes the dir. */
  stop(): Promise<void>;
}

function rabbitEnv(dir: string, port: number, distPort: number, epmdPort: number, node: string) {
  return {
    HOME: `${dir}/home`,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: `${dir}/mnesia`,
    RABBITMQ_LOG_BASE: `${dir}/log`,
    RABBITMQ_LOGS: "-",
    RABBITMQ_CONFIG_FILE: `${dir}/rabbitmq.conf`,
    RABBITMQ_ADVANCED_CONFIG_FILE: `${dir}/advanced.config`,
    RABBITMQ_CONF_ENV_FILE: `${dir}/rabbitmq-env.conf`,
    RABBITMQ_ENABLED_PLUGINS_FILE: `${dir}/enabled_plugins`,
    RABBITMQ_ALLOW_INPUT: "1",
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-noinput -kernel inet_dist_use_interface {127,0,0,1}",
    ERL_EPMD_PORT: String(epmdPort),
    ERL_EPMD_ADDRESS: "127.0.0.1",
  };
}

async function acceptsTcp(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function writeConfig(dir: string, port: number, tlsPort?: number): Promise<void> {
  await Deno.mkdir(`${dir}/home`, { recursive: true });
  await Deno.mkdir(`${dir}/mnesia`, { recursive: true });
  await Deno.mkdir(`${dir}/log`, { recursive: true });
  const cookie = crypto.randomUUID().replaceAll("-", "").toUpperCase();
  await Deno.writeTextFile(`${dir}/home/.erlang.cookie`, cookie, { mode: 0o400 });
  await Deno.writeTextFile(`${dir}/enabled_plugins`, "[].\n");
  await Deno.writeTextFile(`${dir}/rabbitmq-env.conf`, "");
  await Deno.writeTextFile(`${dir}/advanced.config`, "[].\n");
  await Deno.writeTextFile(
    `${dir}/rabbitmq.conf`,
    [
      `listeners.tcp.default = 127.0.0.1:${port}`,
      // Tests publish bursts; never block publishers on a small CI disk or memory.
      "disk_free_limit.absolute = 1MB",
      "vm_memory_high_watermark.relative = 0.9",
      "log.console.level = info",
      ...(tlsPort === undefined ? [] : [
        `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
        `ssl_options.cacertfile = ${dir}/cert.pem`,
        `ssl_options.certfile = ${dir}/cert.pem`,
        `ssl_options.keyfile = ${dir}/key.pem`,
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
      ]),
      "",
    ].join("\n"),
  );
}

/**
 * Starts a private RabbitMQ node (and its epmd) on free loopback ports and waits until it
 * accepts AMQP connections. If the test process exits without
 * {@linkcode TestRabbit.stop}, both are killed and the dir removed.
 *
 * @throws {Error} When the node does not start within 60 s (its output is in the message).
 *
 * @example
 * ```ts ignore
 * const rabbit = await startRabbit();
 * try {
 *   console.log(`RabbitMQ up in ${rabbit.startupMs} ms at ${rabbit.url()}`);
 * } finally {
 *   await rabbit.stop();
 * }
 * ```
 */
export async function startRabbit(options: { tls?: boolean } = {}): Promise<TestRabbit> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-rabbit-" });
  const port = freePort();
  const distPort = freePort();
  const epmdPort = freePort();
  const tlsPort = options.tls ? freePort() : undefined;
  const nodename = `celeriac-${crypto.randomUUID().slice(0, 8)}@localhost`;
  const env = rabbitEnv(dir, port, distPort, epmdPort, nodename);
  if (options.tls) await makeCertificate(dir);
  await writeConfig(dir, port, tlsPort);

  const epmd = spawnChild("epmd", {
    args: ["-port", String(epmdPort), "-address", "127.0.0.1"],
    label: `epmd:${epmdPort}`,
  });
  let node: Child | undefined;
  let startupMs = 0;

  const launch = async (): Promise<void> => {
    const started = performance.now();
    const child = spawnChild(`${SBIN}/rabbitmq-server`, {
      args: [],
      env,
      label: `rabbitmq:${port}`,
    });
    node = child;
    try {
      await child.waitForLine(/Server startup complete/, { timeoutMs: 60_000 });
      const deadline = performance.now() + 10_000;
      while (!(await acceptsTcp(port))) {
        if (performance.now() > deadline) {
          throw new Error(`Cannot connect to RabbitMQ on port ${port} after its start-up`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } catch (err) {
      await child.stop({ signal: "SIGKILL" });
      throw err;
    }
    startupMs = Math.round(performance.now() - started);
  };

  const onUnload = () => {
    node?.kill("SIGKILL");
    epmd.kill("SIGKILL");
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Already gone.
    }
  };
  try {
    await launch();
  } catch (err) {
    await epmd.stop({ signal: "SIGKILL" });
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  globalThis.addEventListener("unload", onUnload);

  return {
    port,
    nodename,
    get startupMs() {
      return startupMs;
    },
    tlsUrl: tlsPort === undefined ? undefined : `amqps://guest:guest@127.0.0.1:${tlsPort}//`,
    certFile: tlsPort === undefined ? undefined : `${dir}/cert.pem`,
    url: (vhost = "/") =>
      `amqp://guest:guest@127.0.0.1:${port}/${vhost === "/" ? "/" : encodeURIComponent(vhost)}`,
    async ctl(...args: string[]) {
      const result = await runChild(`${SBIN}/rabbitmqctl`, {
        args: ["-n", nodename, ...args],
        env,
        timeoutMs: 60_000,
        label: "rabbitmqctl",
      });
      if (result.code !== 0) {
        throw new Error(
          `Cannot run rabbitmqctl ${args.join(" ")}: exit ${result.code}\n${
            result.stderr || result.stdout
          }`,
        );
      }
      return result.stdout;
    },
    async restart(options: { crash?: boolean } = {}) {
      await node?.stop({ signal: options.crash ? "SIGKILL" : "SIGTERM", graceMs: 30_000 });
      await launch();
    },
    async stop() {
      globalThis.removeEventListener("unload", onUnload);
      await node?.stop({ signal: "SIGTERM", graceMs: 15_000 });
      await epmd.stop({ signal: "SIGTERM", graceMs: 5_000 });
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
