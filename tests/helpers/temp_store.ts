/**
 * Test helper: an embedded store (`sqlite://<temp dir>/celeriac.db`) in a fresh temporary
 * directory that is deleted at the end of the scope (`await using store = await tempStore()`).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";

/** A temporary embedded store. */
export interface TempStore {
  /** The temporary directory. */
  dir: string;
  /** The database file. */
  path: string;
  /** `sqlite://<path>`. */
  url: string;
  /** Runs SQL on the file through a connection of its own (as another process would). */
  exec(sql: string): void;
  /** Runs a query on the file through a connection of its own; rows as plain objects. */
  all(sql: string): Record<string, unknown>[];
  /** Deletes the directory. */
  cleanup(): Promise<void>;
  /** Same as `cleanup`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Creates a {@linkcode TempStore}. */
export async function tempStore(prefix = "celeriac-sqlite-"): Promise<TempStore> {
  const dir = await Deno.makeTempDir({ prefix });
  const path = `${dir}/celeriac.db`;
  const withDb = <T>(fn: (db: DatabaseSync) => T): T => {
    const db = new DatabaseSync(path);
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      return fn(db);
    } finally {
      db.close();
    }
  };
  const cleanup = async () => {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return {
    dir,
    path,
    url: `sqlite://${path}`,
    exec: (sql) => withDb((db) => db.exec(sql)),
    all: (sql) => withDb((db) => db.prepare(sql).all().map((row) => ({ ...row }))),
    cleanup,
    [Symbol.asyncDispose]: cleanup,
  };
}
