/** The Bag: constant-time add and remove without a hash table (src/bag.ts). */

import assert from "node:assert/strict";
import { Bag } from "../src/bag.ts";

Deno.test("Bag: removing from the middle moves the last entry in; the order comes back sorted", () => {
  const bag = new Bag<string>();
  const entries = ["a", "b", "c", "d", "e"].map((v) => bag.add(v));
  assert.equal(bag.remove(entries[1]!), true);
  assert.equal(bag.remove(entries[3]!), true);
  assert.equal(bag.size, 3);
  assert.deepEqual(bag.values().sort(), ["a", "c", "e"]);
  assert.deepEqual(bag.inOrder(), ["a", "c", "e"]);
  // The moved entries are still removable through their own handles.
  assert.equal(bag.remove(entries[4]!), true);
  assert.equal(bag.remove(entries[0]!), true);
  assert.deepEqual(bag.inOrder(), ["c"]);
  assert.equal(bag.remove(entries[2]!), true);
  assert.equal(bag.size, 0);
});

Deno.test("Bag: a value added twice is held twice; each entry is removed once", () => {
  const bag = new Bag<string>();
  const first = bag.add("same");
  const second = bag.add("same");
  assert.ok(first.seq < second.seq);
  assert.equal(bag.remove(first), true);
  assert.equal(bag.remove(first), false, "removed already");
  assert.deepEqual(bag.values(), ["same"]);
  assert.equal(bag.remove(second), true);
  assert.equal(bag.remove(second), false);
});

Deno.test("Bag: an entry of another bag or of a cleared bag is not removed", () => {
  const one = new Bag<number>();
  const other = new Bag<number>();
  const a = one.add(1);
  other.add(2);
  assert.equal(other.remove(a), false);
  assert.equal(other.size, 1);
  one.clear();
  assert.equal(one.remove(a), false);
  const b = one.add(3);
  assert.equal(one.remove(a), false, "a stale entry does not remove the one now in its slot");
  assert.deepEqual(one.values(), [3]);
  assert.equal(one.remove(b), true);
});

Deno.test("Bag: many adds and removes in any order keep exactly the values not removed", () => {
  const bag = new Bag<number>();
  const live = new Map<number, ReturnType<Bag<number>["add"]>>();
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    if (live.size > 0 && random() < 0.45) {
      const keys = [...live.keys()];
      const key = keys[Math.floor(random() * keys.length)]!;
      assert.equal(bag.remove(live.get(key)!), true);
      live.delete(key);
    } else live.set(i, bag.add(i));
  }
  assert.equal(bag.size, live.size);
  assert.deepEqual(bag.inOrder(), [...live.keys()].sort((a, b) => a - b));
});
