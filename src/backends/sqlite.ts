/**
 * The embedded result backend: Celery result records in one SQLite file (`node:sqlite`),
 * readable from every process on the machine. Records are the same JSON as Celery's Redis
 * backend stores; a stored SUCCESS is never overwritten; records expire after `expires`
 * seconds (expired rows are deleted at connect and every few minutes by writers).
 * `waitFor` polls (50 ms doubling to 250 ms); a store from the same process wakes it at once.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { ResultTimeoutError } from "../errors.ts";
import { decodeResultMeta, encodeResultMeta, READY_STATES } from "../protocol/result.ts";
import type { ResultMeta } from "../protocol/result.ts";
import {
  notify,
  openDatabase,
  parseSqliteUrl,
  pollDelay,
  secondsParam,
  sleepUnlessWoken,
} from "../sqlite/db.ts";
import type { ResultBackend, WaitOptions } from "./backend.ts";

/** Options of {@linkcode SqliteBackend}. */
export interface SqliteBackendOptions {
  /** Seconds a record lives (Celery's `result_expires`); URL parameter `expires`. @default 86400 */
  expires?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS celeriac_results (
  task_id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  meta TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS celeriac_results_expires ON celeriac_results (expires_at);
`;

/** Milliseconds between two sweeps of expired records by one writer. */
const SWEEP_EVERY_MS = 5 * 60_000;

function prepare(db: DatabaseSync) {
  const s = (sql: string): StatementSync => db.prepare(sql);
  return {
    store: s(
      `INSERT INTO celeriac_results (task_id, status, meta, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (task_id) DO UPDATE
       SET status = excluded.status, meta = excluded.meta, expires_at = excluded.expires_at
       WHERE celeriac_results.status <> 'SUCCESS'`,
    ),
    get: s(`SELECT meta FROM celeriac_results WHERE task_id = ? AND expires_at > ?`),
    forget: s(`DELETE FROM celeriac_results WHERE task_id = ?`),
    sweep: s(`DELETE FROM celeriac_results WHERE expires_at <= ?`),
  };
}

/**
 * The embedded SQLite result backend (`sqlite://<path>[?expires=<s>]`).
 *
 * @example Store and read back
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { SqliteBackend } from "./sqlite.ts";
 * const backend = new SqliteBackend("sqlite://./.celeriac/celeriac.db");
 * await backend.connect();
 * await backend.store({ status: "SUCCESS", result: 5, traceback: null, children: [], date_done: null, task_id: "t1" });
 * assert.equal((await backend.waitFor("t1", { timeoutMs: 100 })).result, 5);
 * await backend.close();
 * ```
 */
export class SqliteBackend implements ResultBackend {
  /** Always `sqlite`. */
  readonly kind = "sqlite";
  /** The URL as given. */
  readonly displayUrl: string;
  /** The database file. */
  readonly path: string;
  /** Seconds a record lives. */
  readonly expires: number;
  #db?: DatabaseSync;
  #sql?: ReturnType<typeof prepare>;
  #close = new AbortController();
  #lastSweep = 0;

  /**
   * @param url `sqlite://<path>[?expires=<seconds>]`.
   * @throws {ConfigError} For a malformed URL or parameter.
   */
  constructor(url: string, options: SqliteBackendOptions = {}) {
    const parsed = parseSqliteUrl(url, ["expires"]);
    this.displayUrl = url;
    this.path = parsed.path;
    this.expires = secondsParam(parsed.params, "expires", options.expires ?? 86400);
  }

  get #channel(): string {
    return `sqlite-results:${this.path}`;
  }

  /**
   * Opens the file (creating it and the table) and deletes expired records. A closed backend
   * can connect again.
   *
   * @throws {BrokerConnectionError} When the file cannot be opened.
   */
  connect(): Promise<void> {
    if (this.#db) return Promise.resolve();
    try {
      const db = openDatabase(this.path);
      try {
        db.exec(SCHEMA);
        this.#sql = prepare(db);
      } catch (err) {
        db.close();
        throw err;
      }
      this.#db = db;
      this.#close = new AbortController();
      this.#sweep();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #open(): ReturnType<typeof prepare> {
    if (!this.#sql) throw new TypeError("Cannot use result backend: it is not connected");
    return this.#sql;
  }

  #sweep(): void {
    const now = Date.now();
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return;
    this.#lastSweep = now;
    this.#sql!.sweep.run(now);
  }

  /** Stores a record unless a SUCCESS is stored; wakes same-process waiters. */
  store(meta: ResultMeta): Promise<void> {
    try {
      const sql = this.#open();
      const text = encodeResultMeta(meta);
      sql.store.run(meta.task_id, meta.status, text, Date.now() + this.expires * 1000);
      this.#sweep();
      notify(`${this.#channel}:${meta.task_id}`);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #read(taskId: string): ResultMeta | null {
    const row = this.#open().get.get(taskId, Date.now()) as { meta: string } | undefined;
    return row ? decodeResultMeta(row.meta) : null;
  }

  /** The stored (unexpired) record, or `null`. */
  get(taskId: string): Promise<ResultMeta | null> {
    try {
      return Promise.resolve(this.#read(taskId));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Waits for a ready record, polling 50 ms doubling to 250 ms.
   *
   * @throws {ResultTimeoutError} When `timeoutMs` passes first.
   * @throws The signal's reason when it aborts, and a `TypeError` when the backend closes.
   */
  async waitFor(taskId: string, options: WaitOptions = {}): Promise<ResultMeta> {
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const signal = options.signal
      ? AbortSignal.any([options.signal, this.#close.signal])
      : this.#close.signal;
    for (let attempt = 0;; attempt++) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (this.#close.signal.aborted) {
        throw new TypeError(`Cannot wait for task "${taskId}": the result backend was closed`);
      }
      const meta = this.#read(taskId);
      if (meta && READY_STATES.has(meta.status)) return meta;
      const left = deadline - Date.now();
      if (left <= 0) throw new ResultTimeoutError(taskId, options.timeoutMs!);
      const how = await sleepUnlessWoken(
        `${this.#channel}:${taskId}`,
        Math.min(left, pollDelay(attempt)),
        signal,
      );
      if (how === "woken") attempt = -1;
    }
  }

  /** Deletes a record. */
  forget(taskId: string): Promise<void> {
    try {
      this.#open().forget.run(taskId);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Closes the file; pending waits reject. */
  close(): Promise<void> {
    this.#close.abort();
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
