/**
 * One AMQP connection that heals itself, for the RabbitMQ broker.
 *
 * 1. `open()` connects once and fails fast: `BrokerConnectionError` naming host:port, or
 *    `PermissionMissingError` when Deno does not grant `--allow-net=<host>:<port>`;
 * 2. channels are opened lazily by name (`channel("publish", { confirm: true })`) and opened
 *    again after a channel error (a 406 on a declare closes only that channel);
 * 3. when the connection drops (RabbitMQ restarted, network, heartbeat timeout), it
 *    reconnects with backoff (100 ms doubling to 5 s, forever until `close()`), runs the
 *    `onReconnect` hooks (the broker redeclares its entities and restarts its consumers),
 *    then wakes everyone waiting in `whenUp()`.
 *
 * Each connection has a generation number: a delivery remembers the channel it came on, and
 * settling it after a reconnect does nothing (RabbitMQ already gave it back to its queue).
 *
 * `npm:amqplib@^0.10` is loaded here, lazily: it does not read the environment at import.
 * Its frame reader gets one fix, for py-amqp's 64-bit header integers (`long_tag.ts`).
 *
 * @module
 */

import { isIP } from "node:net";
import tls from "node:tls";
import { BrokerConnectionError, PermissionMissingError } from "../../errors.ts";
import { isPermissionError, requireNet } from "../../permissions.ts";
import { patchAmqplib } from "./long_tag.ts";
import type { AmqpTarget } from "./url.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

/** An amqplib channel (promise API), typed loosely: celeriac uses a handful of methods. */
export type AmqpChannel = Any;
/** An amqplib connection (`ChannelModel`). */
export type AmqpConnection = Any;

let amqplib: Promise<Any> | undefined;

function loadAmqplib(): Promise<Any> {
  return amqplib ??= (async () => {
    const mod = await import("npm:amqplib@^0.10");
    await patchAmqplib(); // py-amqp's `L` header integers (see long_tag.ts)
    return mod;
  })().catch((err) => {
    amqplib = undefined;
    throw err;
  });
}

/**
 * Closes a connection without hanging on a server that stopped answering: the AMQP close
 * handshake gets 2 s, then the socket is destroyed.
 */
async function closeConnection(conn: AmqpConnection): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([
    conn.close().then(() => true, () => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 2000)),
  ]);
  clearTimeout(timer);
  if (!closed) {
    try {
      conn.connection?.stream?.destroy();
    } catch {
      // Already gone.
    }
  }
}

/**
 * Runs `start` (which calls `tls.connect` synchronously, as amqplib does) so that an IP
 * address is not passed as the TLS server name: amqplib always sets `servername` to the
 * host, and Deno refuses an IP there (SNI is for names). Without it, Deno verifies the
 * certificate against the IP address itself.
 */
function withoutIpServername<T>(active: boolean, start: () => Promise<T>): Promise<T> {
  if (!active) return start();
  const original = tls.connect;
  const mutable = tls as unknown as { connect: typeof tls.connect };
  mutable.connect = ((options: Record<string, unknown>, ...rest: unknown[]) => {
    if (typeof options?.servername === "string" && isIP(options.servername) !== 0) {
      options = { ...options };
      delete options.servername;
    }
    return (original as Any)(options, ...rest);
  }) as typeof tls.connect;
  try {
    return start();
  } finally {
    mutable.connect = original;
  }
}

/** Options of {@linkcode AmqpSession}. */
export interface AmqpSessionOptions {
  /** Who connects, for messages (`broker`). @default "broker" */
  role?: string;
  /** First reconnect delay. @default 100 */
  reconnectMinMs?: number;
  /** Longest reconnect delay. @default 5000 */
  reconnectMaxMs?: number;
}

/**
 * A self-healing AMQP connection with named, lazily opened channels.
 *
 * @example
 * ```ts ignore
 * import { AmqpSession } from "./connection.ts";
 * import { parseAmqpUrl } from "./url.ts";
 * const session = new AmqpSession(parseAmqpUrl("amqp://guest:guest@127.0.0.1:5672//"));
 * await session.open();
 * const ch = await session.channel("admin");
 * console.log((await ch.checkQueue("celery")).messageCount);
 * await session.close();
 * ```
 */
