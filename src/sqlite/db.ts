/**
 * The embedded store's plumbing, shared by the `sqlite://` broker and result backend:
 * URL parsing, opening a database file for multi-process use (WAL, busy timeout), the
 * polling schedule of waits, and an in-process wake-up so that a producer and a worker in
 * the same process do not wait for a poll.
 *
 * @module
 */

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { BrokerConnectionError, ConfigError } from "../errors.ts";
import { permissionHint } from "../permissions.ts";

/** A parsed `sqlite://<path>[?name=value…]` URL. */
export interface SqliteUrl {
  /** The database file path as written (relative paths are relative to the cwd). */
  path: string;
  /** The query parameters. */
  params: Map<string, string>;
}

/**
 * Parses `sqlite://<path>`: `sqlite://./.celeriac/celeriac.db` (relative to the current
 * directory), `sqlite:///var/lib/celeriac.db` (absolute), `sqlite://:memory:` (private to
 * one connection, for tests). Only the parameters in `allowed` are accepted.
 *
 * @throws {ConfigError} For another scheme, an empty path or an unknown parameter.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSqliteUrl } from "./db.ts";
 * const url = parseSqliteUrl("sqlite://./.celeriac/celeriac.db?owner=w1", ["owner"]);
 * assert.equal(url.path, "./.celeriac/celeriac.db");
 * assert.equal(url.params.get("owner"), "w1");
 * assert.equal(parseSqliteUrl("sqlite:///tmp/c.db", []).path, "/tmp/c.db");
 * ```
 */
export function parseSqliteUrl(url: string, allowed: readonly string[]): SqliteUrl {
  const m = /^sqlite:\/\/([^?#]*)(?:\?([^#]*))?$/i.exec(url);
  if (!m || !m[1]) {
    throw new ConfigError(
      `Cannot use URL "${url}": expected sqlite://<path>, e.g. sqlite://./.celeriac/celeriac.db`,
    );
  }
  const params = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(m[2] ?? "")) {
    if (!allowed.includes(name)) {
      throw new ConfigError(
        `Cannot use URL "${url}": unknown parameter "${name}"${
          allowed.length ? ` (use ${allowed.join(", ")})` : " (none is accepted here)"
        }`,
      );
    }
    params.set(name, value);
  }
  return { path: decodeURIComponent(m[1]), params };
}

/**
 * Reads a positive number of seconds from a URL parameter.
 *
 * @throws {ConfigError} When the value is not a number > 0.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { secondsParam } from "./db.ts";
 * assert.equal(secondsParam(new Map([["t", "2.5"]]), "t", 1), 2.5);
 * assert.equal(secondsParam(new Map(), "t", 1), 1);
 * ```
 */
export function secondsParam(params: Map<string, string>, name: string, fallback: number): number {
  const text = params.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new ConfigError(`Cannot use ${name}=${text}: it must be a number of seconds > 0`);
  }
  return value;
}

/** Milliseconds a connection waits for another process's write lock before failing. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating the file and its directory if needed) a database for use by several
 * processes: WAL journal (readers never block the writer), `synchronous=NORMAL` (durable
 * across a process crash; a power cut may lose the last commits), a busy timeout of
 * {@linkcode BUSY_TIMEOUT_MS}.
 *
 * @throws {PermissionMissingError|Deno.errors.NotCapable} When Deno denies read or write
 *   access to the file (the worker CLI turns it into one line naming the flag).
 * @throws {BrokerConnectionError} When SQLite cannot open the file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDatabase } from "./db.ts";
 * const db = openDatabase(":memory:");
 * assert.deepEqual({ ...db.prepare("select 1 as one").get() }, { one: 1 });
 * db.close();
 * ```
 */
export function openDatabase(path: string): DatabaseSync {
  try {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    const db = new DatabaseSync(path);
    try {
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      if (path !== ":memory:") db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
    } catch (err) {
      db.close();
      throw err;
    }
    return db;
  } catch (err) {
    if (permissionHint(err)) throw err;
    throw new BrokerConnectionError(
      `Cannot open embedded store "${path}": ${(err as Error)?.message ?? err}`,
      { cause: err },
    );
  }
}

/**
 * Runs `fn` inside `BEGIN IMMEDIATE … COMMIT` (the write lock is taken first, so two
 * processes never deadlock on a lock upgrade); rolls back when it throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDatabase, transaction } from "./db.ts";
 * const db = openDatabase(":memory:");
 * db.exec("create table t (x)");
 * assert.throws(() => transaction(db, () => { db.exec("insert into t values (1)"); throw new Error("no"); }));
 * assert.deepEqual({ ...db.prepare("select count(*) as n from t").get() }, { n: 0 });
 * db.close();
 * ```
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const value = fn();
    db.exec("COMMIT");
    return value;
  } catch (err) {
    try {
      db.exec("ROLLBACK");
    } catch {
      // The transaction is already gone (SQLite rolled it back itself).
    }
    throw err;
  }
}

/**
 * Runs a synchronous store call and returns its value as a promise; a throw becomes a
 * rejection (the broker and backend interfaces are promise-based, `node:sqlite` is not).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { promised } from "./db.ts";
 * assert.equal(await promised(() => 2), 2);
 * await assert.rejects(promised(() => { throw new Error("busy"); }), /busy/);
 * ```
 */
export function promised<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

/** First poll interval of a waiting fetch or result wait (ms). */
export const POLL_MIN_MS = 50;
/** Largest poll interval (ms). */
export const POLL_MAX_MS = 250;

/**
 * The poll schedule of waits on the embedded store: 50 ms, then doubling, capped at 250 ms
 * (50, 100, 200, 250, 250, …). A wake-up from the same process cuts any interval short.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pollDelay } from "./db.ts";
 * assert.deepEqual([0, 1, 2, 3, 9].map(pollDelay), [50, 100, 200, 250, 250]);
 * ```
 */
export function pollDelay(attempt: number): number {
  return Math.min(POLL_MAX_MS, POLL_MIN_MS * 2 ** Math.min(attempt, 10));
}

const channels = new Map<string, Set<() => void>>();

/**
 * Wakes every in-process waiter of a channel (a database path plus a topic).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { notify, sleepUnlessWoken } from "./db.ts";
 * const slept = sleepUnlessWoken("doc:chan", 10_000);
 * notify("doc:chan");
 * assert.equal(await slept, "woken");
 * ```
 */
export function notify(channel: string): void {
  const set = channels.get(channel);
  if (!set) return;
  channels.delete(channel);
  for (const wake of set) wake();
}

/**
 * Sleeps up to `ms`, returning early when the channel is notified or the signal aborts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sleepUnlessWoken } from "./db.ts";
 * assert.equal(await sleepUnlessWoken("doc:timeout", 1), "timeout");
 * assert.equal(await sleepUnlessWoken("doc:abort", 10_000, AbortSignal.abort()), "aborted");
 * ```
 */
export function sleepUnlessWoken(
  channel: string,
  ms: number,
  signal?: AbortSignal,
): Promise<"woken" | "timeout" | "aborted"> {
  if (signal?.aborted) return Promise.resolve("aborted");
  return new Promise((resolve) => {
    let set = channels.get(channel);
    if (!set) channels.set(channel, set = new Set());
    const finish = (how: "woken" | "timeout" | "aborted") => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      const current = channels.get(channel);
      current?.delete(onWake);
      if (current?.size === 0) channels.delete(channel);
      resolve(how);
    };
    const onWake = () => finish("woken");
    const onAbort = () => finish("aborted");
    const timer = setTimeout(() => finish("timeout"), Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
    set.add(onWake);
  });
}
