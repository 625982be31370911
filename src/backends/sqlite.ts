/**
 * The embedded result backend: Celery result records in one SQLite file (`node:sqlite`),
 * readable from every process on the machine. Records are the same JSON as Celery's Redis
 * backend stores; a stored SUCCESS is never overwritten; records expire after `expires`
 * seconds (expired rows are deleted at connect and every few minutes by writers).
 * `waitFor` polls (50 ms doubling to 250 ms); a store from the same process wakes it at once.
 *
 * Chords and saved groups follow the Redis backend's accounting (`src/backends/chord.ts`) in
 * three tables: a chord's size (`.s`) and adjustment (`.t`) in `celeriac_chords`, one row per
 * finished header member (`.j`, the member's encoded entry is its key, so a redelivered
 * member counts once) in `celeriac_chord_parts`, and saved group tuples in `celeriac_groups`.
 * `chordPartReturn` counts in one `BEGIN IMMEDIATE` transaction, so across processes exactly
 * the member that completes the chord gets the join.
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
  promised,
  secondsParam,
  sleepUnlessWoken,
  transaction,
} from "../sqlite/db.ts";
import type { ChordJoin, ChordPart, ResultBackend, WaitOptions } from "./backend.ts";
import { decodeChordPart, decodeSavedGroup, encodeChordPart, encodeSavedGroup } from "./chord.ts";

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
CREATE TABLE IF NOT EXISTS celeriac_chords (
  group_id TEXT PRIMARY KEY,
  size INTEGER,
  adjust INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS celeriac_chord_parts (
  group_id TEXT NOT NULL,
  entry TEXT NOT NULL,
  group_index INTEGER,
  PRIMARY KEY (group_id, entry)
);
CREATE TABLE IF NOT EXISTS celeriac_groups (
  group_id TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
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
    chordSize: s(
      `INSERT INTO celeriac_chords (group_id, size, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (group_id) DO UPDATE SET size = excluded.size, expires_at = excluded.expires_at`,
    ),
    chord: s(`SELECT size, adjust FROM celeriac_chords WHERE group_id = ?`),
    addPart: s(
      `INSERT OR IGNORE INTO celeriac_chord_parts (group_id, entry, group_index) VALUES (?, ?, ?)`,
    ),
    countParts: s(`SELECT count(*) AS n FROM celeriac_chord_parts WHERE group_id = ?`),
    parts: s(
      `SELECT entry FROM celeriac_chord_parts WHERE group_id = ?
       ORDER BY group_index IS NULL, group_index, entry`,
    ),
    deleteChord: s(`DELETE FROM celeriac_chords WHERE group_id = ?`),
    deleteParts: s(`DELETE FROM celeriac_chord_parts WHERE group_id = ?`),
    saveGroup: s(
      `INSERT INTO celeriac_groups (group_id, value, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (group_id) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
    ),
    group: s(`SELECT value FROM celeriac_groups WHERE group_id = ? AND expires_at > ?`),
    forgetGroup: s(`DELETE FROM celeriac_groups WHERE group_id = ?`),
    sweepChords: s(`DELETE FROM celeriac_chords WHERE expires_at <= ?`),
    sweepParts: s(
      `DELETE FROM celeriac_chord_parts
       WHERE group_id NOT IN (SELECT group_id FROM celeriac_chords)`,
    ),
    sweepGroups: s(`DELETE FROM celeriac_groups WHERE expires_at <= ?`),
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
    return promised(() => {
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
    });
  }

  #open(): ReturnType<typeof prepare> {
    if (!this.#sql) throw new TypeError("Cannot use result backend: it is not connected");
    return this.#sql;
  }

  #sweep(): void {
    const now = Date.now();
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return;
    this.#lastSweep = now;
    const sql = this.#sql!;
    sql.sweep.run(now);
    sql.sweepChords.run(now);
    sql.sweepParts.run();
    sql.sweepGroups.run(now);
  }

  /** Runs a synchronous call on the open file as a promise (a throw rejects it). */
  #call<T>(fn: (sql: ReturnType<typeof prepare>) => T): Promise<T> {
    return promised(() => fn(this.#open()));
  }

  /** Stores a chord's size (Celery's `.s` key) before its header is sent. */
  setChordSize(groupId: string, size: number): Promise<void> {
    return this.#call((sql) =>
      void sql.chordSize.run(groupId, size, Date.now() + this.expires * 1000)
    );
  }

  /**
   * Records one header member; the member that completes the chord (count = size +
   * adjustment, counted in one write transaction) gets every member in `group_index` order,
   * or the saved header group when there is one.
   */
  chordPartReturn(part: ChordPart): Promise<ChordJoin | null> {
    return this.#call((sql) =>
      transaction(this.#db!, (): ChordJoin | null => {
        sql.addPart.run(part.groupId, encodeChordPart(part), part.groupIndex);
        const chord = sql.chord.get(part.groupId) as
          | { size: number | null; adjust: number }
          | undefined;
        const count = Number((sql.countParts.get(part.groupId) as { n: number }).n);
        if (!chord || chord.size === null || count !== Number(chord.size) + Number(chord.adjust)) {
          return null;
        }
        const saved = sql.group.get(part.groupId, Date.now()) as { value: string } | undefined;
        if (saved) return { kind: "saved", tuple: decodeSavedGroup(saved.value) };
        const rows = sql.parts.all(part.groupId) as { entry: string }[];
        return { kind: "parts", parts: rows.map((r) => decodeChordPart(r.entry)) };
      })
    );
  }

  /** Deletes a finished chord's bookkeeping once its body was sent. */
  deleteChord(groupId: string): Promise<void> {
    return this.#call((sql) =>
      transaction(this.#db!, () => {
        sql.deleteParts.run(groupId);
        sql.deleteChord.run(groupId);
      })
    );
  }

  /** Stores a group's result tuple (Celery's `celery-taskset-meta-<gid>`). */
  saveGroup(groupId: string, tuple: unknown): Promise<void> {
    return this.#call((sql) =>
      void sql.saveGroup.run(groupId, encodeSavedGroup(tuple), Date.now() + this.expires * 1000)
    );
  }

  /** The tuple stored by `saveGroup`, or `null`. */
  restoreGroup(groupId: string): Promise<unknown | null> {
    return this.#call((sql) => {
      const row = sql.group.get(groupId, Date.now()) as { value: string } | undefined;
      return row ? decodeSavedGroup(row.value) : null;
    });
  }

  /** Deletes a stored group. */
  forgetGroup(groupId: string): Promise<void> {
    return this.#call((sql) => void sql.forgetGroup.run(groupId));
  }

  /** Stores a record unless a SUCCESS is stored; wakes same-process waiters. */
  store(meta: ResultMeta): Promise<void> {
    return this.#call((sql) => {
      const text = encodeResultMeta(meta);
      sql.store.run(meta.task_id, meta.status, text, Date.now() + this.expires * 1000);
      this.#sweep();
      notify(`${this.#channel}:${meta.task_id}`);
    });
  }

  #read(taskId: string): ResultMeta | null {
    const row = this.#open().get.get(taskId, Date.now()) as { meta: string } | undefined;
    return row ? decodeResultMeta(row.meta) : null;
  }

  /** The stored (unexpired) record, or `null`. */
  get(taskId: string): Promise<ResultMeta | null> {
    return promised(() => this.#read(taskId));
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
    return this.#call((sql) => void sql.forget.run(taskId));
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
