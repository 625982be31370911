/**
 * The RabbitMQ broker (AMQP 0-9-1), in kombu 5.2's layout so Python Celery workers and
 * clients share it (entities and their exact declare arguments: `entities.ts`).
 *
 * 1. publish: declare the target once per connection (the queue for the default exchange,
 *    else the exchange), then `basic.publish` on a confirm channel and wait for the
 *    broker's ack; while the connection is down, wait for the reconnect (bounded);
 * 2. fetch: consumers with a prefetch window of *held + free slots* (`prefetch.ts`);
 * 3. settle: ack; requeue to the front = `basic.reject(requeue)`; to the back = republish
 *    (header `redelivered: true`) then ack; dead letter = publish to the durable queue
 *    `celeriac.dead` with `x-celeriac-*` reason headers, then ack;
 * 4. fanout: `broadcast` publishes to `celery.pidbox` (fanout) or `celeryev` (topic);
 *    `subscribe` binds a private exclusive auto-delete queue with kombu's TTL/expiry;
 * 5. `rpc://` results: reply queues and their consumers (`declareReplyQueue`,
 *    `consumeReplies`, `publishReply`), used by `src/backends/rpc.ts`;
 * 6. reconnect: on a lost connection the session reconnects with backoff; this broker then
 *    redeclares every queue it declared, restarts subscriptions and reply consumers; fetch
 *    consumers restart on the next fetch. Unacknowledged messages were requeued by
 *    RabbitMQ, so nothing is lost (a task that was running may run again).
 *
 * @module
 */

import type {
  Broker,
  DeadLetter,
  Delivery,
  FetchOptions,
  QueueOptions,
  Route,
  Subscription,
} from "../broker.ts";
import { BrokerConnectionError, ConfigError } from "../../errors.ts";
import { stringifyJson } from "../../protocol/json.ts";
import type { TransportMessage } from "../../protocol/message.ts";
import { type AmqpMessage, bodyText, fromAmqp, toPublish } from "./codec.ts";
import { type AmqpChannel, AmqpSession } from "./connection.ts";
import {
  DEAD_LETTER_QUEUE,
  deadLetterQueue,
  exchangeFor,
  type ExchangeSpec,
  type QueueSpec,
  replyQueue,
  subscriptionQueue,
  taskQueue,
  wireArguments,
} from "./entities.ts";
import { type ConsumeChannel, Prefetcher, type Pushed } from "./prefetch.ts";
import { type AmqpTarget, parseAmqpUrl } from "./url.ts";

/** Options of {@linkcode AmqpBroker}. */
export interface AmqpBrokerOptions {
  /**
   * How long `publish` (and queue size/purge) wait for a lost connection to come back
   * before failing with `BrokerConnectionError`. @default 30000
   */
  reconnectWaitMs?: number;
  /** First reconnect delay (doubles on each failure). @default 100 */
  reconnectMinMs?: number;
  /** Longest reconnect delay. @default 5000 */
  reconnectMaxMs?: number;
}

interface Listener {
  /** A private queue bound to an exchange, or an existing queue consumed as is. */
  source: { exchange: string; pattern: string } | { queue: string };
  onMessage: (message: TransportMessage) => void;
  channel?: AmqpChannel;
  tag?: string;
  closed: boolean;
}

const MAX_DEAD_LETTERS_SCAN = 10_000;

function amqpCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "number" ? code : undefined;
}

function confirmPublish(
  ch: AmqpChannel,
  exchange: string,
  routingKey: string,
  message: TransportMessage,
): Promise<void> {
  const { body, options } = toPublish(message);
  return new Promise((resolve, reject) => {
    try {
      ch.publish(exchange, routingKey, body, options, (err: unknown) => {
        if (err) reject(err);
        else resolve();
      });
    } catch (err) {
      reject(err);
    }
  });
}

