/**
 * An in-process result backend for tests and single-process demos.
 *
 * @module
 */

import { ResultTimeoutError } from "../errors.ts";
import {
  decodeResultMeta,
  encodeResultMeta,
  READY_STATES,
  type ResultMeta,
} from "../protocol/result.ts";
import type { ChordJoin, ChordPart, ResultBackend, WaitOptions } from "./backend.ts";
import { decodeChordPart, decodeSavedGroup, encodeChordPart, encodeSavedGroup } from "./chord.ts";

/** One chord's bookkeeping: Celery's `.s`, `.t` and `.j` keys, in memory. */
interface ChordState {
  size: number | null;
  adjust: number;
  /** Encoded part → score (`group_index`, `Infinity` when null), like the `.j` zset. */
  parts: Map<string, number>;
}

/**
 * The in-memory result backend.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBackend } from "./memory.ts";
 * const backend = new MemoryBackend();
 * assert.equal(await backend.get("nope"), null);
 * ```
 */
export class MemoryBackend implements ResultBackend {
  /** Always `memory`. */
  readonly kind = "memory";
  /** `memory://`. */
  readonly displayUrl = "memory://";
  #records = new Map<string, ResultMeta>();
  #waiters = new Map<string, Set<(meta: ResultMeta) => void>>();
  #chords = new Map<string, ChordState>();
  #groups = new Map<string, string>();

  /** Nothing to connect. */
  connect(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Stores a record unless a SUCCESS is already stored; wakes waiters on ready states. The
   * record goes through JSON as on a real backend, so it reads back as a client of Redis
   * would see it (a Date becomes a string, `undefined` in a list becomes `null`).
   *
   * @throws {TypeError} When the record cannot be written as JSON (a cycle).
   */
  store(meta: ResultMeta): Promise<void> {
    if (this.#records.get(meta.task_id)?.status === "SUCCESS") return Promise.resolve();
    let copy: ResultMeta;
    try {
      copy = decodeResultMeta(encodeResultMeta(meta));
    } catch (err) {
      return Promise.reject(err);
    }
    this.#records.set(meta.task_id, copy);
    if (READY_STATES.has(meta.status)) {
      const waiters = this.#waiters.get(meta.task_id);
      this.#waiters.delete(meta.task_id);
      for (const w of waiters ?? []) w(structuredClone(copy));
    }
    return Promise.resolve();
  }

  /** The stored record or null. */
  get(taskId: string): Promise<ResultMeta | null> {
    const meta = this.#records.get(taskId);
    return Promise.resolve(meta ? structuredClone(meta) : null);
  }

  /** Waits for a ready record. */
  waitFor(taskId: string, options: WaitOptions = {}): Promise<ResultMeta> {
    const current = this.#records.get(taskId);
    if (current && READY_STATES.has(current.status)) {
      return Promise.resolve(structuredClone(current));
    }
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    return new Promise((resolve, reject) => {
      let set = this.#waiters.get(taskId);
      if (!set) this.#waiters.set(taskId, set = new Set());
      const cleanup = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        set!.delete(onMeta);
      };
      const onMeta = (meta: ResultMeta) => {
        cleanup();
        resolve(meta);
      };
      const onAbort = () => {
        cleanup();
        reject(options.signal!.reason);
      };
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
        cleanup();
        reject(new ResultTimeoutError(taskId, options.timeoutMs!));
      }, options.timeoutMs);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      set.add(onMeta);
    });
  }

  /** Deletes a record. */
  forget(taskId: string): Promise<void> {
    this.#records.delete(taskId);
    return Promise.resolve();
  }

  #chord(groupId: string): ChordState {
    let state = this.#chords.get(groupId);
    if (!state) this.#chords.set(groupId, state = { size: null, adjust: 0, parts: new Map() });
    return state;
  }

  /** Stores a chord's size (Celery's `.s` key). */
  setChordSize(groupId: string, size: number): Promise<void> {
    this.#chord(groupId).size = size;
    return Promise.resolve();
  }

  /**
   * Records one header member (as Redis' `.j` sorted set: the same encoded entry counts
   * once); the member that completes the chord gets every member in `group_index` order.
   */
  chordPartReturn(part: ChordPart): Promise<ChordJoin | null> {
    const state = this.#chord(part.groupId);
    let entry: string;
    try {
      entry = encodeChordPart(part);
    } catch (err) {
      return Promise.reject(err);
    }
    state.parts.set(entry, part.groupIndex ?? Infinity);
    if (state.size === null || state.parts.size !== state.size + state.adjust) {
      return Promise.resolve(null);
    }
    const saved = this.#groups.get(part.groupId);
    if (saved !== undefined) {
      return Promise.resolve({ kind: "saved", tuple: decodeSavedGroup(saved) });
    }
    const ordered = [...state.parts].sort(([a, x], [b, y]) =>
      x - y || (a < b ? -1 : a > b ? 1 : 0)
    );
    return Promise.resolve({
      kind: "parts",
      parts: ordered.map(([text]) => decodeChordPart(text)),
    });
  }

  /** Forgets a finished chord's bookkeeping. */
  deleteChord(groupId: string): Promise<void> {
    this.#chords.delete(groupId);
    return Promise.resolve();
  }

  /** Stores a group's result tuple. */
  saveGroup(groupId: string, tuple: unknown): Promise<void> {
    try {
      this.#groups.set(groupId, encodeSavedGroup(tuple));
    } catch (err) {
      return Promise.reject(err);
    }
    return Promise.resolve();
  }

  /** The stored tuple, or `null`. */
  restoreGroup(groupId: string): Promise<unknown | null> {
    const text = this.#groups.get(groupId);
    return Promise.resolve(text === undefined ? null : decodeSavedGroup(text));
  }

  /** Deletes a stored group. */
  forgetGroup(groupId: string): Promise<void> {
    this.#groups.delete(groupId);
    return Promise.resolve();
  }

  /** Nothing to close. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
