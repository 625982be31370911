/**
 * celeriac's Redis client: one connection, RESP2 over `Deno.connect`, with what the broker,
 * the result backend and the beat store need and nothing else:
 *
 * - automatic pipelining: commands issued in the same tick (or while a write is on its way)
 *   go out as one write, replies are matched in order;
 * - Lua scripts: `EVAL` on first use per connection, then `EVALSHA` (and `EVAL` again when
 *   the server lost its script cache);
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
  /** Milliseconds a connect (and its handshake) may take. @default 5000 */
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

/** SHA-1 of UTF-8 text, in hex (what `EVALSHA` names a script by), computed synchronously. */
function sha1Hex(text: string): string {
  const data = new TextEncoder().encode(text);
  const words = new Uint32Array(((data.length + 8) >> 6) * 16 + 16);
  for (let i = 0; i < data.length; i++) words[i >> 2]! |= data[i]! << (24 - (i % 4) * 8);
  words[data.length >> 2]! |= 0x80 << (24 - (data.length % 4) * 8);
  const blocks = ((data.length + 8) >> 6) + 1;
  words[blocks * 16 - 1] = data.length * 8;
  words[blocks * 16 - 2] = Math.floor(data.length / 0x20000000);
  let [h0, h1, h2, h3, h4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
  const w = new Uint32Array(80);
  for (let block = 0; block < blocks; block++) {
    for (let t = 0; t < 16; t++) w[t] = words[block * 16 + t]!;
    for (let t = 16; t < 80; t++) {
      const x = w[t - 3]! ^ w[t - 8]! ^ w[t - 14]! ^ w[t - 16]!;
      w[t] = (x << 1) | (x >>> 31);
    }
    let [a, b, c, d, e] = [h0, h1, h2, h3, h4];
    for (let t = 0; t < 80; t++) {
      const f = t < 20
        ? ((b & c) | (~b & d)) + 0x5a827999
        : t < 40
        ? (b ^ c ^ d) + 0x6ed9eba1
        : t < 60
        ? ((b & c) | (b & d) | (c & d)) + 0x8f1bbcdc
        : (b ^ c ^ d) + 0xca62c1d6;
      const next = (((a << 5) | (a >>> 27)) + f + e + w[t]!) >>> 0;
      [e, d, c, b, a] = [d, c, (b << 30) | (b >>> 2), a, next];
    }
    h0 = (h0 + a) >>> 0;
    h1 = (h1 + b) >>> 0;
    h2 = (h2 + c) >>> 0;
    h3 = (h3 + d) >>> 0;
    h4 = (h4 + e) >>> 0;
  }
  return [h0, h1, h2, h3, h4].map((h) => (h >>> 0).toString(16).padStart(8, "0")).join("");
}

/**
 * A Lua script, sent by its SHA-1 once the server knows it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RedisScript } from "./client.ts";
 * // What `redis-cli SCRIPT LOAD "return 1"` answers:
 * assert.equal(new RedisScript("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
 * ```
 */
export class RedisScript {
  /** The Lua source. */
  readonly lua: string;
  #sha?: string;

  /** A script from its source. */
  constructor(lua: string) {
    this.lua = lua;
  }

  /**
   * Its SHA-1 in hex, the name `EVALSHA` calls it by; computed on first use (a first call
   * sends the source), so loading modules full of scripts hashes none of them.
   */
  get sha(): string {
    return this.#sha ??= sha1Hex(this.lua);
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
  /** Scripts sent in full since the last (re)connect. */
  #loaded = new WeakSet<RedisScript>();

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
    const timeoutMs = client.#connectTimeoutMs;
    const stream = await openStream(options, timeoutMs);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        client.#attach(stream),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new Deno.errors.TimedOut(`no reply to the handshake within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      client.disconnect();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  get #connectTimeoutMs(): number {
    return this.#options.connectTimeoutMs ?? 5000;
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

  /**
   * Runs a script: `EVAL` on its first use on this connection, `EVALSHA` after that, and
   * `EVAL` again when the server lost it (`NOSCRIPT`: restarted, or `SCRIPT FLUSH`).
   */
  async evalScript(
    script: RedisScript,
    keys: readonly RedisArg[],
    args: readonly RedisArg[],
  ): Promise<RedisReply> {
    // Sent at once either way, so a script keeps its place among pipelined commands: the
    // first use on this connection sends the source (which also caches it), later ones the
    // SHA-1.
    if (!this.#loaded.has(script)) {
      this.#loaded.add(script);
      return await this.call("EVAL", script.lua, keys.length, ...keys, ...args);
    }
    try {
      return await this.call("EVALSHA", script.sha, keys.length, ...keys, ...args);
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
    this.#loaded = new WeakSet(); // a restarted server may have lost its script cache
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
      stream = await openStream(this.#options, this.#connectTimeoutMs);
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