/**
 * The RabbitMQ broker.
 *
 * @example
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { AmqpBroker } from "./broker.ts";
 * const broker = new AmqpBroker("amqp://guest:secret@127.0.0.1:5672//");
 * assert.equal(broker.displayUrl, "amqp://guest:**@127.0.0.1:5672//");
 * await broker.connect();
 * await broker.declareQueue("celery");
 * await broker.close();
 * ```
 */
export class AmqpBroker implements Broker {
  /** Always `amqp`. */
  readonly kind = "amqp";
  /** The URL, password hidden. */
  readonly displayUrl: string;
  /** The parsed URL. */
  readonly target: AmqpTarget;
  #session: AmqpSession;
  #reconnectWaitMs: number;
  #specs = new Map<string, QueueSpec>();
  #declaring = new Map<string, Promise<void>>();
  #declaredIn = new Map<string, number>();
  #prefetch: Prefetcher;
  #listeners = new Set<Listener>();
  #connecting?: Promise<void>;
  #inFlight = new Set<Promise<void>>();
  #closed = false;

  /**
   * @throws {ConfigError} For a URL that is not an AMQP URL or has unknown parameters.
   */
  constructor(url: string, options: AmqpBrokerOptions = {}) {
    this.target = parseAmqpUrl(url);
    this.displayUrl = this.target.display;
    this.#reconnectWaitMs = options.reconnectWaitMs ?? 30_000;
    this.#session = new AmqpSession(this.target, {
      role: "broker",
      reconnectMinMs: options.reconnectMinMs,
      reconnectMaxMs: options.reconnectMaxMs,
    });
    this.#session.onReconnect(() => this.#restore());
    this.#prefetch = new Prefetcher(this.#session, (queue) => this.#ensureQueue(this.#spec(queue)));
  }

  /**
   * Opens the connection (no retries at start-up).
   *
   * @throws {BrokerConnectionError} When RabbitMQ cannot be reached or refuses the login.
   * @throws {PermissionMissingError} When Deno does not grant `--allow-net=<host>:<port>`.
   */
  async connect(): Promise<void> {
    if (this.#closed) throw new TypeError("Cannot connect: the AMQP broker was closed");
    try {
      await (this.#connecting ??= this.#session.open());
    } catch (err) {
      this.#connecting = undefined;
      throw err;
    }
  }

  /** True while the connection is up (false while it reconnects). */
  get connected(): boolean {
    return this.#session.isUp;
  }

  /** After a reconnect: redeclare what was declared, restart listeners. */
  async #restore(): Promise<void> {
    this.#declaredIn.clear();
    // A declare RabbitMQ refuses (406) fails again where it is used; it must not keep the
    // connection from coming back.
    const tolerant = (err: unknown) => {
      if (!(err instanceof ConfigError)) throw err;
    };
    for (const spec of this.#specs.values()) await this.#declareSpec(spec).catch(tolerant);
    for (const listener of this.#listeners) {
      if (!listener.closed) await this.#listen(listener).catch(tolerant);
    }
  }

  /** The known spec of a queue, else kombu's default task queue. */
  #spec(queue: string): QueueSpec {
    let spec = this.#specs.get(queue);
    if (!spec) this.#specs.set(queue, spec = taskQueue(queue));
    return spec;
  }

  /** Waits (bounded) for the connection. */
  async #up(what: string, waitMs = this.#reconnectWaitMs): Promise<void> {
    if (this.#closed) throw new TypeError(`Cannot ${what}: the AMQP broker was closed`);
    if (!(await this.#session.whenUp(performance.now() + waitMs))) {
      if (this.#closed) throw new TypeError(`Cannot ${what}: the AMQP broker was closed`);
      throw this.#session.downError(what);
    }
  }

  /** Runs `op` once the connection is up; again after a reconnect if the connection dropped. */
  async #withConnection<T>(what: string, op: () => Promise<T>): Promise<T> {
    const deadline = performance.now() + this.#reconnectWaitMs;
    for (;;) {
      await this.#up(what, Math.max(0, deadline - performance.now()));
      const generation = this.#session.generation;
      try {
        return await op();
      } catch (err) {
        const dropped = !this.#session.isUp || this.#session.generation !== generation;
        if (!dropped || this.#closed || performance.now() > deadline) throw err;
      }
    }
  }

  async #declareSpec(spec: QueueSpec): Promise<void> {
    const ch = await this.#session.channel("declare");
    const what = `declare queue "${spec.name}"`;
    try {
      for (const { exchange } of spec.bindings) await this.#declareExchangeOn(ch, exchange);
      await ch.assertQueue(spec.name, {
        durable: spec.durable,
        autoDelete: spec.autoDelete,
        exclusive: spec.exclusive,
        arguments: wireArguments(spec.arguments),
      });
      for (const b of spec.bindings) await ch.bindQueue(spec.name, b.exchange.name, b.routingKey);
    } catch (err) {
      throw this.#refused(what, err);
    }
    this.#declaredIn.set(`q:${spec.name}`, this.#session.generation);
  }

  async #declareExchangeOn(ch: AmqpChannel, spec: ExchangeSpec): Promise<void> {
    const key = `x:${spec.name}`;
    if (this.#declaredIn.get(key) === this.#session.generation) return;
    await ch.assertExchange(spec.name, spec.type, {
      durable: spec.durable,
      autoDelete: spec.autoDelete,
    });
    this.#declaredIn.set(key, this.#session.generation);
  }

  /** A 406/404/405 from RabbitMQ as a named error that says what to fix. */
  #refused(what: string, err: unknown): Error {
    const code = amqpCode(err);
    const text = (err as Error)?.message ?? String(err);
    if (code === 406 || code === 405) {
      return new ConfigError(
        `Cannot ${what}: RabbitMQ refused it (${text}); declare it with the same flags and arguments as the other clients`,
        { cause: err },
      );
    }
    if (code === 404) return new ConfigError(`Cannot ${what}: ${text}`, { cause: err });
    return err instanceof Error ? err : new BrokerConnectionError(`Cannot ${what}: ${text}`);
  }

  /** Declares once per connection (concurrent callers share the declare). */
  #ensureQueue(spec: QueueSpec): Promise<void> {
    const key = `q:${spec.name}`;
    if (this.#declaredIn.get(key) === this.#session.generation) return Promise.resolve();
    let pending = this.#declaring.get(key);
    if (!pending) {
      pending = this.#declareSpec(spec).finally(() => this.#declaring.delete(key));
      this.#declaring.set(key, pending);
    }
    return pending;
  }

  #ensureExchange(spec: ExchangeSpec): Promise<void> {
    const key = `x:${spec.name}`;
    if (this.#declaredIn.get(key) === this.#session.generation) return Promise.resolve();
    let pending = this.#declaring.get(key);
    if (!pending) {
      pending = (async () => {
        const ch = await this.#session.channel("declare");
        try {
          await this.#declareExchangeOn(ch, spec);
        } catch (err) {
          throw this.#refused(`declare exchange "${spec.name}"`, err);
        }
      })().finally(() => this.#declaring.delete(key));
      this.#declaring.set(key, pending);
    }
    return pending;
  }

  /** The exchange spec for a name: one a declared queue is bound to, else kombu's default. */
  #exchange(name: string): ExchangeSpec {
    for (const spec of this.#specs.values()) {
      for (const b of spec.bindings) if (b.exchange.name === name) return b.exchange;
    }
    return exchangeFor(name);
  }

  /**
   * Declares a queue as kombu does: its exchange (direct and durable by default, named like
   * the queue), the durable queue (with `x-max-priority` when `maxPriority` is set), and the
   * binding. Remembered: redeclared after a reconnect, and used when publishing to it.
   *
   * @throws {ConfigError} When RabbitMQ refuses it (406: it exists with other arguments).
   * @throws {RangeError} For a `maxPriority` outside 1..255.
   */
  async declareQueue(queue: string, options?: QueueOptions): Promise<void> {
    const known = this.#specs.get(queue);
    const spec = options === undefined && known ? known : taskQueue(queue, options);
    if (JSON.stringify(spec) !== JSON.stringify(known)) {
      this.#specs.set(queue, spec);
      this.#declaredIn.delete(`q:${queue}`);
    }
    await this.#withConnection(`declare queue "${queue}"`, () => this.#ensureQueue(spec));
  }

  /**
   * Publishes and waits for RabbitMQ's confirm. The default exchange (`""`) routes to the
   * queue named by the routing key, which is declared first (kombu's default flags unless
   * declared otherwise); a named exchange is declared first (its queue's spec, or kombu's
   * defaults: `celeryev` topic, `*.pidbox` fanout, else direct). While the connection is
   * down it waits up to `reconnectWaitMs`, and publishes again if the connection dropped
   * before the confirm (at-least-once).
   *
   * @throws {BrokerConnectionError} When the connection stays down, or RabbitMQ nacks.
   * @throws {ConfigError} When a declare is refused (406).
   */
  async publish(message: TransportMessage, route: Route): Promise<void> {
    await this.#withConnection("publish", async () => {
      if (route.exchange === "") await this.#ensureQueue(this.#spec(route.routingKey));
      else await this.#ensureExchange(this.#exchange(route.exchange));
      await this.#publishOn(route.exchange, route.routingKey, message);
    });
  }

  async #publishOn(exchange: string, routingKey: string, message: TransportMessage) {
    const ch = await this.#session.channel("publish", { confirm: true });
    const confirmed = confirmPublish(ch, exchange, routingKey, message);
    const tracked = confirmed.catch(() => {});
    this.#inFlight.add(tracked);
    try {
      await confirmed;
    } catch (err) {
      if (this.#session.isUp && (err as Error)?.message === "message nacked") {
        throw new BrokerConnectionError(
          `Cannot publish to "${exchange}" with key "${routingKey}": RabbitMQ refused it (nack)`,
        );
      }
      throw err;
    } finally {
      this.#inFlight.delete(tracked);
    }
  }

  /**
   * Up to `max` messages from the queues (declared first if unknown), waiting up to
   * `timeoutMs` for the first; an abort returns `[]` at once.
   *
   * @throws {BrokerConnectionError} When the connection is down and does not come back
   *   within `timeoutMs` (the worker backs off and fetches again).
   */
  async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    if (!queues.length || options.signal?.aborted || this.#closed) return [];
    const deadline = performance.now() + options.timeoutMs;
    const max = Math.max(1, Math.trunc(options.max) || 1);
    for (;;) {
      if (!(await this.#session.whenUp(deadline, options.signal))) {
        if (this.#closed || options.signal?.aborted) return [];
        throw this.#session.downError("fetch");
      }
      const generation = this.#session.generation;
      try {
        const pushed = await this.#prefetch.fetch(queues, {
          max,
          deadline,
          signal: options.signal,
        });
        return pushed.map((p) => this.#delivery(p));
      } catch (err) {
        if (this.#closed) return [];
        const dropped = !this.#session.isUp || this.#session.generation !== generation;
        if (!dropped) throw err;
      }
    }
  }

  #delivery(p: Pushed): Delivery {
    const message = fromAmqp(p.msg);
    const redelivered = p.msg.fields.redelivered || message.headers["redelivered"] === true;
    let settled = false;
    const settle = (): ConsumeChannel | undefined => {
      if (settled) return undefined;
      settled = true;
      this.#prefetch.settled(p.channel);
      return p.channel.open ? p.channel : undefined;
    };
    const ack = (channel: ConsumeChannel) => {
      try {
        channel.ch.ack(p.msg);
      } catch {
        // The channel closed meanwhile: RabbitMQ requeued the message.
      }
    };
    return {
      message,
      queue: p.queue,
      raw: p.msg.content,
      redelivered,
      ack: () => {
        const channel = settle();
        if (channel) ack(channel);
        return Promise.resolve();
      },
      requeue: async (position = "front") => {
        const channel = settle();
        if (!channel) return;
        if (position === "front") {
          try {
            channel.ch.reject(p.msg, true);
          } catch {
            // Closed meanwhile: RabbitMQ requeued it already.
          }
          return;
        }
        const again = { ...message, headers: { ...message.headers, redelivered: true } };
        await this.#publishOn("", p.queue, again);
        ack(channel);
      },
      deadLetter: async (reason: string) => {
        const channel = settle();
        if (!channel) return;
        await this.#ensureQueue(deadLetterQueue());
        const dead: TransportMessage = {
          ...message,
          headers: {
            ...message.headers,
            "x-celeriac-reason": reason,
            "x-celeriac-queue": p.queue,
            "x-celeriac-at": Date.now(),
          },
          properties: { ...message.properties, delivery_mode: 2 },
        };
        await this.#publishOn("", DEAD_LETTER_QUEUE, dead);
        ack(channel);
      },
    };
  }

  /** Runs a passive/admin operation on a throwaway channel (a 404 closes only it). */
  async #admin<T>(what: string, op: (ch: AmqpChannel) => Promise<T>): Promise<T> {
    return await this.#withConnection(what, async () => {
      const ch = await this.#session.channel(`admin:${crypto.randomUUID()}`);
      try {
        return await op(ch);
      } finally {
        await ch.close().catch(() => {});
      }
    });
  }

  /** Ready messages of a queue (`queue.declare` passive); 0 when it does not exist. */
  async queueSize(queue: string): Promise<number> {
    return await this.#admin(`read the size of queue "${queue}"`, async (ch) => {
      try {
        return (await ch.checkQueue(queue)).messageCount as number;
      } catch (err) {
        if (amqpCode(err) === 404) return 0;
        throw err;
      }
    });
  }

  /** Deletes a queue's ready messages (`queue.purge`); returns how many. 0 when missing. */
  async purge(queue: string): Promise<number> {
    return await this.#admin(`purge queue "${queue}"`, async (ch) => {
      try {
        return (await ch.purgeQueue(queue)).messageCount as number;
      } catch (err) {
        if (amqpCode(err) === 404) return 0;
        throw err;
      }
    });
  }

  /**
   * Dead letters from `celeriac.dead`, newest first: read with `basic.get` on a throwaway
   * channel whose close gives every message back, in order. `raw` is the whole message as
   * JSON in kombu's envelope shape (`body` as text, `headers`, `properties`).
   */
  async deadLetters(limit = 100): Promise<DeadLetter[]> {
    return await this.#admin("read dead letters", async (ch) => {
      const all: DeadLetter[] = [];
      for (let i = 0; i < MAX_DEAD_LETTERS_SCAN; i++) {
        let msg: AmqpMessage | false;
        try {
          msg = await ch.get(DEAD_LETTER_QUEUE, { noAck: false });
        } catch (err) {
          if (amqpCode(err) === 404) break;
          throw err;
        }
        if (!msg) break;
        const m = fromAmqp(msg);
        const {
          "x-celeriac-reason": reason,
          "x-celeriac-queue": queue,
          "x-celeriac-at": at,
          ...headers
        } = m.headers;
        all.push({
          reason: String(reason ?? ""),
          queue: String(queue ?? ""),
          raw: stringifyJson({
            body: bodyText(m.body),
            "content-encoding": m.contentEncoding,
            "content-type": m.contentType,
            headers,
            properties: m.properties,
          }),
          at: Number(at ?? 0),
        });
      }
      return all.reverse().slice(0, limit);
    });
  }

  /**
   * Fanout publish (fire-and-forget, but confirmed): declares the exchange as kombu does
   * (`celery.pidbox` fanout, `celeryev` topic) and publishes. Fails at once while the
   * connection is down.
   */
  async broadcast(exchange: string, routingKey: string, message: TransportMessage) {
    if (!this.#session.isUp) throw this.#session.downError(`broadcast to "${exchange}"`);
    await this.#ensureExchange(this.#exchange(exchange));
    await this.#publishOn(exchange, routingKey, message);
  }

  /**
   * Listens to an exchange through a private queue (exclusive, auto-delete, kombu's TTL and
   * expiry for pidbox and event queues) bound with `pattern` (`""` on a topic exchange means
   * `#`). Restarted after a reconnect (messages sent meanwhile are lost, as with kombu).
   */
  async subscribe(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription> {
    return await this.#addListener({ source: { exchange, pattern }, onMessage, closed: false });
  }

  async #addListener(listener: Listener): Promise<Subscription> {
    await this.#withConnection("subscribe", () => this.#listen(listener));
    this.#listeners.add(listener);
    return {
      close: async () => {
        if (listener.closed) return;
        listener.closed = true;
        this.#listeners.delete(listener);
        await listener.channel?.close().catch(() => {});
      },
    };
  }

  async #listen(listener: Listener): Promise<void> {
    const ch = await this.#session.channel(`listen:${crypto.randomUUID()}`);
    try {
      await this.#consumeOn(ch, listener);
      listener.channel = ch;
    } catch (err) {
      await ch.close().catch(() => {});
      throw err;
    }
  }

  async #consumeOn(ch: AmqpChannel, listener: Listener): Promise<void> {
    let queue: string;
    if ("exchange" in listener.source) {
      const { exchange, pattern } = listener.source;
      const spec = subscriptionQueue(exchange, pattern);
      spec.bindings = [{
        exchange: this.#exchange(exchange),
        routingKey: spec.bindings[0]!.routingKey,
      }];
      await this.#ensureExchange(spec.bindings[0]!.exchange);
      try {
        await ch.assertQueue(spec.name, {
          durable: spec.durable,
          autoDelete: spec.autoDelete,
          exclusive: spec.exclusive,
          arguments: wireArguments(spec.arguments),
        });
        await ch.bindQueue(spec.name, exchange, spec.bindings[0]!.routingKey);
      } catch (err) {
        throw this.#refused(`subscribe to "${exchange}"`, err);
      }
      queue = spec.name;
    } else {
      queue = listener.source.queue;
    }
    const { consumerTag } = await ch.consume(queue, (msg: AmqpMessage | null) => {
      if (!msg || listener.closed) return;
      try {
        listener.onMessage(fromAmqp(msg));
      } catch {
        // A listener's error must not break the channel.
      }
    }, { noAck: true });
    listener.tag = consumerTag;
  }

  /**
   * Declares an `rpc://` reply queue as Celery's RPC backend does (non-durable,
   * auto-delete, `x-expires`); redeclared after a reconnect.
   */
  async declareReplyQueue(queue: string, options: { expiresMs: number }): Promise<void> {
    const spec = replyQueue(queue, options.expiresMs);
    this.#specs.set(queue, spec);
    await this.#withConnection(`declare queue "${queue}"`, () => this.#ensureQueue(spec));
  }

  /** Consumes a (reply) queue without acks; restarted after a reconnect. */
  async consumeReplies(
    queue: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription> {
    return await this.#addListener({ source: { queue }, onMessage, closed: false });
  }

  /**
   * Publishes a result message to a reply queue through the default exchange, without
   * declaring anything (the client declared it; a missing queue drops the message, as
   * with Celery).
   */
  async publishReply(queue: string, message: TransportMessage): Promise<void> {
    await this.#withConnection("publish a reply", () => this.#publishOn("", queue, message));
  }

  /**
   * Waits (up to 5 s) for the confirms of publishes in flight, then closes the connection.
   * RabbitMQ requeues every unsettled delivery (marked redelivered).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#prefetch.wake();
    for (const l of this.#listeners) l.closed = true;
    this.#listeners.clear();
    await this.#connecting?.catch(() => {});
    if (this.#inFlight.size && this.#session.isUp) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.#inFlight),
        new Promise((resolve) => timer = setTimeout(resolve, 5000)),
      ]);
      clearTimeout(timer);
    }
    if (this.#session.isUp) await this.#prefetch.close();
    await this.#session.close();
  }
}
