/**
 * An unordered collection with constant-time add and remove that keeps no hash table, for
 * what comes and goes with every task (running tasks, unsettled deliveries).
 *
 * Why not a `Map` or `Set`: V8's ordered hash tables leave a deleted entry in place until
 * the table is rebuilt, and rebuild it (a new table, copying the live entries) every few
 * dozen inserts when entries come and go all the time. The long-lived collection then points
 * from the old generation at young objects on every task; measured on a 30,000-task Redis
 * drain, the worker's three per-task collections made V8 promote about 2 KB per task to the
 * old generation (146 B without them) and run 5 full collections instead of 1
 * (`docs/performance.md`, session 7).
 *
 * A removed slot is overwritten at once (the last entry moves into it), so the backing array
 * holds no stale pointer. Entries carry an insertion number for callers that need the order
 * back ({@linkcode Bag.inOrder}), which only rare paths (shutdown, close) do.
 *
 * @module
 */

/** One value in a {@linkcode Bag}: keep it to remove the value later. */
export interface BagEntry<T> {
  /** The value. */
  readonly value: T;
  /** Insertion number: larger is later. */
  readonly seq: number;
}

interface Slot<T> extends BagEntry<T> {
  index: number;
}

/**
 * A bag of values.
 *
 * @typeParam T Type of the values.
 *
 * @example Add, remove, list in insertion order
 * ```ts
 * import assert from "node:assert/strict";
 * import { Bag } from "./bag.ts";
 * const bag = new Bag<string>();
 * const a = bag.add("a");
 * bag.add("b");
 * bag.add("c");
 * assert.equal(bag.remove(a), true);
 * assert.equal(bag.remove(a), false); // removed already
 * assert.equal(bag.size, 2);
 * assert.deepEqual(bag.inOrder(), ["b", "c"]);
 * ```
 */
export class Bag<T> {
  #slots: Slot<T>[] = [];
  #seq = 0;

  /** Number of values. */
  get size(): number {
    return this.#slots.length;
  }

  /** Adds a value (the same value may be added more than once); returns its entry. */
  add(value: T): BagEntry<T> {
    const slot: Slot<T> = { value, seq: this.#seq++, index: this.#slots.length };
    this.#slots.push(slot);
    return slot;
  }

  /** Removes an entry; false when it was removed already (or belongs to another bag). */
  remove(entry: BagEntry<T>): boolean {
    const slot = entry as Slot<T>;
    const slots = this.#slots;
    if (slots[slot.index] !== slot) return false;
    const last = slots.pop()!;
    if (last !== slot) {
      last.index = slot.index;
      slots[slot.index] = last;
    }
    slot.index = -1;
    return true;
  }

  /** The values, in no particular order (a copy). */
  values(): T[] {
    return this.#slots.map((s) => s.value);
  }

  /** The values, oldest first (a copy, sorted). */
  inOrder(): T[] {
    return [...this.#slots].sort((a, b) => a.seq - b.seq).map((s) => s.value);
  }

  /** Removes every value. */
  clear(): void {
    for (const s of this.#slots) s.index = -1;
    this.#slots = [];
  }
}
