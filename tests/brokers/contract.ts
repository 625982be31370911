/**
 * The broker contract: every broker (memory, Redis, embedded, AMQP) must pass these cases.
 * A broker that cannot support a case lists it under `skip` with a reason.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Broker, Delivery } from "../../src/brokers/broker.ts";
import { decodeTaskMessage, encodeTaskMessage } from "../../src/protocol/task.ts";

/** A fresh broker and how to clean it up. */
export interface BrokerUnderTest {
  /** A connected broker on an empty store. */
  broker: Broker;
  /** Closes it and removes what it created. */
  cleanup(): Promise<void>;
}

/** Options of {@linkcode runBrokerContract}. */
export interface ContractOptions {
  /** Broker name in test names. */
  name: string;
  /** Makes a fresh connected broker. */
  create(): Promise<BrokerUnderTest>;
  /**
   * Simulates a crash and restart: given a broker holding unsettled deliveries, returns a
   * broker (the same one or a new one, which the contract closes) on which they are ready
   * again. Without it, the case "unsettled deliveries are not lost" is ignored.
   */
  recover?(broker: Broker): Promise<Broker>;
  /** Cases this broker cannot pass, with why. */
  skip?: { reason: string; tests: string[] }[];
}

function task(id: string, priority = 0) {
  return encodeTaskMessage({
    id,
    task: "tasks.noop",
    args: [id],
    origin: "contract@test",
    priority,
  }, new Date());
}