export class AmqpSession {
  /** Where it connects. */
  readonly target: AmqpTarget;
  #role: string;
  #minMs: number;
  #maxMs: number;
  #conn?: AmqpConnection;
  #generation = 0;
  #channels = new Map<string, Promise<AmqpChannel>>();
  #hooks: ((generation: number) => Promise<void>)[] = [];
  #upWaiters = new Set<() => void>();
  #reconnecting?: Promise<void>;
  #wake?: () => void;
  #closed = false;
  #lastError?: unknown;

  /** Builds the session; nothing connects before {@linkcode AmqpSession.open}. */
  constructor(target: AmqpTarget, options: AmqpSessionOptions = {}) {
    this.target = target;
    this.#role = options.role ?? "broker";
    this.#minMs = options.reconnectMinMs ?? 100;
    this.#maxMs = options.reconnectMaxMs ?? 5000;
  }

  /** `host:port`. */
  get where(): string {
    return `${this.target.host}:${this.target.port}`;
  }

  /** True while a connection is open. */
  get isUp(): boolean {
    return this.#conn !== undefined && !this.#reconnecting && !this.#closed;
  }

  /** Increments with every (re)connection. */
  get generation(): number {
    return this.#generation;
  }

  /** Runs after every reconnection (not the first open), before waiters wake. */
  onReconnect(hook: (generation: number) => Promise<void>): void {
    this.#hooks.push(hook);
  }

  /**
   * Connects (once; no retries).
   *
   * @throws {PermissionMissingError} When Deno does not grant `--allow-net=<host>:<port>`.
   * @throws {BrokerConnectionError} When RabbitMQ cannot be reached or refuses the login.
   */
  async open(): Promise<void> {
    if (this.#closed) throw new TypeError("Cannot connect: the AMQP session was closed");
    if (this.#conn) return;
    const what = `connect to RabbitMQ (${this.#role}) at ${this.where}`;
    requireNet(this.target.host, this.target.port, what);
    this.#adopt(await this.#connect());
  }

  async #connect(): Promise<AmqpConnection> {
    const t = this.target;
    const what = `connect to RabbitMQ (${this.#role}) at ${this.where}`;
    let mod: Any;
    try {
      mod = await loadAmqplib();
    } catch (cause) {
      throw new BrokerConnectionError(`Cannot ${what}: cannot load npm:amqplib`, { cause });
    }
    const connect = mod.connect ?? mod.default?.connect;
    let ca: string | undefined;
    if (t.tls && t.caFile) {
      try {
        ca = await Deno.readTextFile(t.caFile);
      } catch (cause) {
        if (isPermissionError(cause)) {
          throw new PermissionMissingError(`--allow-read=${t.caFile}`, `read ${t.caFile}`, {
            cause,
          });
        }
        throw new BrokerConnectionError(`Cannot ${what}: cannot read ssl_ca_certs ${t.caFile}`, {
          cause,
        });
      }
    }
    try {
      return await withoutIpServername(t.tls && isIP(t.host) !== 0, () =>
        connect(
          {
            protocol: t.tls ? "amqps" : "amqp",
            hostname: t.host,
            port: t.port,
            username: t.username,
            password: t.password,
            vhost: t.vhost,
            heartbeat: t.heartbeat,
            locale: "en_US",
          },
          {
            noDelay: true, // one round trip per ack/publish: Nagle would add 40 ms to each
            timeout: t.connectTimeout > 0 ? t.connectTimeout * 1000 : undefined,
            clientProperties: { connection_name: `celeriac ${this.#role}` },
            ...(t.tls ? { rejectUnauthorized: !t.insecureTls, ...(ca ? { ca } : {}) } : {}),
          },
        ));
    } catch (cause) {
      if (isPermissionError(cause)) {
        throw new PermissionMissingError(`--allow-net=${this.where}`, what, { cause });
      }
      const message = (cause as Error)?.message || String(cause);
      throw new BrokerConnectionError(`Cannot ${what}: ${message}`, { cause });
    }
  }

  #adopt(conn: AmqpConnection): void {
    this.#conn = conn;
    this.#generation++;
    this.#channels.clear();
    conn.on("error", (err: unknown) => {
      this.#lastError = err;
    });
    conn.on("close", (err: unknown) => {
      if (this.#conn !== conn) return;
      this.#conn = undefined;
      this.#channels.clear();
      if (err) this.#lastError = err;
      if (!this.#closed) this.#startReconnect();
    });
  }

  #startReconnect(): void {
    this.#reconnecting ??= this.#reconnectLoop().finally(() => {
      this.#reconnecting = undefined;
      const waiters = [...this.#upWaiters];
      this.#upWaiters.clear();
      for (const w of waiters) w();
    });
  }

