/**
 * Fanout and bindings for the embedded SQLite broker, so remote control and events work on
 * the embedded default across processes.
 *
 * - `broadcast` appends a row to `celeriac_fanout`. Each subscribing broker instance polls
 *   the rows after the last one it saw (every {@linkcode FANOUT_POLL_MS}; a broadcast from
 *   the same process wakes it at once) and hands each row to the subscriptions that match
 *   (exchange, then AMQP topic rules on the routing key). A subscription sees only rows
 *   written after it started. Nothing waits for a listener: as kombu's fanout on Redis, a
 *   message nobody listens to is lost. Rows older than {@linkcode FANOUT_KEEP_MS} are
 *   deleted on each broadcast.
 * - `bindQueue` records `(exchange, routing key, queue)` in `celeriac_bindings`; a publish
 *   to a named exchange with bindings for its routing key goes to the bound queues (remote
 *   control's replies use this), any other publish to the queue named by its routing key.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { TransportMessage } from "../protocol/message.ts";
import { decodeRedisEnvelope, encodeRedisEnvelope } from "../protocol/redis_envelope.ts";
import { notify, sleepUnlessWoken } from "../sqlite/db.ts";
import { type Subscription, topicMatches } from "./broker.ts";

/** Milliseconds between polls of the fanout table while something is subscribed. */
export const FANOUT_POLL_MS = 50;
/** Milliseconds a fanout row is kept (a listener that falls further behind misses it). */
export const FANOUT_KEEP_MS = 60_000;

/** Tables of the fanout and bindings (created with the broker's schema). */
export const FANOUT_SCHEMA = `
CREATE TABLE IF NOT EXISTS celeriac_fanout (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  exchange TEXT NOT NULL,
  routing_key TEXT NOT NULL,
  raw TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS celeriac_fanout_at ON celeriac_fanout (at);
CREATE TABLE IF NOT EXISTS celeriac_bindings (
  exchange TEXT NOT NULL,
  routing_key TEXT NOT NULL,
  queue TEXT NOT NULL,
  PRIMARY KEY (exchange, routing_key, queue)
);
`;

interface FanoutRow {
  id: number;
  exchange: string;
  routing_key: string;
  raw: string;
}

interface Listener {
  exchange: string;
  pattern: string;
  onMessage: (message: TransportMessage) => void;
  /** Rows up to this id were written before the subscription started. */
  after: number;
}

function prepare(db: DatabaseSync) {
  const s = (sql: string): StatementSync => db.prepare(sql);
  return {
    insert: s(
      `INSERT INTO celeriac_fanout (exchange, routing_key, raw, at) VALUES (?, ?, ?, ?)`,
    ),
    trim: s(`DELETE FROM celeriac_fanout WHERE at < ?`),
    last: s(`SELECT coalesce(max(id), 0) AS id FROM celeriac_fanout`),
    since: s(
      `SELECT id, exchange, routing_key, raw FROM celeriac_fanout WHERE id > ? ORDER BY id`,
    ),
    bind: s(
      `INSERT OR IGNORE INTO celeriac_bindings (exchange, routing_key, queue) VALUES (?, ?, ?)`,
    ),
    unbind: s(
      `DELETE FROM celeriac_bindings WHERE exchange = ? AND routing_key = ? AND queue = ?`,
    ),
    bound: s(`SELECT queue FROM celeriac_bindings WHERE exchange = ? AND routing_key = ?`),
  };
}

/**
 * The fanout and bindings of one SQLite broker instance (one open database).
 *
 * @example Broadcast to a subscriber of the same file
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDatabase } from "../sqlite/db.ts";
 * import { FANOUT_SCHEMA, SqliteFanout } from "./sqlite_fanout.ts";
 * import { encodeJsonBody, JSON_CONTENT_TYPE } from "../protocol/message.ts";
 * const db = openDatabase(":memory:");
 * db.exec(FANOUT_SCHEMA);
 * const fanout = new SqliteFanout(db, "doc:fanout");
 * const got: unknown[] = [];
 * const sub = fanout.subscribe("celeryev", "worker.#", (m) => got.push(m.deliveryInfo?.routingKey));
 * const message = {
 *   headers: {}, properties: {}, contentType: JSON_CONTENT_TYPE, contentEncoding: "utf-8",
 *   body: encodeJsonBody({ type: "worker-online" }),
 * };
 * fanout.broadcast("celeryev", "task.multi", message);
 * fanout.broadcast("celeryev", "worker.online", message);
 * await new Promise((r) => setTimeout(r, 100));
 * assert.deepEqual(got, ["worker.online"]);
 * await sub.close();
 * fanout.close();
 * db.close();
 * ```
 */
