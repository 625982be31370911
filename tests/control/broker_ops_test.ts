/**
 * The broker operations remote control adds (optional in the Broker interface): binding
 * reply queues to a named direct exchange, and taking (or moving) the waiting messages of one
 * task name out of a queue while every other message stays, in order. Run on the memory
 * broker and on a real redis-server (one per file, flushed per test).
 */

import assert from "node:assert/strict";
import type { Broker } from "../../src/brokers/broker.ts";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { RedisBroker } from "../../src/brokers/redis/broker.ts";
import { decodeTaskMessage, encodeTaskMessage } from "../../src/protocol/task.ts";
import { startRedis } from "../helpers/redis_server.ts";

const redis = await startRedis();

function task(id: string, name: string, priority = 0) {
  return encodeTaskMessage(
    { id, task: name, args: [id], origin: "ops@test", priority },
    new Date(),
  );
}

/** Drains a queue (serving order) and acks: the ids in order. */
async function drain(broker: Broker, queue: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const got = await broker.fetch([queue], { max: 100, timeoutMs: 0 });
    if (!got.length) return out;
    for (const d of got) {
      out.push(decodeTaskMessage(d.message!).id);
      await d.ack();
    }
  }
}

const BROKERS: [string, () => Promise<Broker>][] = [
  ["memory", () => Promise.resolve(new MemoryBroker())],
  ["redis", async () => {
    await redis.cli("FLUSHALL");
    const broker = new RedisBroker(redis.url(0), { restoreIntervalMs: 0 });
    await broker.connect();
    return broker;
  }],
];

for (const [kind, create] of BROKERS) {
  Deno.test(`control broker ops (${kind}): bindQueue routes a named exchange, unbind drops`, async () => {
    const broker = await create();
    try {
      await broker.bindQueue!("oid.reply.celery.pidbox", "reply.celery.pidbox", "oid");
      await broker.publish(task("a", "t"), { exchange: "reply.celery.pidbox", routingKey: "oid" });
      await broker.publish(task("b", "t"), { exchange: "reply.celery.pidbox", routingKey: "gone" });
      assert.equal(await broker.queueSize("oid.reply.celery.pidbox"), 1);
      assert.equal(await broker.queueSize("gone"), 0); // no binding: dropped, as kombu
      await broker.unbindQueue!("oid.reply.celery.pidbox", "reply.celery.pidbox", "oid");
      await broker.publish(task("c", "t"), { exchange: "reply.celery.pidbox", routingKey: "oid" });
      assert.deepEqual(await drain(broker, "oid.reply.celery.pidbox"), ["a"]);
    } finally {
      await broker.close();
    }
  });

  Deno.test(`control broker ops (${kind}): takeTaskMessages takes one name, keeps the rest in order`, async () => {
    const broker = await create();
    try {
      const all: string[] = [];
      for (let i = 0; i < 60; i++) {
        const name = i % 3 === 0 ? "tasks.sms" : "tasks.slow";
        const priority = i % 5 === 0 ? 6 : 0;
        all.push(`${name}-${i}`);
        await broker.publish(task(`${name}-${i}`, name, priority), {
          exchange: "",
          routingKey: "celery",
        });
      }
      const taken = await broker.takeTaskMessages!("celery", "tasks.slow");
      const takenIds = taken.map((m) => decodeTaskMessage(m).id);
      // Per priority bucket, oldest first: bucket 0 then bucket 6.
      const slow = all.filter((id) => id.startsWith("tasks.slow"));
      const bucket = (id: string) => Number(id.split("-")[1]) % 5 === 0 ? 6 : 0;
      assert.deepEqual(takenIds, [
        ...slow.filter((id) => bucket(id) === 0),
        ...slow.filter((id) => bucket(id) === 6),
      ]);
      assert.deepEqual(await broker.takeTaskMessages!("celery", "tasks.slow"), []);
      const rest = await drain(broker, "celery");
      const sms = all.filter((id) => id.startsWith("tasks.sms"));
      assert.deepEqual(rest, [
        ...sms.filter((id) => bucket(id) === 0),
        ...sms.filter((id) => bucket(id) === 6),
      ]);
    } finally {
      await broker.close();
    }
  });

  Deno.test(`control broker ops (${kind}): moveTo appends to another queue, rerouted, in order`, async () => {
    const broker = await create();
    try {
      await broker.publish(task("old-1", "tasks.other"), { exchange: "", routingKey: "slow" });
      for (let i = 0; i < 10; i++) {
        const name = i % 2 ? "tasks.slow" : "tasks.sms";
        await broker.publish(task(`${name}-${i}`, name), { exchange: "", routingKey: "celery" });
      }
      const moved = await broker.takeTaskMessages!("celery", "tasks.slow", { moveTo: "slow" });
      assert.equal(moved.length, 5);
      assert.equal(await broker.queueSize("celery"), 5);
      assert.equal(await broker.queueSize("slow"), 6);
      const got = await broker.fetch(["slow"], { max: 10, timeoutMs: 0 });
      assert.deepEqual(got.map((d) => decodeTaskMessage(d.message!).id), [
        "old-1",
        "tasks.slow-1",
        "tasks.slow-3",
        "tasks.slow-5",
        "tasks.slow-7",
        "tasks.slow-9",
      ]);
      assert.deepEqual(got[1]!.message!.deliveryInfo?.routingKey, "slow");
      // A requeue goes back to the new queue (the envelope's routing key was rewritten).
      await got[1]!.requeue("front");
      for (const d of got.slice(2)) await d.ack();
      await got[0]!.ack();
      assert.deepEqual(await drain(broker, "slow"), ["tasks.slow-1"]);
      assert.deepEqual(await broker.takeTaskMessages!("celery", "x", { moveTo: "celery" }), []);
    } finally {
      await broker.close();
    }
  });
}

