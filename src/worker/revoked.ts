/**
 * The set of revoked task ids, as a Celery worker keeps it: entries expire after 3 hours,
 * at most 50,000 are kept (oldest dropped first), optionally persisted to a state file
 * (`--statedb`) so revokes survive a restart.
 *
 * @module
 */

/** Options of {@linkcode RevokedSet}. */
export interface RevokedSetOptions {
  /** Seconds an entry is kept. @default 10800 */
  expires?: number;
  /** Entries kept at most. @default 50000 */
  maxSize?: number;
  /** JSON file to load from and save to. @default none */
  stateFile?: string;
  /** Clock in milliseconds. @default Date.now */
  now?: () => number;
}

/**
 * Revoked task ids.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RevokedSet } from "./revoked.ts";
 * let now = 0;
 * const revoked = new RevokedSet({ expires: 10, now: () => now });
 * revoked.add(["a"]);
 * assert.ok(revoked.has("a"));
 * now = 11_000;
 * assert.ok(!revoked.has("a"));
 * ```
 */
export class RevokedSet {
  #entries = new Map<string, number>();
  #expiresMs: number;
  #maxSize: number;
  #stateFile?: string;
  #now: () => number;
  #saving?: Promise<void>;
  #dirty = false;

  /** @throws {RangeError} For a non-positive expiry or size. */
  constructor(options: RevokedSetOptions = {}) {
    const expires = options.expires ?? 10800;
    const max = options.maxSize ?? 50_000;
    if (!(expires > 0) || !(max > 0)) {
      throw new RangeError(`Cannot create revoked set: expires and maxSize must be > 0`);
    }
    this.#expiresMs = expires * 1000;
    this.#maxSize = max;
    this.#stateFile = options.stateFile;
    this.#now = options.now ?? Date.now;
  }

  /** Loads the state file if there is one (a missing file is an empty set). */
  async load(): Promise<void> {
    if (!this.#stateFile) return;
    let text: string;
    try {
      text = await Deno.readTextFile(this.#stateFile);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    const data = JSON.parse(text) as { revoked?: Record<string, number> };
    for (const [id, at] of Object.entries(data.revoked ?? {})) this.#entries.set(id, at);
    this.#prune();
  }

  #prune(): void {
    const cutoff = this.#now() - this.#expiresMs;
    for (const [id, at] of this.#entries) {
      if (at > cutoff && this.#entries.size <= this.#maxSize) break;
      this.#entries.delete(id);
    }
  }

  /** Adds ids (refreshing their time) and schedules a save. */
  add(ids: Iterable<string>): void {
    const now = this.#now();
    for (const id of ids) {
      this.#entries.delete(id);
      this.#entries.set(id, now);
    }
    this.#prune();
    this.#dirty = true;
    if (this.#stateFile) this.#saving ??= Promise.resolve().then(() => this.save());
  }

  /** Whether an id is revoked (and not expired). */
  has(id: string): boolean {
    // Nearly always empty: skip hashing the id (asked once per task).
    if (this.#entries.size === 0) return false;
    const at = this.#entries.get(id);
    if (at === undefined) return false;
    if (at <= this.#now() - this.#expiresMs) {
      this.#entries.delete(id);
      return false;
    }
    return true;
  }

  /** Ids currently revoked, oldest first. */
  ids(): string[] {
    this.#prune();
    return [...this.#entries.keys()];
  }

  /** Writes the state file now (atomically: temp file then rename). */
  async save(): Promise<void> {
    this.#saving = undefined;
    if (!this.#stateFile || !this.#dirty) return;
    this.#dirty = false;
    const tmp = `${this.#stateFile}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify({ revoked: Object.fromEntries(this.#entries) }));
    await Deno.rename(tmp, this.#stateFile);
  }
}
