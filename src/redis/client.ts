/**
 * celeriac's Redis client: one connection, RESP2 over `Deno.connect`, with what the broker,
 * the result backend and the beat store need and nothing else:
 *
 * - automatic pipelining: commands issued in the same tick (or while a write is on its way)
 *   go out as one write, replies are matched in order;
 * - Lua scripts by `EVALSHA`, falling back to `EVAL` when the server lost its script cache;
 * - `MULTI`/`EXEC` transactions as one unit;
 * - pub/sub (`SUBSCRIBE`, `PSUBSCRIBE`) and `MONITOR` on connections of their own;
 * - reconnecting with backoff (100 ms doubling to 2 s, forever) after a first connect that
 *   worked; meanwhile commands wait (or fail at once, with `whileDown: "fail"`), commands
 *   whose replies were lost are sent again, subscriptions are renewed, and `onReady`
 *   callbacks run.
 *
 * @module
 */

import { BrokerConnectionError } from "../errors.ts";
import {
  CommandEncoder,
  type RedisArg,
  type RedisReply,
  RedisReplyError,
  ReplyParser,
} from "./resp.ts";
import { type ByteStream, openStream } from "./transport.ts";

export { type RedisArg, type RedisReply, RedisReplyError };

/** How to reach the server. */
export interface RedisClientOptions {
  /** Host name or address. */
  host: string;
  /** Port. */
  port: number;
  /** Database (`SELECT`ed on every connect). @default 0 */
  db?: number;
  /** ACL user (`AUTH user password`). */
  username?: string;
  /** Password (`AUTH`). */
  password?: string;
  /** `rediss://`. */
  tls?: boolean;
  /** TLS without certificate checks. */
  insecureTls?: boolean;
  /** Milliseconds a connect may take. @default 5000 */
  connectTimeoutMs?: number;
  /**
   * While the connection is down: `"queue"` keeps commands until the reconnect, `"fail"`
   * rejects them at once (for callers that retry on their own). @default "queue"
   */
  whileDown?: "queue" | "fail";
}

/** The connection's state. */
export type RedisStatus = "ready" | "reconnecting" | "closed";

interface Pending {
  /** Commands written together (more than one for a transaction). */
  commands: RedisArg[][];
  /** Replies that complete it. */
  expect: number;
  count: number;
  error?: RedisReplyError;
  /** Part of one connection's handshake: failed, never sent again, when it breaks. */
  handshake?: boolean;
  resolve(reply: RedisReply): void;
  reject(err: unknown): void;
}

/**
 * A Lua script, sent by its SHA-1 once the server knows it.
 *
 * @example
 * ```ts ignore
 * const GET_OR = new RedisScript("return redis.call('GET', KEYS[1]) or ARGV[1]");
 * await client.evalScript(GET_OR, ["k"], ["fallback"]);
 * ```
 */
export class RedisScript {
  /** The Lua source. */
  readonly lua: string;
  /** Its SHA-1 in hex, once computed. */
  sha?: string;
  #computing?: Promise<string>;

  /** A script from its source. */
  constructor(lua: string) {
    this.lua = lua;
  }

  /** Computes (once) the SHA-1 `EVALSHA` names it by. */
  digest(): Promise<string> {
    return this.#computing ??= crypto.subtle.digest("SHA-1", new TextEncoder().encode(this.lua))
      .then((hash) => {
        this.sha = [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join(
          "",
        );
        return this.sha;
      });
  }
}

const SUBSCRIPTION = new Set(["subscribe", "psubscribe", "unsubscribe", "punsubscribe"]);

/**
 * One Redis connection.
 *
 * @example
 * ```ts ignore
 * const client = await RedisClient.connect({ host: "127.0.0.1", port: 6379 });
 * await client.call("SET", "k", "v");
 * assert.equal(await client.call("GET", "k"), "v");
 * await client.quit();
 * ```
 */
export class RedisClient {
  #options: RedisClientOptions;
  #stream?: ByteStream;
  #status: RedisStatus = "reconnecting";
  #generation = 0;
  #parser = new ReplyParser();
  #encoder = new CommandEncoder();
  #queue: Pending[] = [];
  #inflight: Pending[] = [];
  #head = 0;
  #writing = false;
  #flushQueued = false;
  #attempt = 0;
  #timer?: ReturnType<typeof setTimeout>;
  #readyHandlers: (() => void)[] = [];
  #channels = new Set<string>();
  #patterns = new Set<string>();
  #pubsub = false;
  #onMessage?: (channel: string, text: string) => void;
  #onPMessage?: (pattern: string, channel: string, text: string) => void;
  #onMonitor?: (line: string) => void;
  #monitoring = false;

