import assert from "node:assert/strict";
import { AsyncPool } from "../../src/worker/pool.ts";
import { gate } from "../helpers/wait.ts";

/** Resolves once pending microtasks and promise callbacks have run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

Deno.test("AsyncPool: size must be a positive integer", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new AsyncPool(bad), RangeError, `size ${bad}`);
  }
  assert.throws(() => new AsyncPool(0), /concurrency must be a positive integer, got 0/);
  const pool = new AsyncPool(3);
  assert.equal(pool.size, 3);
  assert.equal(pool.free, 3);
  assert.equal(pool.active, 0);
  assert.throws(() => pool.resize(0), RangeError);
  assert.equal(pool.size, 3, "a bad resize keeps the size");
});

Deno.test("AsyncPool: run takes a slot until the job settles (resolve or reject)", async () => {
  const pool = new AsyncPool(2);
  const a = gate();
  const b = gate();
  pool.run(() => a.promise);
  assert.equal(pool.active, 1);
  assert.equal(pool.free, 1);
  pool.run(() => b.promise);
  assert.equal(pool.free, 0);
  b.reject(new Error("job failed"));
  await settle();
  assert.equal(pool.active, 1, "a rejected job frees its slot");
  a.resolve();
  await pool.whenIdle();
  assert.equal(pool.active, 0);
  assert.equal(pool.free, 2);
});

Deno.test("AsyncPool: run past the size is allowed; free never goes negative", async () => {
  const pool = new AsyncPool(1);
  const g = gate();
  pool.run(() => g.promise);
  pool.run(() => g.promise);
  assert.equal(pool.active, 2);
  assert.equal(pool.free, 0);
  g.resolve();
  await pool.whenIdle();
  assert.equal(pool.free, 1);
});

Deno.test("AsyncPool.whenFree: waits for a slot, resolves at once when one is free", async () => {
  const pool = new AsyncPool(1);
  await pool.whenFree();
  const g = gate();
  pool.run(() => g.promise);
  let freed = false;
  const waiting = pool.whenFree().then(() => freed = true);
  await settle();
  assert.equal(freed, false);
  g.resolve();
  await waiting;
  assert.equal(freed, true);
  assert.equal(pool.free, 1);
});

Deno.test("AsyncPool.whenIdle: waits for every job, not just one", async () => {
  const pool = new AsyncPool(3);
  const gates = [gate(), gate(), gate()];
  for (const g of gates) pool.run(() => g.promise);
  let idle = false;
  const waiting = pool.whenIdle().then(() => idle = true);
  gates[0]!.resolve();
  gates[1]!.resolve();
  await settle();
  assert.equal(idle, false);
  assert.equal(pool.active, 1);
  gates[2]!.resolve();
  await waiting;
  assert.equal(idle, true);
});

Deno.test("AsyncPool.resize: growing wakes whenFree; shrinking never interrupts jobs", async () => {
  const pool = new AsyncPool(1);
  const g = gate();
  pool.run(() => g.promise);
  let freed = false;
  const waiting = pool.whenFree().then(() => freed = true);
  await settle();
  assert.equal(freed, false);
  pool.resize(2);
  await waiting;
  assert.equal(pool.size, 2);
  assert.equal(pool.free, 1);

  const h = gate();
  pool.run(() => h.promise);
  pool.resize(1);
  assert.equal(pool.size, 1);
  assert.equal(pool.active, 2, "running jobs keep running");
  assert.equal(pool.free, 0);
  g.resolve();
  await settle();
  assert.equal(pool.free, 0, "still one over the new size");
  h.resolve();
  await pool.whenIdle();
  assert.equal(pool.free, 1);
});

Deno.test("AsyncPool.changed: resolves at the next change", async () => {
  const pool = new AsyncPool(1);
  let changed = false;
  const waiting = pool.changed().then(() => changed = true);
  await settle();
  assert.equal(changed, false);
  pool.resize(4);
  await waiting;
  assert.equal(changed, true);
});

Deno.test("AsyncPool.onSlotFree: called once per settled job, with the slot already free", async () => {
  const pool = new AsyncPool(1);
  const seen: number[] = [];
  pool.onSlotFree = () => seen.push(pool.free);
  const g = gate();
  pool.run(() => g.promise);
  pool.run(() => Promise.reject(new Error("failed job")));
  await settle();
  assert.deepEqual(seen, [0], "the failed job freed its slot; one job still runs");
  g.resolve();
  await pool.whenIdle();
  assert.deepEqual(seen, [0, 1]);
});

Deno.test("AsyncPool.notifyChanged: wakes changed() without a job settling", async () => {
  const pool = new AsyncPool(1);
  let woke = false;
  const waiting = pool.changed().then(() => woke = true);
  await settle();
  assert.equal(woke, false);
  pool.notifyChanged();
  await waiting;
  assert.equal(woke, true);
});
