/**
 * Where beat keeps the state of its entries (the scheduled time of the last run, a run
 * count), and who may send (the lease).
 *
 * Duties of a store:
 * 1. `load()` every entry's stored state;
 * 2. `commit(name, expected, next)`: **atomically** check that this beat may send (holds the
 *    lease) and that the stored state still is `expected`, then store `next`. Beat commits
 *    *before* it sends, so two beats (or a restarted one) can never both send the same
 *    (entry, slot): the second commit finds the state moved and fails;
 * 3. `acquire()`/`release()` the lease, for stores shared by several beats.
 *
 * Implementations: {@linkcode MemoryBeatStore} (in-process; a shared {@linkcode MemoryBeatData}
 * lets several beats in one process elect a leader), {@linkcode FileBeatStore} (a JSON file:
 * survives restarts, not highly available: one beat per file) and `RedisBeatStore`
 * (`./redis_store.ts`: a hash plus a `SET NX PX` lease; highly available).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/** The state of one entry. */
export interface EntryState {
  /** Scheduled time (unix ms) of the last run sent, or the anchor set when first seen. */
  lastRunAt: number;
  /** Runs sent so far. */
  totalRunCount: number;
  /** When the last run was actually sent (unix ms), `null` before the first. */
  lastSentAt: number | null;
}

/** A stored state with its raw text, which `commit` compares. */
export interface StoredState {
  /** The decoded state; `null` when the raw text could not be decoded. */
  state: EntryState | null;
  /** The raw stored text. */
  raw: string;
}

/** What {@linkcode BeatStore.commit} answers. */
export type CommitResult =
  | { status: "ok"; stored: StoredState }
  | { status: "conflict"; current: StoredState | null }
  | { status: "not-leader" };

/** A beat state store. */
export interface BeatStore {
  /** `memory`, `file` or `redis`. */
  readonly kind: string;
  /** For the banner and logs, without secrets. */
  readonly description: string;
  /** Whether several beats may share this store (a lease picks the one that sends). */
  readonly highlyAvailable: boolean;
  /** Opens it (connects, reads the file). */
  open(): Promise<void>;
  /** Every entry's stored state. */
  load(): Promise<Map<string, StoredState>>;
  /**
   * Acquires the lease, or renews it when held, for `ttlMs`. Returns whether this beat holds
   * it now. Stores that are not highly available always return `true`.
   */
  acquire(ttlMs: number): Promise<boolean>;
  /** Gives the lease up (only if still held), so another beat can take over at once. */
  release(): Promise<void>;
  /**
   * Stores `next` for entry `name` if, atomically, this beat holds the lease and the stored
   * raw text equals `expected` (`null`: nothing stored). Renews the lease for `ttlMs`.
   */
  commit(
    name: string,
    expected: string | null,
    next: EntryState,
    ttlMs: number,
  ): Promise<CommitResult>;
  /** Closes connections and files. */
  close(): Promise<void>;
}

/**
 * Encodes a state as stored (stable key order; times as ISO 8601 for people reading it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeState, encodeState } from "./store.ts";
 * const raw = encodeState({ lastRunAt: 0, totalRunCount: 1, lastSentAt: null });
 * assert.equal(raw, '{"lastRunAt":"1970-01-01T00:00:00.000Z","totalRunCount":1,"lastSentAt":null}');
 * assert.deepEqual(decodeState(raw), { lastRunAt: 0, totalRunCount: 1, lastSentAt: null });
 * ```
 */
export function encodeState(state: EntryState): string {
  return JSON.stringify({
    lastRunAt: new Date(state.lastRunAt).toISOString(),
    totalRunCount: state.totalRunCount,
    lastSentAt: state.lastSentAt === null ? null : new Date(state.lastSentAt).toISOString(),
  });
}

/** Decodes {@linkcode encodeState}'s text; `null` when it is not a valid state. */
export function decodeState(raw: string): EntryState | null {
  try {
    const v = JSON.parse(raw);
    const lastRunAt = Date.parse(v?.lastRunAt);
    const lastSentAt = v?.lastSentAt === null ? null : Date.parse(v?.lastSentAt);
    const totalRunCount = v?.totalRunCount;
    if (
      !Number.isFinite(lastRunAt) || (lastSentAt !== null && !Number.isFinite(lastSentAt)) ||
      !Number.isInteger(totalRunCount) || totalRunCount < 0
    ) {
      return null;
    }
    return { lastRunAt, totalRunCount, lastSentAt };
  } catch {
    return null;
  }
}