Deno.test("control broker ops (redis): concurrent takes and a consumer lose and duplicate nothing", async () => {
  await redis.cli("FLUSHALL");
  const brokers = await Promise.all([0, 1, 2].map(async () => {
    const b = new RedisBroker(redis.url(0), { restoreIntervalMs: 0 });
    await b.connect();
    return b;
  }));
  try {
    const [a, b, consumer] = brokers as [RedisBroker, RedisBroker, RedisBroker];
    const ids: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const name = i % 10 === 0 ? "tasks.sms" : "tasks.slow";
      ids.push(`${name}-${i}`);
      await a.publish(task(`${name}-${i}`, name), { exchange: "", routingKey: "celery" });
    }
    const consumed: string[] = [];
    let stop = false;
    const consuming = (async () => {
      while (!stop) {
        const got = await consumer.fetch(["celery"], { max: 7, timeoutMs: 5 });
        for (const d of got) {
          consumed.push(decodeTaskMessage(d.message!).id);
          await d.ack();
        }
      }
    })();
    const [takenA, takenB] = await Promise.all([
      a.takeTaskMessages("celery", "tasks.slow"),
      b.takeTaskMessages("celery", "tasks.slow"),
    ]);
    stop = true;
    await consuming;
    const left = await drain(consumer, "celery");
    const taken = [...takenA, ...takenB].map((m) => decodeTaskMessage(m).id);
    const everything = [...taken, ...consumed, ...left];
    assert.equal(everything.length, 3000, "every message accounted for exactly once");
    assert.deepEqual(new Set(everything), new Set(ids));
    assert.ok(taken.every((id) => id.startsWith("tasks.slow")));
    // The sms messages were never taken, and stayed in order.
    const sms = [...consumed, ...left].filter((id) => id.startsWith("tasks.sms"));
    assert.deepEqual(sms, ids.filter((id) => id.startsWith("tasks.sms")));
  } finally {
    await Promise.all(brokers.map((b) => b.close()));
  }
});

Deno.test("control broker ops: stop the test redis-server", () => redis.stop());
