/**
 * The embedded broker: queues in one SQLite file (`node:sqlite`), shared by every producer
 * and worker process on the machine, with no server to install.
 *
 * - A message row is *ready* (no owner) or *leased* (an owner and a lease end time).
 *   `fetch` claims ready rows in one `BEGIN IMMEDIATE` transaction, so two workers never
 *   get the same message.
 * - Order: priority buckets 0, 3, 6, 9 (0 first, as kombu's Redis transport), queues round
 *   robin, FIFO inside a bucket; `requeue("front")` and restored messages go first.
 * - At-least-once: a live broker renews its leases every third of the visibility timeout;
 *   when its process dies, its leases run out and the messages (ETA messages it was holding
 *   included) become ready again, marked redelivered. {@linkcode SqliteBroker.restoreUnacked}
 *   (run by `connect`) gives back at once what an earlier process with the same `owner` left.
 * - A waiting fetch polls (50 ms doubling to 250 ms); a publish from the same process wakes
 *   it at once. It returns `[]` when the abort signal fires.
 *
 * The raw form of a message is kombu's Redis envelope, so dead letters read the same as on
 * Redis.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { DecodeError } from "../errors.ts";
import { hostName } from "../host.ts";
import type { TransportMessage } from "../protocol/message.ts";
import { decodeRedisEnvelope, encodeRedisEnvelope } from "../protocol/redis_envelope.ts";
import {
  notify,
  openDatabase,
  parseSqliteUrl,
  pollDelay,
  promised,
  secondsParam,
  sleepUnlessWoken,
  transaction,
} from "../sqlite/db.ts";
import type { Broker, DeadLetter, Delivery, FetchOptions, Route, Subscription } from "./broker.ts";
import { priorityStep } from "./memory.ts";
import { FANOUT_SCHEMA, SqliteFanout } from "./sqlite_fanout.ts";

const PRIORITY_STEPS = [0, 3, 6, 9] as const;

/** Options of {@linkcode SqliteBroker}; URL parameters of the same name override none. */
export interface SqliteBrokerOptions {
  /**
   * Seconds a leased message stays invisible after its owner stopped renewing the lease
   * (its process died). URL parameter `visibility_timeout`. @default 3600
   */
  visibilityTimeout?: number;
  /**
   * Lease owner name. Give a stable, unique name per worker (URL parameter `owner`) to have
   * a restarted worker take back its unacked messages at once instead of after the
   * visibility timeout. Never share one owner between live processes.
   * @default `<host>:<pid>:<random>`, unique per broker instance
   */
  owner?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS celeriac_messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  queue TEXT NOT NULL,
  priority INTEGER NOT NULL,
  bucket INTEGER NOT NULL,
  ord INTEGER NOT NULL DEFAULT 0,
  raw TEXT NOT NULL,
  redelivered INTEGER NOT NULL DEFAULT 0,
  owner TEXT,
  token TEXT,
  lease_until INTEGER,
  published_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS celeriac_messages_ready
  ON celeriac_messages (queue, bucket, ord) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS celeriac_messages_leases
  ON celeriac_messages (lease_until) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS celeriac_messages_ord ON celeriac_messages (ord);
CREATE INDEX IF NOT EXISTS celeriac_messages_owner
  ON celeriac_messages (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS celeriac_queues (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS celeriac_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  reason TEXT NOT NULL,
  queue TEXT NOT NULL,
  raw TEXT NOT NULL,
  at INTEGER NOT NULL
);
`;

interface Row {
  id: number;
  queue: string;
  raw: string;
  redelivered: number;
}

type Statements = ReturnType<typeof prepare>;

function prepare(db: DatabaseSync) {
  const s = (sql: string): StatementSync => db.prepare(sql);
  return {
    insert: s(
      `INSERT INTO celeriac_messages (queue, priority, bucket, raw, published_at, ord)
       VALUES (?, ?, ?, ?, ?, (SELECT coalesce(max(ord), 0) + 1 FROM celeriac_messages))`,
    ),
    frontOrd: s(
      `SELECT coalesce(min(ord), 0) - 1 AS ord FROM celeriac_messages
       WHERE owner IS NULL AND queue = ? AND bucket = 0`,
    ),
    anyReady: s(
      `SELECT 1 FROM celeriac_messages WHERE owner IS NULL AND queue = ? LIMIT 1`,
    ),
    anyExpired: s(
      `SELECT 1 FROM celeriac_messages WHERE owner IS NOT NULL AND lease_until <= ? LIMIT 1`,
    ),
    expired: s(
      `SELECT id, queue FROM celeriac_messages
       WHERE owner IS NOT NULL AND lease_until <= ? ORDER BY id DESC`,
    ),
    owned: s(
      `SELECT id, queue FROM celeriac_messages WHERE owner = ? ORDER BY id DESC`,
    ),
    restore: s(
      `UPDATE celeriac_messages
       SET owner = NULL, token = NULL, lease_until = NULL, redelivered = 1, bucket = 0, ord = ?
       WHERE id = ?`,
    ),
    ready: s(
      `SELECT id, queue, raw, redelivered FROM celeriac_messages
       WHERE owner IS NULL AND queue = ? AND bucket = ? ORDER BY ord LIMIT ?`,
    ),
    lease: s(
      `UPDATE celeriac_messages SET owner = ?, token = ?, lease_until = ? WHERE id = ?`,
    ),
    renew: s(`UPDATE celeriac_messages SET lease_until = ? WHERE owner = ?`),
    ack: s(`DELETE FROM celeriac_messages WHERE id = ? AND token = ?`),
    requeueFront: s(
      `UPDATE celeriac_messages
       SET owner = NULL, token = NULL, lease_until = NULL, redelivered = 1, bucket = 0, ord = ?
       WHERE id = ? AND token = ?`,
    ),
    requeueBack: s(
      `UPDATE celeriac_messages
       SET owner = NULL, token = NULL, lease_until = NULL, redelivered = 1, bucket = priority,
           ord = (SELECT coalesce(max(ord), 0) + 1 FROM celeriac_messages)
       WHERE id = ? AND token = ?`,
    ),
    declare: s(`INSERT OR IGNORE INTO celeriac_queues (name) VALUES (?)`),
    size: s(`SELECT count(*) AS n FROM celeriac_messages WHERE owner IS NULL AND queue = ?`),
    purge: s(`DELETE FROM celeriac_messages WHERE owner IS NULL AND queue = ?`),
    unacked: s(`SELECT count(*) AS n FROM celeriac_messages WHERE owner = ?`),
    dead: s(`INSERT INTO celeriac_dead_letters (reason, queue, raw, at) VALUES (?, ?, ?, ?)`),
    deadList: s(
      `SELECT reason, queue, raw, at FROM celeriac_dead_letters ORDER BY id DESC LIMIT ?`,
    ),
  };
}

/**
 * The embedded SQLite broker (`sqlite://<path>`).
 *
 * @example Publish, fetch and ack through a file
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { SqliteBroker } from "./sqlite.ts";
 * import { encodeTaskMessage } from "../protocol/task.ts";
 * const broker = new SqliteBroker("sqlite://./.celeriac/doc.db");
 * await broker.connect();
 * await broker.publish(encodeTaskMessage({ id: "1", task: "t", origin: "o" }, new Date()), {
 *   exchange: "",
 *   routingKey: "celery",
 * });
 * const [delivery] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
 * await delivery!.ack();
 * await broker.close();
 * ```
 */
export class SqliteBroker implements Broker {
  /** Always `sqlite`. */
  readonly kind = "sqlite";
  /** The URL as given (it has no secret). */
  readonly displayUrl: string;
  /** The database file. */
  readonly path: string;
  /** Lease owner name of this instance. */
  readonly owner: string;
  /** Visibility timeout in milliseconds. */
  readonly visibilityTimeoutMs: number;
  #db?: DatabaseSync;
  #sql?: Statements;
  #fanout?: SqliteFanout;
  #renewTimer?: ReturnType<typeof setInterval>;
  #closed = false;
  #rotation = 0;
  #close = new AbortController();

  /**
   * @param url `sqlite://<path>[?visibility_timeout=<s>&owner=<name>]`.
   * @throws {ConfigError} For a malformed URL or parameter.
   */
  constructor(url: string, options: SqliteBrokerOptions = {}) {
    const parsed = parseSqliteUrl(url, ["visibility_timeout", "owner"]);
    this.displayUrl = url;
    this.path = parsed.path;
    const vt = secondsParam(
      parsed.params,
      "visibility_timeout",
      options.visibilityTimeout ?? 3600,
    );
    if (!(vt > 0)) {
      throw new RangeError(`Cannot create broker: visibilityTimeout must be > 0, got ${vt}`);
    }
    this.visibilityTimeoutMs = vt * 1000;
    this.owner = parsed.params.get("owner") ?? options.owner ??
      `${hostName()}:${Deno.pid}:${crypto.randomUUID().slice(0, 8)}`;
  }

  get #channel(): string {
    return `sqlite-broker:${this.path}`;
  }