/** Polls `done` every 10 ms for up to 5 s (fanout on AMQP and the embedded store is async). */
async function waitUntil(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The task ids of fetched deliveries, in order. */
export function ids(deliveries: Delivery[]): string[] {
  return deliveries.map((d) => decodeTaskMessage(d.message!).id);
}

type Case = (b: Broker, options: ContractOptions) => Promise<void>;

const CASES: Record<string, Case> = {
  "publish, fetch and ack": async (b) => {
    await b.declareQueue("q");
    await b.publish(task("a"), { exchange: "", routingKey: "q" });
    assert.equal(await b.queueSize("q"), 1);
    const got = await b.fetch(["q"], { max: 1, timeoutMs: 100 });
    assert.deepEqual(ids(got), ["a"]);
    assert.equal(got[0]!.queue, "q");
    assert.equal(got[0]!.redelivered, false);
    assert.equal(got[0]!.message!.deliveryInfo?.routingKey, "q");
    await got[0]!.ack();
    assert.equal(await b.queueSize("q"), 0);
    assert.deepEqual(await b.fetch(["q"], { max: 1, timeoutMs: 0 }), []);
  },
  "fetch takes at most max, first in first out": async (b) => {
    for (const id of ["1", "2", "3", "4"]) {
      await b.publish(task(id), { exchange: "", routingKey: "q" });
    }
    const first = await b.fetch(["q"], { max: 3, timeoutMs: 100 });
    assert.deepEqual(ids(first), ["1", "2", "3"]);
    const rest = await b.fetch(["q"], { max: 3, timeoutMs: 100 });
    assert.deepEqual(ids(rest), ["4"]);
    for (const d of [...first, ...rest]) await d.ack();
  },
  "lower priority number is served first, as Celery on Redis": async (b) => {
    await b.publish(task("p9", 9), { exchange: "", routingKey: "q" });
    await b.publish(task("p5", 5), { exchange: "", routingKey: "q" });
    await b.publish(task("p0", 0), { exchange: "", routingKey: "q" });
    const got = await b.fetch(["q"], { max: 3, timeoutMs: 100 });
    assert.deepEqual(ids(got), ["p0", "p5", "p9"]);
    for (const d of got) await d.ack();
  },
  "several queues are served round robin": async (b) => {
    for (const id of ["a1", "a2"]) await b.publish(task(id), { exchange: "", routingKey: "qa" });
    for (const id of ["b1", "b2"]) await b.publish(task(id), { exchange: "", routingKey: "qb" });
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const got = await b.fetch(["qa", "qb"], { max: 1, timeoutMs: 100 });
      seen.push(...ids(got));
      for (const d of got) await d.ack();
    }
    assert.deepEqual(seen.map((s) => s[0]).join(""), "abab");
  },
  "requeue front comes next and is marked redelivered": async (b) => {
    for (const id of ["1", "2"]) await b.publish(task(id), { exchange: "", routingKey: "q" });
    const [first] = await b.fetch(["q"], { max: 1, timeoutMs: 100 });
    await first!.requeue("front");
    const again = await b.fetch(["q"], { max: 2, timeoutMs: 100 });
    assert.deepEqual(ids(again), ["1", "2"]);
    assert.equal(again[0]!.redelivered, true);
    for (const d of again) await d.ack();
  },
  "requeue back goes behind waiting messages": async (b) => {
    for (const id of ["1", "2"]) await b.publish(task(id), { exchange: "", routingKey: "q" });
    const [first] = await b.fetch(["q"], { max: 1, timeoutMs: 100 });
    await first!.requeue("back");
    const again = await b.fetch(["q"], { max: 2, timeoutMs: 100 });
    assert.deepEqual(ids(again), ["2", "1"]);
    assert.equal(again[1]!.redelivered, true);
    for (const d of again) await d.ack();
  },
  "dead letter keeps the raw message and the reason": async (b) => {
    await b.publish(task("dl"), { exchange: "", routingKey: "q" });
    const [d] = await b.fetch(["q"], { max: 1, timeoutMs: 100 });
    await d!.deadLetter("testing dead letters");
    assert.equal(await b.queueSize("q"), 0);
    const dead = await b.deadLetters();
    assert.equal(dead[0]!.reason, "testing dead letters");
    assert.equal(dead[0]!.queue, "q");
    assert.match(dead[0]!.raw, /dl|ZGwi|ImRsI/); // the id, plain or inside base64
    assert.equal(await b.queueSize("q"), 0);
  },
  "a settled delivery cannot be settled twice": async (b) => {
    await b.publish(task("once"), { exchange: "", routingKey: "q" });
    const [d] = await b.fetch(["q"], { max: 1, timeoutMs: 100 });
    await d!.ack();
    await d!.requeue("front");
    assert.equal(await b.queueSize("q"), 0);
  },
  "fetch waits for a message published during the wait": async (b) => {
    const waiting = b.fetch(["q"], { max: 1, timeoutMs: 5000 });
    setTimeout(() => b.publish(task("late"), { exchange: "", routingKey: "q" }), 50);
    const got = await waiting;
    assert.deepEqual(ids(got), ["late"]);
    await got[0]!.ack();
  },
  "fetch returns nothing after its timeout": async (b) => {
    const started = Date.now();
    assert.deepEqual(await b.fetch(["q"], { max: 1, timeoutMs: 200 }), []);
    assert.ok(Date.now() - started >= 150, "it waited");
  },
  "an abort ends a waiting fetch early": async (b) => {
    const controller = new AbortController();
    const started = Date.now();
    const waiting = b.fetch(["q"], { max: 1, timeoutMs: 10_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    assert.deepEqual(await waiting, []);
    assert.ok(Date.now() - started < 5000, "it returned before the timeout");
  },
  "queue size counts every priority and purge empties the queue": async (b) => {
    await b.publish(task("x", 0), { exchange: "", routingKey: "q" });
    await b.publish(task("y", 9), { exchange: "", routingKey: "q" });
    assert.equal(await b.queueSize("q"), 2);
    assert.equal(await b.purge("q"), 2);
    assert.equal(await b.queueSize("q"), 0);
  },
  "unsettled deliveries are not lost": async (b, options) => {
    for (const id of ["u1", "u2", "u3"]) {
      await b.publish(task(id), { exchange: "", routingKey: "q" });
    }
    const held = await b.fetch(["q"], { max: 2, timeoutMs: 100 });
    assert.deepEqual(ids(held), ["u1", "u2"]);
    assert.equal(await b.queueSize("q"), 1);
    const after = await options.recover!(b);
    try {
      const again = await after.fetch(["q"], { max: 3, timeoutMs: 100 });
      assert.deepEqual(ids(again.slice(0, 2)).sort(), ["u1", "u2"], "restored ones come first");
      assert.deepEqual(ids(again.slice(2)), ["u3"]);
      assert.deepEqual(again.map((d) => d.redelivered), [true, true, false]);
      for (const d of again) await d.ack();
      assert.equal(await after.queueSize("q"), 0);
    } finally {
      if (after !== b) await after.close();
    }
  },
  "fanout reaches every matching subscriber, none after close": async (b) => {
    assert.ok(b.broadcast && b.subscribe, "broadcast and subscribe");
    const workers: string[] = [];
    const everything: string[] = [];
    const other: string[] = [];
    const key = (m: { deliveryInfo?: { routingKey: string } }) => m.deliveryInfo?.routingKey ?? "";
    const subWorkers = await b.subscribe("celeryev", "worker.*", (m) => workers.push(key(m)));
    const subAll = await b.subscribe("celeryev", "#", (m) => everything.push(key(m)));
    const subOther = await b.subscribe("celery.pidbox", "", (m) => other.push(key(m)));
    try {
      await b.broadcast("celeryev", "worker.heartbeat", task("f1"));
      await b.broadcast("celeryev", "task.multi", task("f2"));
      await waitUntil(() => everything.length === 2 && workers.length === 1, "broadcasts");
      assert.deepEqual(everything, ["worker.heartbeat", "task.multi"], "in order");
      assert.deepEqual(workers, ["worker.heartbeat"], "topic rules on the routing key");
      assert.deepEqual(other, [], "another exchange sees nothing");
      await subWorkers.close();
      await b.broadcast("celeryev", "worker.offline", task("f3"));
      await waitUntil(() => everything.length === 3, "the broadcast after a close");
      assert.deepEqual(workers, ["worker.heartbeat"], "nothing after close");
      assert.equal(await b.queueSize("celeryev"), 0, "fanout leaves nothing queued");
    } finally {
      await subAll.close();
      await subOther.close();
    }
  },
  "body, headers and properties survive the trip": async (b) => {
    const msg = encodeTaskMessage({
      id: "rt",
      task: "tasks.echo",
      args: [1, "Zoë ☃", null],
      kwargs: { big: 9007199254740993n, nested: { k: [1.25] } },
      origin: "contract@test",
      priority: 3,
      headers: { custom: "yes" },
    }, new Date());
    await b.publish(msg, { exchange: "", routingKey: "q" });
    const [d] = await b.fetch(["q"], { max: 1, timeoutMs: 100 });
    const decoded = decodeTaskMessage(d!.message!);
    assert.deepEqual(decoded.args, [1, "Zoë ☃", null]);
    assert.equal(decoded.kwargs.big, 9007199254740993n);
    assert.equal(decoded.headers.custom, "yes");
    assert.equal(decoded.priority, 3);
    await d!.ack();
  },
};

/** The names of every contract case. */
export const CONTRACT_CASES: string[] = Object.keys(CASES);

/**
 * Registers one `Deno.test` per contract case for a broker.
 *
 * @example
 * ```ts ignore
 * runBrokerContract({
 *   name: "memory",
 *   create: async () => ({ broker: new MemoryBroker(), cleanup: async () => {} }),
 *   recover: async (b) => ((b as MemoryBroker).restoreUnacked(), b),
 * });
 * ```
 */
export function runBrokerContract(options: ContractOptions): void {
  const skipped = new Map<string, string>();
  for (const s of options.skip ?? []) {
    for (const t of s.tests) {
      if (!(t in CASES)) throw new Error(`Cannot skip unknown contract case "${t}"`);
      skipped.set(t, s.reason);
    }
  }
  if (!options.recover && !skipped.has("unsettled deliveries are not lost")) {
    skipped.set("unsettled deliveries are not lost", "no recover hook given");
  }
  for (const [name, run] of Object.entries(CASES)) {
    const reason = skipped.get(name);
    Deno.test({
      name: `${options.name} broker contract: ${name}${reason ? ` (skipped: ${reason})` : ""}`,
      ignore: reason !== undefined,
      async fn() {
        const { broker, cleanup } = await options.create();
        try {
          await run(broker, options);
        } finally {
          await cleanup();
        }
      },
    });
  }
}