/** The state several {@linkcode MemoryBeatStore}s share (one "server"). */
export class MemoryBeatData {
  /** Entry name → raw state. */
  readonly entries: Map<string, string> = new Map();
  /** The lease: holder token and expiry (unix ms, `Date.now()` clock). */
  lease: { token: string; expiresAt: number } | null = null;
}

/**
 * An in-process store. Alone it is a volatile store for tests and `memory://` apps; several
 * stores built on one {@linkcode MemoryBeatData} behave like beats sharing a Redis (lease and
 * compare-and-set), which the tests use to check takeover with fake time.
 *
 * @example Only the lease holder may commit
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBeatData, MemoryBeatStore } from "./store.ts";
 * const data = new MemoryBeatData();
 * const a = new MemoryBeatStore(data), b = new MemoryBeatStore(data);
 * assert.equal(await a.acquire(1000), true);
 * assert.equal(await b.acquire(1000), false);
 * const next = { lastRunAt: 0, totalRunCount: 0, lastSentAt: null };
 * assert.equal((await b.commit("e", null, next, 1000)).status, "not-leader");
 * assert.equal((await a.commit("e", null, next, 1000)).status, "ok");
 * assert.equal((await a.commit("e", null, next, 1000)).status, "conflict");
 * ```
 */
export class MemoryBeatStore implements BeatStore {
  /** Always `memory`. */
  readonly kind = "memory";
  /** `memory`. */
  readonly description = "memory";
  /** True: stores on one {@linkcode MemoryBeatData} elect a leader. */
  readonly highlyAvailable = true;
  /** This store's lease token. */
  readonly token: string = crypto.randomUUID();
  #data: MemoryBeatData;

  /** A store on `data` (a fresh one by default). */
  constructor(data: MemoryBeatData = new MemoryBeatData()) {
    this.#data = data;
  }

  /** Nothing to open. */
  open(): Promise<void> {
    return Promise.resolve();
  }

  /** A copy of the stored states. */
  load(): Promise<Map<string, StoredState>> {
    const out = new Map<string, StoredState>();
    for (const [name, raw] of this.#data.entries) out.set(name, { state: decodeState(raw), raw });
    return Promise.resolve(out);
  }

  #holds(now: number): boolean {
    const lease = this.#data.lease;
    return lease !== null && lease.token === this.token && lease.expiresAt > now;
  }

  /** Takes the lease when free or expired, renews it when held. */
  acquire(ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const lease = this.#data.lease;
    if (lease === null || lease.expiresAt <= now || lease.token === this.token) {
      this.#data.lease = { token: this.token, expiresAt: now + ttlMs };
      return Promise.resolve(true);
    }
    return Promise.resolve(false);
  }

  /** Drops the lease if held. */
  release(): Promise<void> {
    if (this.#data.lease?.token === this.token) this.#data.lease = null;
    return Promise.resolve();
  }

  /** Lease check and compare-and-set, atomically (one synchronous step). */
  commit(
    name: string,
    expected: string | null,
    next: EntryState,
    ttlMs: number,
  ): Promise<CommitResult> {
    const now = Date.now();
    if (!this.#holds(now)) return Promise.resolve({ status: "not-leader" });
    const current = this.#data.entries.get(name) ?? null;
    if (current !== expected) {
      return Promise.resolve({
        status: "conflict",
        current: current === null ? null : { state: decodeState(current), raw: current },
      });
    }
    const raw = encodeState(next);
    this.#data.entries.set(name, raw);
    this.#data.lease = { token: this.token, expiresAt: now + ttlMs };
    return Promise.resolve({ status: "ok", stored: { state: { ...next }, raw } });
  }

  /** Nothing to close. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const FILE_FORMAT = "celeriac-beat-state";

/**
 * A JSON file store (the default when the broker is not Redis). Every commit rewrites the
 * file atomically (write a temporary file, flush it to disk, rename it over the old one), so
 * a crash leaves either the old or the new state, and a restarted beat neither sends a slot
 * twice nor skips one silently.
 *
 * Not highly available: it has no lease, so run **one** beat per state file (a second beat on
 * the same file would send every slot again).
 *
 * File format (version 1):
 * `{"format":"celeriac-beat-state","version":1,"entries":{"<name>":{"lastRunAt":"<ISO>","totalRunCount":3,"lastSentAt":"<ISO>"}}}`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileBeatStore } from "./store.ts";
 * const dir = await Deno.makeTempDir();
 * const store = new FileBeatStore(`${dir}/state.json`);
 * await store.open();
 * const next = { lastRunAt: 0, totalRunCount: 1, lastSentAt: 5 };
 * assert.equal((await store.commit("e", null, next)).status, "ok");
 * await store.close();
 * const again = new FileBeatStore(`${dir}/state.json`);
 * await again.open();
 * assert.deepEqual((await again.load()).get("e")?.state, next);
 * await again.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileBeatStore implements BeatStore {
  /** Always `file`. */
  readonly kind = "file";
  /** False: one beat per file. */
  readonly highlyAvailable = false;
  /** The file path. */
  readonly path: string;
  #entries = new Map<string, string>();
  #writing: Promise<void> = Promise.resolve();

  /** A store in the JSON file at `path` (created on the first commit). */
  constructor(path: string) {
    this.path = path;
  }

  /** `file <path>`. */
  get description(): string {
    return `file ${this.path}`;
  }

  /**
   * Reads the file if it exists.
   *
   * @throws {ConfigError} When the file exists but is not a state file (it is left as is).
   */
  async open(): Promise<void> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(
        `Cannot read beat state file "${this.path}": it is not JSON (move it away to start afresh)`,
        { cause: err },
      );
    }
    if (
      parsed?.format !== FILE_FORMAT || parsed?.version !== 1 || typeof parsed.entries !== "object"
    ) {
      throw new ConfigError(
        `Cannot read beat state file "${this.path}": it is not a celeriac beat state file (version 1)`,
      );
    }
    for (const [name, value] of Object.entries(parsed.entries ?? {})) {
      this.#entries.set(name, JSON.stringify(value));
    }
  }