  async #reconnectLoop(): Promise<void> {
    let delay = this.#minMs;
    while (!this.#closed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delay);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = undefined;
      if (this.#closed) return;
      let conn: AmqpConnection;
      try {
        conn = await this.#connect();
      } catch (err) {
        this.#lastError = err;
        delay = Math.min(delay * 2, this.#maxMs);
        continue;
      }
      if (this.#closed) {
        await closeConnection(conn);
        return;
      }
      this.#adopt(conn);
      try {
        for (const hook of this.#hooks) await hook(this.#generation);
        if (this.#conn === conn) return;
      } catch (err) {
        this.#lastError = err;
        if (this.#conn === conn) {
          this.#conn = undefined;
          this.#channels.clear();
          await closeConnection(conn);
        }
      }
      delay = Math.min(delay * 2, this.#maxMs);
    }
  }

  /**
   * Resolves `true` once the connection is up (at once when it is), `false` when `deadline`
   * (a `performance.now()` time) passes, the signal aborts or the session closes first.
   */
  whenUp(deadline = Infinity, signal?: AbortSignal): Promise<boolean> {
    if (this.isUp) return Promise.resolve(true);
    if (this.#closed || signal?.aborted || performance.now() >= deadline) {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", finish);
        this.#upWaiters.delete(finish);
        resolve(this.isUp);
      };
      const timer = deadline === Infinity
        ? undefined
        : setTimeout(finish, Math.max(0, deadline - performance.now()));
      signal?.addEventListener("abort", finish, { once: true });
      this.#upWaiters.add(finish);
    });
  }

  /**
   * The error for an operation attempted while the connection is down.
   *
   * @example
   * ```ts ignore
   * throw session.downError("publish");
   * ```
   */
  downError(what: string): BrokerConnectionError {
    const why = (this.#lastError as Error)?.message;
    return new BrokerConnectionError(
      `Cannot ${what}: the connection to RabbitMQ at ${this.where} is down${
        why ? ` (${why})` : ""
      }; reconnecting`,
      { cause: this.#lastError },
    );
  }

  /**
   * The named channel of the current connection, opened on first use and again after it
   * closed. `confirm: true` opens a publisher-confirm channel.
   *
   * @throws {BrokerConnectionError} When the connection is down.
   */
  channel(name: string, options: { confirm?: boolean } = {}): Promise<AmqpChannel> {
    const conn = this.#conn;
    if (!conn || this.#closed) return Promise.reject(this.downError(`open channel "${name}"`));
    let ch = this.#channels.get(name);
    if (!ch) {
      ch = (async () => {
        const channel = options.confirm
          ? await conn.createConfirmChannel()
          : await conn.createChannel();
        channel.on("error", (err: unknown) => {
          this.#lastError = err;
        });
        channel.on("close", () => {
          if (this.#channels.get(name) === ch) this.#channels.delete(name);
        });
        return channel;
      })();
      this.#channels.set(name, ch);
      ch.catch(() => {
        if (this.#channels.get(name) === ch) this.#channels.delete(name);
      });
    }
    return ch;
  }

  /** Closes the connection (its channels with it) and stops reconnecting. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    const conn = this.#conn;
    this.#conn = undefined;
    this.#channels.clear();
    await this.#reconnecting?.catch(() => {});
    if (conn) await closeConnection(conn);
    const waiters = [...this.#upWaiters];
    this.#upWaiters.clear();
    for (const w of waiters) w();
  }
}