  /**
   * Opens the file (creating it and its tables), restores this owner's leftovers and starts
   * renewing leases. A closed broker can connect again.
   *
   * @throws {BrokerConnectionError} When the file cannot be opened.
   */
  connect(): Promise<void> {
    if (this.#db) return Promise.resolve();
    this.#closed = false;
    this.#close = new AbortController();
    return promised(() => {
      const db = openDatabase(this.path);
      try {
        db.exec(SCHEMA);
        db.exec(FANOUT_SCHEMA);
        this.#sql = prepare(db);
        this.#fanout = new SqliteFanout(db, `${this.#channel}:fanout`);
      } catch (err) {
        db.close();
        throw err;
      }
      this.#db = db;
      this.restoreUnacked();
      const every = Math.max(10, Math.floor(this.visibilityTimeoutMs / 3));
      const timer = setInterval(() => this.#renew(), every);
      Deno.unrefTimer(timer as unknown as number);
      this.#renewTimer = timer;
    });
  }

  #open(): Statements {
    if (!this.#sql) throw new TypeError("Cannot use broker: it is not connected");
    return this.#sql;
  }

  #renew(): void {
    try {
      this.#sql?.renew.run(Date.now() + this.visibilityTimeoutMs, this.owner);
    } catch {
      // Busy for longer than the busy timeout: the next tick tries again.
    }
  }

  /** Runs a synchronous call on the open store as a promise (a throw rejects it). */
  #call<T>(fn: (sql: Statements, fanout: SqliteFanout) => T): Promise<T> {
    return promised(() => fn(this.#open(), this.#fanout!));
  }

  /** Records the queue name (queues also exist implicitly). */
  declareQueue(queue: string): Promise<void> {
    return this.#call((sql) => void sql.declare.run(queue));
  }

  /**
   * Appends the message to its queue's priority bucket (the queues bound to a named exchange
   * with its routing key, else the queue named by the routing key); wakes same-process
   * fetchers.
   */
  publish(message: TransportMessage, route: Route): Promise<void> {
    return this.#call((sql, fanout) => {
      const raw = encodeRedisEnvelope(message, {
        exchange: route.exchange,
        routingKey: route.routingKey,
        deliveryTag: crypto.randomUUID(),
      });
      const step = priorityStep(message.properties.priority);
      const bound = fanout.boundQueues(route.exchange, route.routingKey);
      const now = Date.now();
      if (bound.length === 0) sql.insert.run(route.routingKey, step, step, raw, now);
      else {
        transaction(this.#db!, () => {
          for (const queue of bound) sql.insert.run(queue, step, step, raw, now);
        });
      }
      notify(this.#channel);
    });
  }