  /** The states read at `open` plus those committed since. */
  load(): Promise<Map<string, StoredState>> {
    const out = new Map<string, StoredState>();
    for (const [name, raw] of this.#entries) out.set(name, { state: decodeState(raw), raw });
    return Promise.resolve(out);
  }

  /** Always true: a file store has no lease. */
  acquire(): Promise<boolean> {
    return Promise.resolve(true);
  }

  /** Nothing to release. */
  release(): Promise<void> {
    return Promise.resolve();
  }

  /** Compare-and-set in memory, then rewrite the file atomically before answering `ok`. */
  async commit(name: string, expected: string | null, next: EntryState): Promise<CommitResult> {
    const current = this.#entries.get(name) ?? null;
    if (current !== expected) {
      return {
        status: "conflict",
        current: current === null ? null : { state: decodeState(current), raw: current },
      };
    }
    const raw = encodeState(next);
    this.#entries.set(name, raw);
    try {
      await (this.#writing = this.#writing.catch(() => {}).then(() => this.#write()));
    } catch (err) {
      // Not on disk: forget it, so the next try compares against what the file holds.
      if (current === null) this.#entries.delete(name);
      else this.#entries.set(name, current);
      throw err;
    }
    return { status: "ok", stored: { state: { ...next }, raw } };
  }

  async #write(): Promise<void> {
    const entries: Record<string, unknown> = {};
    for (const [name, raw] of this.#entries) entries[name] = JSON.parse(raw);
    const text = JSON.stringify({ format: FILE_FORMAT, version: 1, entries }, null, 1) + "\n";
    const tmp = `${this.path}.${Deno.pid}.tmp`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      const bytes = new TextEncoder().encode(text);
      for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, this.path);
  }

  /** Waits for a pending write. */
  async close(): Promise<void> {
    await this.#writing.catch(() => {});
  }
}

/** Options of {@linkcode createBeatStore}. */
export interface BeatStoreOptions {
  /** Redis key prefix (Redis stores). @default "celeriac.beat" */
  keyPrefix?: string;
}

/**
 * Builds a store from a spec: `memory://` (in-process), `redis://…`/`rediss://…` (a Redis
 * hash plus lease; the driver loads only then), or a file path (`file://` URL or plain path)
 * for a JSON file store.
 *
 * @throws {ConfigError} For an unknown URL scheme.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createBeatStore } from "./store.ts";
 * assert.equal((await createBeatStore("memory://")).kind, "memory");
 * assert.equal((await createBeatStore("./celerybeat-schedule.json")).kind, "file");
 * ```
 */
export async function createBeatStore(
  spec: string,
  options: BeatStoreOptions = {},
): Promise<BeatStore> {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(spec);
  const scheme = m?.[1]?.toLowerCase();
  switch (scheme) {
    case undefined:
      return new FileBeatStore(spec);
    case "file":
      return new FileBeatStore(decodeURIComponent(new URL(spec).pathname));
    case "memory":
      return new MemoryBeatStore();
    case "redis":
    case "rediss": {
      const { RedisBeatStore } = await import("./redis_store.ts");
      return new RedisBeatStore(spec, options);
    }
    default:
      throw new ConfigError(
        `Cannot use beat state "${
          spec.replace(/:[^:@/]*@/, ":**@")
        }": scheme "${scheme}" is not supported (use a file path, memory:// or redis://)`,
      );
  }
}