  private constructor(options: RedisClientOptions) {
    this.#options = options;
  }

  /**
   * Connects once (no retries) and runs `AUTH` and `SELECT`.
   *
   * @throws The runtime's connect error (refused, timed out, permission), or the server's
   *   error reply to `AUTH`/`SELECT` (a {@linkcode RedisReplyError}).
   */
  static async connect(options: RedisClientOptions): Promise<RedisClient> {
    const client = new RedisClient(options);
    const stream = await openStream(options, options.connectTimeoutMs ?? 5000);
    try {
      await client.#attach(stream);
    } catch (err) {
      client.disconnect();
      throw err;
    }
    return client;
  }

  /** `ready`, `reconnecting` (commands wait), or `closed`. */
  get status(): RedisStatus {
    return this.#status;
  }

  /** Runs `fn` after every reconnect (handshake done, subscriptions renewed). */
  onReady(fn: () => void): void {
    this.#readyHandlers.push(fn);
  }

  /** Sends one command; resolves its reply, rejects with its error reply. */
  call(...args: RedisArg[]): Promise<RedisReply> {
    return this.#send([args], 1);
  }

  /**
   * Runs `commands` in `MULTI`/`EXEC`; resolves `EXEC`'s array (an error reply of a command
   * inside it comes as a {@linkcode RedisReplyError} in its place).
   */
  multi(commands: RedisArg[][]): Promise<RedisReply[]> {
    return this.#send([["MULTI"], ...commands, ["EXEC"]], commands.length + 2).then((reply) => {
      if (!Array.isArray(reply)) throw new RedisReplyError("EXECABORT Transaction discarded");
      return reply;
    });
  }

  /** Runs a script: `EVALSHA`, or `EVAL` when the server does not know it (yet). */
  async evalScript(
    script: RedisScript,
    keys: readonly RedisArg[],
    args: readonly RedisArg[],
  ): Promise<RedisReply> {
    const sha = script.sha ?? await script.digest();
    try {
      return await this.call("EVALSHA", sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof RedisReplyError) || err.code !== "NOSCRIPT") throw err;
      return await this.call("EVAL", script.lua, keys.length, ...keys, ...args);
    }
  }

  /**
   * Puts the connection in pub/sub mode (only subscription commands from then on) and
   * delivers messages to `onMessage` (channels) and `onPMessage` (patterns).
   */
  listen(handlers: {
    onMessage?: (channel: string, text: string) => void;
    onPMessage?: (pattern: string, channel: string, text: string) => void;
  }): void {
    this.#pubsub = true;
    this.#onMessage = handlers.onMessage;
    this.#onPMessage = handlers.onPMessage;
  }

  #subscription(command: string, names: readonly string[]): Promise<void> {
    if (!this.#pubsub) {
      return Promise.reject(new TypeError(`Cannot ${command}: call listen() first`));
    }
    if (!names.length) return Promise.resolve();
    const set = command.startsWith("P") ? this.#patterns : this.#channels;
    for (const name of names) command.includes("UN") ? set.delete(name) : set.add(name);
    return this.#send([[command, ...names]], names.length).then(() => {});
  }

  /** `SUBSCRIBE`; renewed after every reconnect. */
  subscribe(...channels: string[]): Promise<void> {
    return this.#subscription("SUBSCRIBE", channels);
  }

  /** `UNSUBSCRIBE` of the named channels. */
  unsubscribe(...channels: string[]): Promise<void> {
    return this.#subscription("UNSUBSCRIBE", channels);
  }

  /** `PSUBSCRIBE`; renewed after every reconnect. */
  psubscribe(...patterns: string[]): Promise<void> {
    return this.#subscription("PSUBSCRIBE", patterns);
  }

  /** `PUNSUBSCRIBE` of the named patterns. */
  punsubscribe(...patterns: string[]): Promise<void> {
    return this.#subscription("PUNSUBSCRIBE", patterns);
  }

  /** `MONITOR`: every command the server runs, as its monitor line, to `onLine`. */
  async monitor(onLine: (line: string) => void): Promise<void> {
    this.#onMonitor = onLine;
    await this.call("MONITOR");
    this.#monitoring = true;
  }

  /** `QUIT` when the connection is up (replies on their way are read first), then closes. */
  async quit(): Promise<void> {
    if (this.#status === "ready") await this.call("QUIT").catch(() => {});
    this.disconnect();
  }

  /** Closes at once; commands waiting for a reply or a reconnect reject. */
  disconnect(): void {
    if (this.#status === "closed") return;
    this.#status = "closed";
    clearTimeout(this.#timer);
    this.#generation++;
    this.#stream?.close();
    this.#stream = undefined;
    const err = new BrokerConnectionError("Cannot finish Redis command: the connection was closed");
    for (const p of this.#takeUnanswered()) p.reject(err);
    for (const p of this.#queue.splice(0)) p.reject(err);
  }

  #send(commands: RedisArg[][], expect: number): Promise<RedisReply> {
    return new Promise<RedisReply>((resolve, reject) => {
      if (this.#status === "closed") {
        reject(new BrokerConnectionError("Cannot send Redis command: the connection is closed"));
        return;
      }
      if (this.#status === "reconnecting" && this.#options.whileDown === "fail") {
        reject(new BrokerConnectionError("Cannot send Redis command: the connection is down"));
        return;
      }
      this.#queue.push({ commands, expect, count: 0, resolve, reject });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushQueued || this.#writing || this.#status !== "ready") return;
    this.#flushQueued = true;
    queueMicrotask(() => this.#flush());
  }

  async #flush(): Promise<void> {
    this.#flushQueued = false;
    if (this.#writing) return;
    this.#writing = true;
    const generation = this.#generation;
    try {
      while (this.#queue.length && this.#stream && generation === this.#generation) {
        const batch = this.#queue;
        this.#queue = [];
        for (const p of batch) {
          for (const c of p.commands) this.#encoder.push(c);
          this.#inflight.push(p);
        }
        await this.#stream.write(this.#encoder.take());
      }
    } catch (err) {
      if (generation === this.#generation) this.#lost(err);
    } finally {
      this.#writing = false;
    }
    if (this.#queue.length) this.#scheduleFlush();
  }

  #onReply = (reply: RedisReply): void => {
    if (this.#pubsub && Array.isArray(reply)) {
      const kind = reply[0];
      if (kind === "message" || kind === "pmessage") {
        try {
          if (kind === "message") this.#onMessage?.(reply[1] as string, reply[2] as string);
          else this.#onPMessage?.(reply[1] as string, reply[2] as string, reply[3] as string);
        } catch {
          // A listener's own failure must not break the connection.
        }
        return;
      }
      if (typeof kind !== "string" || !SUBSCRIPTION.has(kind)) return;
    }
    if (this.#monitoring && typeof reply === "string" && reply !== "OK") {
      try {
        this.#onMonitor?.(reply);
      } catch {
        // as above
      }
      return;
    }
    const p = this.#inflight[this.#head];
    if (!p) return; // nothing asked for it: not ours to interpret
    if (reply instanceof RedisReplyError) p.error ??= reply;
    if (++p.count < p.expect) return;
    this.#inflight[this.#head++] = undefined as unknown as Pending;
    if (this.#head > 1024 && this.#head * 2 > this.#inflight.length) {
      this.#inflight = this.#inflight.slice(this.#head);
      this.#head = 0;
    }
    if (p.error) p.reject(p.error);
    else p.resolve(reply);
  };

  /** Sent, not yet answered, in order; the inflight list is emptied. */
  #takeUnanswered(): Pending[] {
    const out = this.#inflight.slice(this.#head);
    this.#inflight = [];
    this.#head = 0;
    return out;
  }

  /** Starts reading `stream`, sends the handshake first, waits for its replies. */
  async #attach(stream: ByteStream): Promise<void> {
    const generation = ++this.#generation;
    this.#stream = stream;
    this.#parser.reset();
    this.#status = "ready";
    void this.#readLoop(stream, generation);
    const { username, password, db } = this.#options;
    const first: Promise<RedisReply>[] = [];
    const front: Pending[] = [];
    const add = (args: RedisArg[], expect = 1) => {
      first.push(
        new Promise<RedisReply>((resolve, reject) =>
          front.push({ commands: [args], expect, count: 0, resolve, reject, handshake: true })
        ),
      );
    };
    if (password !== undefined) add(username ? ["AUTH", username, password] : ["AUTH", password]);
    if (db) add(["SELECT", db]);
    if (!this.#pubsub) add(["PING"]); // proves the server lets us in (NOAUTH otherwise)
    if (this.#channels.size) add(["SUBSCRIBE", ...this.#channels], this.#channels.size);
    if (this.#patterns.size) add(["PSUBSCRIBE", ...this.#patterns], this.#patterns.size);
    this.#queue.unshift(...front);
    this.#scheduleFlush();
    await Promise.all(first);
  }

  async #readLoop(stream: ByteStream, generation: number): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let error: unknown;
    try {
      for (;;) {
        const n = await stream.read(buf);
        if (n === null || generation !== this.#generation) break;
        this.#parser.feed(buf.subarray(0, n), this.#onReply);
      }
    } catch (err) {
      error = err;
    }
    if (generation === this.#generation) {
      this.#lost(error ?? new Error("the server closed the connection"));
    }
  }

  /** The connection broke: keep what can be sent again, then reconnect with backoff. */
  #lost(cause: unknown): void {
    if (this.#status === "closed") return;
    this.#generation++;
    this.#stream?.close();
    this.#stream = undefined;
    this.#status = "reconnecting";
    const err = new BrokerConnectionError(
      `Cannot finish Redis command: connection lost (${(cause as Error)?.message ?? cause})`,
      { cause },
    );
    const unanswered: Pending[] = [];
    for (const p of [...this.#takeUnanswered(), ...this.#queue.splice(0)]) {
      if (p.handshake) p.reject(err);
      else unanswered.push(p);
    }
    if (this.#options.whileDown === "fail") {
      for (const p of unanswered) p.reject(err);
    } else {
      for (const p of unanswered) {
        p.count = 0;
        p.error = undefined;
      }
      this.#queue = unanswered;
    }
    const delay = Math.min(100 * 2 ** Math.min(this.#attempt++, 5), 2000);
    this.#timer = setTimeout(() => this.#reconnect(), delay);
  }

  async #reconnect(): Promise<void> {
    if (this.#status !== "reconnecting") return;
    let stream: ByteStream;
    try {
      stream = await openStream(this.#options, this.#options.connectTimeoutMs ?? 5000);
    } catch (err) {
      this.#lost(err);
      return;
    }
    if ((this.#status as RedisStatus) === "closed") {
      stream.close(); // closed while connecting
      return;
    }
    try {
      await this.#attach(stream);
    } catch (err) {
      // A handshake error reply (say, the password changed): try again later.
      if (this.#stream === stream) this.#lost(err);
      return;
    }
    this.#attempt = 0;
    for (const fn of this.#readyHandlers) {
      try {
        fn();
      } catch {
        // a handler's own failure is not the connection's
      }
    }
  }
}
