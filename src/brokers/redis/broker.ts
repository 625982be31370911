/**
 * The Redis broker, in kombu 5.2's layout so Python Celery workers and clients share it.
 *
 * 1. publish: `LPUSH` a kombu envelope to the queue's priority bucket (a named exchange
 *    routes through `_kombu.binding.<exchange>`, direct matching);
 * 2. fetch: one Lua script pops up to `max` messages and records each in `unacked` and
 *    `unacked_index` (undecodable ones go to `celeriac.dead`); when none wait, `BRPOP` on a
 *    dedicated connection in slices of at most 1 s, then the same recording;
 * 3. settle: ack (`ZREM`+`HDEL` in the SETTLE script, batched, after any result stores it
 *    carries for a backend on this server: `Delivery.ackWith`), requeue (kombu's restore to
 *    the front, or the back of the line), dead-letter — each applied only while the message
 *    is still unacked. Acks issued before a fetch are written ahead of its FETCH on the same
 *    connection (`acksBeforeFetch`);
 * 4. the visibility restore of any process's old unacked messages (`unacked_mutex`), at
 *    connect and periodically, while this process keeps its own held messages fresh.
 *
 * The one window where a message can be lost is kombu's own: a crash between `BRPOP`
 * returning on the blocking connection and the RECORD script running on the command
 * connection (one round trip). Whenever messages are already waiting, FETCH pops and records
 * them atomically.
 *
 * @module
 */

import type {
  Broker,
  DeadLetter,
  Delivery,
  FetchOptions,
  Route,
  Subscription,
  TakeTaskMessagesOptions,
} from "../broker.ts";
import type { TransportMessage } from "../../protocol/message.ts";
import { encodeRedisEnvelope } from "../../protocol/redis_envelope.ts";
import {
  checkParams,
  closeRedis,
  connectRedis,
  parseRedisUrl,
  type RedisClient,
  type RedisTarget,
  secondsParam,
  serverOf,
} from "./connection.ts";
import { Bag } from "../../bag.ts";
import { createDelivery, type DeliveryContext, type Outstanding, type Settle } from "./delivery.ts";
import { RedisFanout } from "./fanout.ts";
import { GroupCommit } from "./group_commit.ts";
import {
  bindingKey,
  bindingMember,
  bucketKey,
  bucketKeys,
  parseBindingMember,
  PRIORITY_STEPS,
  UNACKED,
  UNACKED_INDEX,
} from "./keys.ts";
import { popFeatures, Popper } from "./popper.ts";
import { takeTaskMessages } from "./select.ts";
import { BROKER_SCRIPTS, readDeadLetters, restoreVisible, touchTags } from "./unacked.ts";

/** Options of {@linkcode RedisBroker}. */
export interface RedisBrokerOptions {
  /**
   * Seconds after which an unacked message of any worker is given back (kombu's
   * `visibility_timeout`). Also read from the URL: `?visibility_timeout=60`. @default 3600
   */
  visibilityTimeout?: number;
  /**
   * Milliseconds between visibility restores, which also re-score this process's held
   * messages (at most every half visibility timeout). 0 = only at connect. @default 60000
   */
  restoreIntervalMs?: number;
}

/**
 * The Redis broker.
 *
 * @example
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { RedisBroker } from "./broker.ts";
 * const broker = new RedisBroker("redis://:secret@127.0.0.1:6379/0");
 * assert.equal(broker.displayUrl, "redis://:**@127.0.0.1:6379/0");
 * await broker.connect();
 * await broker.close();
 * ```
 */
