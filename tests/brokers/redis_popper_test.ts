/**
 * The Redis broker's popper against fake connections, for the races a live server cannot
 * stage on demand: a message popped after its fetch was aborted goes back where it was.
 */
import assert from "node:assert/strict";
import { Popper } from "../../src/brokers/redis/popper.ts";
import { BROKER_SCRIPTS } from "../../src/brokers/redis/unacked.ts";
import type { RedisClient, RedisScript } from "../../src/redis/client.ts";

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

function fakes() {
  const calls: unknown[][] = [];
  const brpop = deferred<[string, string] | null>();
  const fetched = deferred<unknown[]>();
  const replies = new Map<RedisScript, () => Promise<unknown>>([
    [BROKER_SCRIPTS.record, () => Promise.resolve("tag-1")],
    [BROKER_SCRIPTS.fetch, () => fetched.promise],
    [BROKER_SCRIPTS.restore, () => Promise.resolve(1)],
  ]);
  const names = new Map(Object.entries(BROKER_SCRIPTS).map(([name, script]) => [script, name]));
  const client = {
    evalScript: (script: RedisScript, keys: unknown[], args: unknown[]) => {
      calls.push([names.get(script), keys, args]);
      return replies.get(script)!();
    },
    call: (...args: unknown[]) => {
      calls.push(args);
      return Promise.resolve("OK");
    },
  } as unknown as RedisClient;
  const blocking = {
    call: (...args: unknown[]) => {
      if (args[0] === "CLIENT") return Promise.resolve(42);
      calls.push(args);
      return brpop.promise;
    },
    onReady: () => {},
  } as unknown as RedisClient;
  return { client, blocking, calls, brpop, fetched };
}

Deno.test("redis popper: a BRPOP that returns after the abort is un-popped, unmarked", async () => {
  const { client, blocking, calls, brpop } = fakes();
  const popper = new Popper(client, blocking, true);
  const controller = new AbortController();
  const pending = popper.blockingPop(["q", "q\x06\x163"], 1000, 1, controller.signal);
  await Promise.resolve();
  controller.abort();
  assert.equal(await pending, null);
  brpop.resolve(["q\x06\x163", "raw-envelope"]); // it popped something after all
  await popper.drain(1000);
  const restore = calls.find((c) => c[0] === "restore");
  assert.deepEqual(restore, [
    "restore",
    ["unacked", "unacked_index", "q\x06\x163"],
    ["tag-1", "raw-envelope", "front", ""],
  ]);
  assert.ok(calls.some((c) => c[0] === "CLIENT" && c[1] === "UNBLOCK" && c[2] === 42));
  assert.equal(calls.find((c) => c[0] === "BRPOP")!.at(-1), "1.000");
});

Deno.test("redis popper: a FETCH that returns after the abort is un-popped in reverse order", async () => {
  const { client, blocking, calls, fetched } = fakes();
  const popper = new Popper(client, blocking, false);
  const controller = new AbortController();
  const pending = popper.pop(["a", "b"], 5, controller.signal);
  controller.abort();
  assert.equal(await pending, null);
  fetched.resolve([1, "m1", "t1", 1, "m2", "t2", 2, "bad", ""]);
  await popper.drain(1000);
  const restores = calls.filter((c) => c[0] === "restore").map((c) => {
    const [keys, args] = [c[1] as string[], c[2] as string[]];
    return [keys[2], args[0], args[1]];
  });
  assert.deepEqual(restores, [["a", "t2", "m2"], ["a", "t1", "m1"]], "dead-lettered stays dead");
});

Deno.test("redis popper: BRPOP timeouts are whole seconds before Redis 6", async () => {
  const { client, blocking, calls, brpop } = fakes();
  const popper = new Popper(client, blocking, false);
  const pending = popper.blockingPop(["q"], 250, 1);
  await Promise.resolve();
  brpop.resolve(null);
  assert.deepEqual(await pending, []);
  assert.equal(calls.find((c) => c[0] === "BRPOP")!.at(-1), "1");
});
