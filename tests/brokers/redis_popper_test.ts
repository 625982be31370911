/**
 * The Redis broker's popper against fake connections, for the races a live server cannot
 * stage on demand: a message popped after its fetch was aborted goes back where it was.
 */
import assert from "node:assert/strict";
import { type PopFeatures, popFeatures, Popper } from "../../src/brokers/redis/popper.ts";
import { BROKER_SCRIPTS } from "../../src/brokers/redis/unacked.ts";
import type { RedisClient, RedisScript } from "../../src/redis/client.ts";

const REDIS_7: PopFeatures = { fractionalTimeouts: true, popCount: true };
const REDIS_5: PopFeatures = { fractionalTimeouts: false, popCount: false };

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
  const popper = new Popper(client, blocking, REDIS_7);
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
  const popper = new Popper(client, blocking, REDIS_5);
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
  const popper = new Popper(client, blocking, REDIS_5);
  const pending = popper.blockingPop(["q"], 250, 1);
  await Promise.resolve();
  brpop.resolve(null);
  assert.deepEqual(await pending, []);
  assert.equal(calls.find((c) => c[0] === "BRPOP")!.at(-1), "1");
});

Deno.test("redis popper: FETCH pops with a count only where the server has RPOP count (Redis ≥ 6.2)", async () => {
  for (const [features, flag] of [[REDIS_7, "1"], [REDIS_5, "0"]] as const) {
    const { client, blocking, calls, fetched } = fakes();
    const popper = new Popper(client, blocking, features);
    fetched.resolve([1, "m1", "t1"]);
    assert.deepEqual(await popper.pop(["q"], 5), [{ key: "q", raw: "m1", tag: "t1" }]);
    const [, keys, args] = calls.find((c) => c[0] === "fetch")! as [string, string[], string[]];
    assert.deepEqual(keys.slice(3), ["q"]);
    assert.deepEqual(args.slice(2), [flag, "q"], "ARGV[3] is the flag, then the queue names");
  }
  const versions: [string, PopFeatures][] = [
    ["redis_version:7.0.15\r\n", REDIS_7],
    ["redis_version:6.2.0\r\n", REDIS_7],
    ["# Server\r\nredis_version:6.0.16\r\n", { fractionalTimeouts: true, popCount: false }],
    ["redis_version:5.0.7\r\n", REDIS_5],
    ["redis_version:10.1.0\r\n", REDIS_7],
    ["no version here", REDIS_7],
  ];
  for (const [info, expected] of versions) assert.deepEqual(popFeatures(info), expected, info);
});