export class RedisBroker implements Broker {
  /** Always `redis`. */
  readonly kind = "redis";
  /**
   * True: acks (and the results carried with them) issued before a fetch are written before
   * its FETCH script on the same connection, so Redis applies them first.
   */
  readonly acksBeforeFetch = true;
  /** The URL, password hidden. */
  readonly displayUrl: string;
  /** Seconds before an unacked message (of any process) is restored. */
  readonly visibilityTimeout: number;
  #target: RedisTarget;
  #server: string;
  #restoreIntervalMs: number;
  #connecting?: Promise<void>;
  #client?: RedisClient;
  #popper?: Popper;
  #fanout: RedisFanout;
  /** Unsettled deliveries (a bag, not a map keyed by tag: see `src/bag.ts`). */
  #outstanding = new Bag<Outstanding>();
  /** Acks, and result stores carried with them, batched into SETTLE scripts. */
  #settles = new GroupCommit<Settle>((units) => {
    const tags: string[] = [];
    const keys: string[] = [];
    const writes: (string | number)[] = [];
    for (const { tag, write } of units) {
      if (tag !== null) tags.push(tag);
      if (write) {
        keys.push(write.key);
        writes.push(write.db, write.ttlSeconds, write.value);
      }
    }
    return this.#c().evalScript(
      BROKER_SCRIPTS.settle,
      [UNACKED, UNACKED_INDEX, ...keys],
      [this.#target.db, tags.length, ...tags, ...writes],
    );
  });
  #rotation = 0;
  #timer?: ReturnType<typeof setInterval>;
  #closed = false;

  /**
   * @throws {ConfigError} For a URL that is not a Redis URL or has unknown parameters.
   * @throws {RangeError} For a visibility timeout that is not positive.
   */
  constructor(url: string, options: RedisBrokerOptions = {}) {
    this.#target = parseRedisUrl(url);
    checkParams(this.#target, ["visibility_timeout"]);
    this.displayUrl = this.#target.display;
    this.#server = serverOf(this.#target);
    const vt = options.visibilityTimeout ?? secondsParam(this.#target, "visibility_timeout") ??
      3600;
    if (!(vt > 0)) {
      throw new RangeError(`Cannot create Redis broker: visibilityTimeout must be > 0, got ${vt}`);
    }
    this.visibilityTimeout = vt;
    this.#restoreIntervalMs = Math.max(0, options.restoreIntervalMs ?? 60_000);
    this.#fanout = new RedisFanout(this.#target, () => this.#c());
  }

  /**
   * Opens the command and blocking connections and runs a first visibility restore.
   *
   * @throws {BrokerConnectionError} When Redis cannot be reached (no retries at startup).
   * @throws {PermissionMissingError} When Deno does not grant `--allow-net=<host>:<port>`.
   */
  async connect(): Promise<void> {
    if (this.#closed) throw new TypeError("Cannot connect: the Redis broker was closed");
    try {
      await (this.#connecting ??= this.#open());
    } catch (err) {
      this.#connecting = undefined;
      throw err;
    }
  }

  async #open(): Promise<void> {
    const client = await connectRedis(this.#target, "broker");
    let blocking: RedisClient | undefined;
    try {
      blocking = await connectRedis(this.#target, "broker, blocking");
      const features = popFeatures(String(await client.call("INFO", "server")));
      this.#client = client;
      this.#popper = new Popper(client, blocking, features);
      await this.restoreVisible();
    } catch (err) {
      this.#client = this.#popper = undefined;
      await Promise.all([closeRedis(client), closeRedis(blocking)]);
      throw err;
    }
    if (this.#restoreIntervalMs > 0 && !this.#closed) {
      const every = Math.min(this.#restoreIntervalMs, this.visibilityTimeout * 500);
      const timer = setInterval(() => this.#tick().catch(() => {}), every);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  async #tick(): Promise<void> {
    const tags = this.#outstanding.values().map((o) => o.tag);
    await this.touch(...tags);
    // Never take back what this process still holds, even if its score went stale meanwhile.
    await restoreVisible(this.#c(), this.#lookup, this.visibilityTimeout, new Set(tags));
  }

  #c(): RedisClient {
    if (!this.#client) throw new TypeError("Cannot use Redis broker: call connect() first");
    return this.#client;
  }

  /** Adds the queue's binding to its direct exchange, as kombu's declare does. */
  async declareQueue(queue: string): Promise<void> {
    await this.#c().call("SADD", bindingKey(queue), bindingMember(queue, queue));
  }

  /** `SADD _kombu.binding.<exchange> "<routing key>SEPSEP<queue>"` (kombu's `queue_bind`). */
  async bindQueue(queue: string, exchange: string, routingKey: string): Promise<void> {
    await this.#c().call("SADD", bindingKey(exchange), bindingMember(routingKey, queue));
  }

  /** `SREM` of the binding {@linkcode RedisBroker.bindQueue} made. */
  async unbindQueue(queue: string, exchange: string, routingKey: string): Promise<void> {
    await this.#c().call("SREM", bindingKey(exchange), bindingMember(routingKey, queue));
  }

  /**
   * Takes (or with `moveTo` moves) the waiting messages of one task name out of a queue,
   * leaving the others in place and in order (see `select.ts`). Oldest first.
   */
  takeTaskMessages(
    queue: string,
    taskName: string,
    options?: TakeTaskMessagesOptions,
  ): Promise<TransportMessage[]> {
    return takeTaskMessages(this.#c(), queue, taskName, options);
  }

  /** Queues an (exchange, routing key) pair delivers to: `""` = the key itself; else bindings. */
  #lookup = async (exchange: string, routingKey: string): Promise<string[]> => {
    if (exchange === "") return [routingKey];
    const queues = new Set<string>();
    for (const member of await this.#c().call("SMEMBERS", bindingKey(exchange)) as string[]) {
      const b = parseBindingMember(member);
      if (b.routingKey === routingKey && b.queue) queues.add(b.queue);
    }
    return [...queues];
  };

  /** `LPUSH` the envelope (fresh delivery tag) to each target queue's priority bucket. */
  async publish(message: TransportMessage, route: Route): Promise<void> {
    const raw = encodeRedisEnvelope(message, {
      exchange: route.exchange,
      routingKey: route.routingKey,
      deliveryTag: crypto.randomUUID(),
    });
    const p = message.properties.priority;
    const priority = typeof p === "number" ? p : 0;
    const c = this.#c();
    const queues = await this.#lookup(route.exchange, route.routingKey);
    await Promise.all(queues.map((q) => c.call("LPUSH", bucketKey(q, priority), raw)));
  }

  /** Bucket keys in serving order: priority outer, queues inner from the rotation point. */
  #order(queues: readonly string[]): string[] {
    const r = this.#rotation % queues.length;
    const rotated = [...queues.slice(r), ...queues.slice(0, r)];
    const keys: string[] = [];
    for (const step of PRIORITY_STEPS) for (const q of rotated) keys.push(bucketKey(q, step));
    return keys;
  }

  /**
   * Pops up to `max` messages, recorded as unacked in the same script; when none wait,
   * blocks (BRPOP) up to `timeoutMs`. An abort returns `[]` at once; a message popped by the
   * command still in flight goes back to where it was, unmarked.
   */
  async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    if (!queues.length || options.signal?.aborted || this.#closed) return [];
    this.#c();
    const popper = this.#popper!;
    const keys = this.#order(queues);
    const max = Math.max(1, Math.trunc(options.max) || 1);
    // Acks issued before this fetch, still queued behind a batch in flight, go out first: the
    // worker counted their messages out of its window already.
    this.#settles.flushQueued();
    let popped = await popper.pop(keys, max, options.signal);
    const deadline = performance.now() + options.timeoutMs;
    while (popped?.length === 0 && !options.signal?.aborted && !this.#closed) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      popped = await popper.blockingPop(keys, Math.min(left, 1000), max, options.signal);
    }
    if (!popped?.length) return [];
    this.#rotation++;
    if (options.onTaken) {
      options.onTaken(popped.length);
      // The client writes what the callback sent in a microtask: let that go out before the
      // envelopes are decoded.
      await null;
    }
    const ctx: DeliveryContext = {
      client: () => this.#c(),
      lookup: this.#lookup,
      outstanding: this.#outstanding,
      server: this.#server,
      settle: (unit) => this.#settles.add(unit),
    };
    return popped.map((p) => createDelivery(p, ctx));
  }

  /**
   * Gives back every unacked message (of any process, Python's included) older than the
   * visibility timeout, under kombu's `unacked_mutex` (skipped while another process holds
   * it). Runs at connect and every `restoreIntervalMs`. Returns how many went back.
   */
  async restoreVisible(visibilityTimeout: number = this.visibilityTimeout): Promise<number> {
    return await restoreVisible(this.#c(), this.#lookup, visibilityTimeout);
  }

  /**
   * Gives this instance's unsettled deliveries back to the front of their queues, marked
   * redelivered (what a warm shutdown does); returns how many.
   */
  async restoreUnacked(): Promise<number> {
    const held = this.#outstanding.inOrder().map((o) => o.delivery).reverse();
    await Promise.all(held.map((d) => d.requeue("front")));
    return held.length;
  }

  /** This instance's deliveries that are not settled yet. */
  get unackedCount(): number {
    return this.#outstanding.size;
  }

  /**
   * Re-scores unacked messages by delivery tag to now (`ZADD XX`), so no visibility restore,
   * celeriac's or Python's, gives them back yet. The periodic restore does this for every
   * delivery this instance holds.
   */
  async touch(...tags: string[]): Promise<void> {
    await touchTags(this.#c(), tags);
  }

  /** Messages waiting in a queue, all priorities (sum of `LLEN` over the 4 buckets). */
  async queueSize(queue: string): Promise<number> {
    const c = this.#c();
    const sizes = await Promise.all(bucketKeys(queue).map((k) => c.call("LLEN", k)));
    return sizes.reduce((a: number, b) => a + Number(b), 0);
  }

  /** Deletes a queue's waiting messages (its 4 buckets, atomically); returns how many. */
  async purge(queue: string): Promise<number> {
    const keys = bucketKeys(queue);
    return Number(await this.#c().evalScript(BROKER_SCRIPTS.purge, keys, []));
  }

  /** Dead letters (`celeriac.dead`), newest first. */
  async deadLetters(limit = 100): Promise<DeadLetter[]> {
    return await readDeadLetters(this.#c(), limit);
  }

  /** kombu's fanout: `PUBLISH /<db>.<exchange>[/<routing key>] <envelope>`. */
  broadcast(exchange: string, routingKey: string, message: TransportMessage): Promise<void> {
    return this.#fanout.broadcast(exchange, routingKey, message);
  }

  /** Listens to a fanout exchange (`PSUBSCRIBE`, AMQP topic filtering). */
  subscribe(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription> {
    return this.#fanout.subscribe(exchange, pattern, onMessage);
  }

  /**
   * Interrupts the blocking pop in flight (a message it already popped is recorded first),
   * then closes the connections. Unsettled deliveries stay in `unacked`: settle them or call
   * {@linkcode RedisBroker.restoreUnacked} first, else any consumer restores them after the
   * visibility timeout.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#connecting?.catch(() => {});
    await this.#popper?.drain(2000);
    await this.#fanout.close();
    await Promise.all([closeRedis(this.#popper?.blocking), closeRedis(this.#client)]);
  }
}