  #restoreRows(rows: { id: number; queue: string }[]): void {
    const sql = this.#sql!;
    // Newest first, each to the front: the oldest ends up first, as it was fetched.
    for (const row of rows) {
      const { ord } = sql.frontOrd.get(row.queue) as { ord: number };
      sql.restore.run(ord, row.id);
    }
  }

  /**
   * Gives back, to the front of their queues, the messages leased to this instance's
   * `owner` (left by an earlier process of the same owner, or unsettled here); returns how
   * many. `connect` runs it.
   *
   * @example
   * ```ts ignore
   * const broker = new SqliteBroker("sqlite://./.celeriac/celeriac.db?owner=worker-1");
   * await broker.connect(); // worker-1's unacked messages are ready again
   * ```
   */
  restoreUnacked(): number {
    const sql = this.#open();
    const rows = sql.owned.all(this.owner) as unknown as { id: number; queue: string }[];
    if (!rows.length) return 0;
    transaction(this.#db!, () => this.#restoreRows(rows));
    notify(this.#channel);
    return rows.length;
  }

  /** Messages leased to this instance's owner and not settled yet. */
  get unackedCount(): number {
    return Number((this.#open().unacked.get(this.owner) as { n: number }).n);
  }

  #claim(queues: readonly string[], max: number): Row[] {
    const sql = this.#sql!;
    const now = Date.now();
    const hasExpired = sql.anyExpired.get(now) !== undefined;
    if (!hasExpired && !queues.some((q) => sql.anyReady.get(q) !== undefined)) return [];
    const order = queues.length
      ? [
        ...queues.slice(this.#rotation % queues.length),
        ...queues.slice(0, this.#rotation % queues.length),
      ]
      : [];
    const taken = transaction(this.#db!, () => {
      const expired = sql.expired.all(now) as unknown as { id: number; queue: string }[];
      this.#restoreRows(expired);
      const out: Row[] = [];
      for (const step of PRIORITY_STEPS) {
        for (const q of order) {
          if (out.length >= max) break;
          out.push(...sql.ready.all(q, step, max - out.length) as unknown as Row[]);
        }
      }
      const leaseUntil = now + this.visibilityTimeoutMs;
      for (const row of out) {
        const token = crypto.randomUUID();
        sql.lease.run(this.owner, token, leaseUntil, row.id);
        (row as Row & { token: string }).token = token;
      }
      return out;
    });
    if (taken.length) this.#rotation++;
    return taken;
  }

  /**
   * Claims up to `max` messages, waiting up to `timeoutMs` for the first (polling 50 ms
   * doubling to 250 ms; a publish from this process wakes it at once).
   */
  async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    if (!(options.max >= 1)) {
      throw new RangeError(`Cannot fetch: max must be >= 1, got ${options.max}`);
    }
    this.#open();
    const deadline = Date.now() + Math.max(0, options.timeoutMs);
    const signals = [this.#close.signal, ...(options.signal ? [options.signal] : [])];
    const signal = AbortSignal.any(signals);
    for (let attempt = 0;; attempt++) {
      if (this.#closed) return [];
      const rows = this.#claim(queues, options.max);
      if (rows.length) return rows.map((r) => this.#delivery(r as Row & { token: string }));
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) return [];
      const how = await sleepUnlessWoken(this.#channel, Math.min(left, pollDelay(attempt)), signal);
      if (how === "aborted") return [];
      if (how === "woken") attempt = -1;
    }
  }

  #delivery(row: Row & { token: string }): Delivery {
    let message: TransportMessage | null = null;
    let decodeError: DecodeError | undefined;
    try {
      message = decodeRedisEnvelope(row.raw).message;
      if (row.redelivered) message.deliveryInfo = { ...message.deliveryInfo!, redelivered: true };
    } catch (err) {
      decodeError = err instanceof DecodeError
        ? err
        : new DecodeError("Cannot decode message", row.raw, { cause: err });
    }
    const settle = (fn: (sql: Statements) => void) =>
      promised(() => {
        if (this.#closed) {
          throw new TypeError("Cannot settle message: the broker is closed (it comes back later)");
        }
        fn(this.#sql!);
      });
    return {
      message,
      ...(decodeError ? { decodeError } : {}),
      queue: row.queue,
      raw: row.raw,
      redelivered: row.redelivered === 1,
      ack: () => settle((sql) => sql.ack.run(row.id, row.token)),
      requeue: (position = "front") =>
        settle((sql) => {
          transaction(this.#db!, () => {
            if (position === "front") {
              const { ord } = sql.frontOrd.get(row.queue) as { ord: number };
              sql.requeueFront.run(ord, row.id, row.token);
            } else sql.requeueBack.run(row.id, row.token);
          });
          notify(this.#channel);
        }),
      deadLetter: (reason: string) =>
        settle((sql) =>
          transaction(this.#db!, () => {
            if (Number(sql.ack.run(row.id, row.token).changes) === 1) {
              sql.dead.run(reason, row.queue, row.raw, Date.now());
            }
          })
        ),
    };
  }

  /** Ready messages of a queue (all priorities; leased ones are not counted). */
  queueSize(queue: string): Promise<number> {
    return this.#call((sql) => Number((sql.size.get(queue) as { n: number }).n));
  }

  /** Deletes the ready messages of a queue; returns how many. */
  purge(queue: string): Promise<number> {
    return this.#call((sql) => Number(sql.purge.run(queue).changes));
  }

  /**
   * Fanout publish (remote control, events) through the `celeriac_fanout` table: every
   * subscribed broker instance on this file sees it within about 50 ms; nothing is kept
   * for listeners that come later.
   */
  broadcast(exchange: string, routingKey: string, message: TransportMessage): Promise<void> {
    return this.#call((_, fanout) => fanout.broadcast(exchange, routingKey, message));
  }

  /** Listens to a fanout exchange (AMQP topic rules on the routing key). */
  subscribe(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription> {
    return this.#call((_, fanout) => fanout.subscribe(exchange, pattern, onMessage));
  }

  /** Binds `queue` to a named exchange with a routing key (remote control's replies). */
  bindQueue(queue: string, exchange: string, routingKey: string): Promise<void> {
    return this.#call((_, fanout) => fanout.bind(queue, exchange, routingKey));
  }

  /** Removes a binding made by {@linkcode SqliteBroker.bindQueue}. */
  unbindQueue(queue: string, exchange: string, routingKey: string): Promise<void> {
    return this.#call((_, fanout) => fanout.unbind(queue, exchange, routingKey));
  }

  /** Dead letters, newest first. */
  deadLetters(limit = 100): Promise<DeadLetter[]> {
    return this.#call((sql) =>
      (sql.deadList.all(limit) as unknown as DeadLetter[]).map((r) => ({ ...r, at: Number(r.at) }))
    );
  }

  /**
   * Stops renewing leases, wakes waiting fetches and closes the file. Unsettled deliveries
   * stay leased: they come back after the visibility timeout, or at once to a new instance
   * with the same `owner`.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#renewTimer);
    this.#close.abort();
    this.#fanout?.close();
    this.#fanout = undefined;
    try {
      this.#db?.close();
    } catch {
      // Already closed.
    }
    this.#db = undefined;
    this.#sql = undefined;
    return Promise.resolve();
  }
}