export class SqliteFanout {
  #sql: ReturnType<typeof prepare>;
  #channel: string;
  #listeners = new Set<Listener>();
  #cursor = 0;
  #loop?: Promise<void>;
  #stop?: AbortController;
  #closed = false;

  /**
   * @param db The broker's open database (with {@linkcode FANOUT_SCHEMA} applied).
   * @param channel In-process wake-up channel (one per database file).
   */
  constructor(db: DatabaseSync, channel: string) {
    this.#sql = prepare(db);
    this.#channel = channel;
  }

  /** Appends a fanout row (kombu's Redis envelope), drops old rows, wakes local pollers. */
  broadcast(exchange: string, routingKey: string, message: TransportMessage): void {
    const raw = encodeRedisEnvelope(message, {
      exchange,
      routingKey,
      deliveryTag: crypto.randomUUID(),
    });
    const now = Date.now();
    this.#sql.insert.run(exchange, routingKey, raw, now);
    this.#sql.trim.run(now - FANOUT_KEEP_MS);
    notify(this.#channel);
  }

  /** Listens for rows written from now on to `exchange` whose routing key matches. */
  subscribe(
    exchange: string,
    pattern: string,
    onMessage: (message: TransportMessage) => void,
  ): Subscription {
    if (this.#closed) throw new TypeError("Cannot subscribe: the SQLite broker is closed");
    const after = Number((this.#sql.last.get() as { id: number }).id);
    if (this.#listeners.size === 0) this.#cursor = after;
    const listener: Listener = { exchange, pattern, onMessage, after };
    this.#listeners.add(listener);
    this.#loop ??= this.#poll();
    return {
      close: async () => {
        this.#listeners.delete(listener);
        if (this.#listeners.size === 0) await this.#halt();
      },
    };
  }

  /** Records a binding (idempotent). */
  bind(queue: string, exchange: string, routingKey: string): void {
    this.#sql.bind.run(exchange, routingKey, queue);
  }

  /** Removes a binding. */
  unbind(queue: string, exchange: string, routingKey: string): void {
    this.#sql.unbind.run(exchange, routingKey, queue);
  }

  /** Queues bound to `exchange` with `routingKey` (empty when none). */
  boundQueues(exchange: string, routingKey: string): string[] {
    if (!exchange) return [];
    return (this.#sql.bound.all(exchange, routingKey) as { queue: string }[]).map((r) => r.queue);
  }

  /** Stops polling and drops every subscription. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop?.abort();
  }

  async #halt(): Promise<void> {
    this.#stop?.abort();
    await this.#loop;
  }

  async #poll(): Promise<void> {
    const stop = this.#stop = new AbortController();
    try {
      while (!stop.signal.aborted && this.#listeners.size > 0) {
        this.#deliverNew();
        await sleepUnlessWoken(this.#channel, FANOUT_POLL_MS, stop.signal);
      }
    } finally {
      this.#loop = undefined;
      // A subscription that came while this loop was stopping gets a new one.
      if (this.#listeners.size > 0 && !this.#closed) this.#loop = this.#poll();
    }
  }

  #deliverNew(): void {
    let rows: FanoutRow[];
    try {
      rows = this.#sql.since.all(this.#cursor) as unknown as FanoutRow[];
    } catch {
      return; // Busy (another process holds the write lock): the next poll reads them.
    }
    for (const row of rows) {
      this.#cursor = Number(row.id);
      for (const l of [...this.#listeners]) {
        if (row.id <= l.after || l.exchange !== row.exchange) continue;
        if (l.pattern !== "" && !topicMatches(l.pattern, row.routing_key)) continue;
        let message: TransportMessage;
        try {
          // Decoded per listener: each gets its own object, as on Redis.
          message = decodeRedisEnvelope(row.raw).message;
        } catch {
          break; // Undecodable: fanout rows are not kept, so there is nothing to save.
        }
        l.onMessage(message);
      }
    }
  }
}
