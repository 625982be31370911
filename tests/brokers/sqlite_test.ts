/**
 * The embedded SQLite broker (`sqlite://<path>`) in one process: claim order (priority
 * buckets, round robin, front/back requeue), leases (renewal while alive, expiry after the
 * owner stops, restore for the same owner), dead letters, waiting fetches, the factory, and a
 * worker on it (ETA held and given back), fanout across instances and bindings. The two-process and kill -9 checks are in
 * `tests/embedded/processes_test.ts`; the shared broker contract suite runs at the end.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { createBroker } from "../../src/brokers/mod.ts";
import { SqliteBroker } from "../../src/brokers/sqlite.ts";
import { ConfigError } from "../../src/errors.ts";
import type { TransportMessage } from "../../src/protocol/message.ts";
import { encodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";
import { encodeTaskMessage } from "../../src/protocol/task.ts";
import { Worker } from "../../src/worker/worker.ts";
import { pollUntil } from "../helpers/poll.ts";
import { runBrokerContract } from "./contract.ts";
import { tempStore } from "../helpers/temp_store.ts";

function message(id: string, priority?: number, eta?: Date): TransportMessage {
  return encodeTaskMessage({ id, task: "tasks.t", origin: "test", priority, eta }, new Date());
}

const route = (queue: string) => ({ exchange: "", routingKey: queue });

function ids(deliveries: { message: TransportMessage | null }[]): string[] {
  return deliveries.map((d) => String(d.message?.headers.id));
}

Deno.test("sqlite broker: priority buckets first (0 first), FIFO inside, round robin over queues", async () => {
  await using store = await tempStore();
  const broker = new SqliteBroker(store.url);
  await broker.connect();
  try {
    await broker.publish(message("p9", 9), route("a"));
    await broker.publish(message("a1"), route("a"));
    await broker.publish(message("p5", 5), route("a"));
    await broker.publish(message("a2"), route("a"));
    await broker.publish(message("b1"), route("b"));
    await broker.publish(message("b2"), route("b"));
    assert.equal(await broker.queueSize("a"), 4);
    // Bucket 0: queues a then b (rotation 0); the rest by bucket.
    const first = await broker.fetch(["a", "b"], { max: 3, timeoutMs: 0 });
    assert.deepEqual(ids(first), ["a1", "a2", "b1"]);
    const rest = await broker.fetch(["a", "b"], { max: 10, timeoutMs: 0 });
    // Rotation 1 starts at b: b2 (bucket 0), then p5 (bucket 3), then p9.
    assert.deepEqual(ids(rest), ["b2", "p5", "p9"]);
    assert.equal(broker.unackedCount, 6);
    assert.equal(await broker.queueSize("a"), 0, "leased messages are not waiting");
    for (const d of [...first, ...rest]) await d.ack();
    assert.equal(broker.unackedCount, 0);
    assert.deepEqual(await broker.fetch(["a", "b"], { max: 1, timeoutMs: 0 }), []);
  } finally {
    await broker.close();
  }
});

Deno.test("sqlite broker: requeue front goes first and is redelivered; back goes to its bucket's end", async () => {
  await using store = await tempStore();
  const broker = new SqliteBroker(store.url);
  await broker.connect();
  try {
    for (const id of ["m1", "m2", "m3"]) await broker.publish(message(id), route("q"));
    const [m1] = await broker.fetch(["q"], { max: 1, timeoutMs: 0 });
    assert.equal(m1!.redelivered, false);
    await m1!.requeue("back");
    await m1!.ack(); // settled already: no effect
    assert.equal(await broker.queueSize("q"), 3);
    const [m2] = await broker.fetch(["q"], { max: 1, timeoutMs: 0 });
    assert.deepEqual(ids([m2!]), ["m2"]);
    await m2!.requeue(); // front
    const all = await broker.fetch(["q"], { max: 5, timeoutMs: 0 });
    assert.deepEqual(ids(all), ["m2", "m3", "m1"]);
    assert.equal(all[0]!.redelivered, true);
    assert.equal(all[0]!.message!.deliveryInfo!.redelivered, true);
    assert.equal(all[1]!.redelivered, false);
    assert.equal(all[2]!.redelivered, true);
    for (const d of all) await d.ack();
  } finally {
    await broker.close();
  }
});

Deno.test("sqlite broker: two instances on one file never get the same message", async () => {
  await using store = await tempStore();
  const a = new SqliteBroker(store.url);
  const b = new SqliteBroker(store.url);
  await a.connect();
  await b.connect();
  try {
    for (let i = 0; i < 50; i++) await a.publish(message(`m${i}`), route("q"));
    const seen: string[] = [];
    for (;;) {
      const [da, db] = await Promise.all([
        a.fetch(["q"], { max: 3, timeoutMs: 0 }),
        b.fetch(["q"], { max: 4, timeoutMs: 0 }),
      ]);
      if (!da.length && !db.length) break;
      for (const d of [...da, ...db]) {
        seen.push(String(d.message!.headers.id));
        await d.ack();
      }
    }
    assert.equal(seen.length, 50);
    assert.equal(new Set(seen).size, 50);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("sqlite broker: leases are renewed while the owner lives, given back after it stops", async () => {
  await using store = await tempStore();
  // Renewal runs every third of the timeout: 1 s leaves room for a busy machine's timer lag.
  const visibilityTimeout = 1;
  const holder = new SqliteBroker(store.url, { visibilityTimeout });
  const other = new SqliteBroker(store.url, { visibilityTimeout });
  await holder.connect();
  await other.connect();
  try {
    await holder.publish(message("held"), route("q"));
    const [held] = await holder.fetch(["q"], { max: 1, timeoutMs: 0 });
    assert.ok(held);
    // Three visibility timeouts pass while the holder is alive: never redelivered.
    const stolen = await other.fetch(["q"], { max: 1, timeoutMs: 3000 });
    assert.deepEqual(stolen, []);
    // The holder "dies" (stops renewing) without settling: the lease runs out.
    await holder.close();
    const started = performance.now();
    const [again] = await other.fetch(["q"], { max: 1, timeoutMs: 5000 });
    assert.ok(again, "the message came back");
    assert.ok(performance.now() - started < 5000);
    assert.equal(again.redelivered, true);
    assert.deepEqual(ids([again]), ["held"]);
    await held.ack().then(() => assert.fail("a closed broker cannot settle"), () => {});
    await again.ack();
    assert.equal(await other.queueSize("q"), 0);
  } finally {
    await holder.close();
    await other.close();
  }
});

Deno.test("sqlite broker: a new instance with the same owner restores its unacked messages at connect", async () => {
  await using store = await tempStore();
  const first = new SqliteBroker(`${store.url}?owner=w1`);
  await first.connect();
  await first.publish(message("x"), route("q"));
  await first.publish(message("y"), route("q"));
  const taken = await first.fetch(["q"], { max: 2, timeoutMs: 0 });
  assert.equal(taken.length, 2);
  await first.close();

  const stranger = new SqliteBroker(store.url);
  await stranger.connect();
  assert.equal(await stranger.queueSize("q"), 0, "still leased to w1 (visibility timeout 1 h)");
  const second = new SqliteBroker(store.url, { owner: "w1" });
  await second.connect();
  try {
    assert.equal(second.owner, "w1");
    assert.equal(await second.queueSize("q"), 2);
    const back = await stranger.fetch(["q"], { max: 2, timeoutMs: 0 });
    assert.deepEqual(ids(back), ["x", "y"], "restored in their original order");
    assert.ok(back.every((d) => d.redelivered));
    for (const d of back) await d.ack();
  } finally {
    await second.close();
    await stranger.close();
  }
});

Deno.test("sqlite broker: dead letters keep the kombu envelope, newest first; purge and sizes", async () => {
  await using store = await tempStore();
  const broker = new SqliteBroker(store.url);
  await broker.connect();
  try {
    await broker.publish(message("d1"), route("q"));
    await broker.publish(message("d2"), route("q"));
    await broker.publish(message("keep"), route("other"));
    const [d1, d2] = await broker.fetch(["q"], { max: 2, timeoutMs: 0 });
    await d1!.deadLetter("first");
    await d2!.deadLetter("second");
    await d2!.deadLetter("again"); // already settled
    const dead = await broker.deadLetters();
    assert.deepEqual(dead.map((d) => d.reason), ["second", "first"]);
    assert.equal(dead[0]!.queue, "q");
    assert.equal(JSON.parse(dead[0]!.raw).headers.id, "d2");
    assert.equal(typeof JSON.parse(dead[0]!.raw).properties.delivery_tag, "string");
    assert.equal(typeof dead[0]!.at, "number");
    assert.equal((await broker.deadLetters(1)).length, 1);
    await broker.publish(message("p1"), route("q"));
    assert.equal(await broker.purge("q"), 1);
    assert.equal(await broker.queueSize("q"), 0);
    assert.equal(await broker.queueSize("other"), 1);
  } finally {
    await broker.close();
  }
});

Deno.test("sqlite broker: an undecodable row is delivered with its DecodeError and can be dead-lettered", async () => {
  await using store = await tempStore();
  const broker = new SqliteBroker(store.url);
  await broker.connect();
  try {
    store.exec(
      `INSERT INTO celeriac_messages (queue, priority, bucket, ord, raw, published_at)
       VALUES ('q', 0, 0, 1, 'not json', 0)`,
    );
    const [d] = await broker.fetch(["q"], { max: 1, timeoutMs: 0 });
    assert.equal(d!.message, null);
    assert.equal(d!.decodeError?.name, "DecodeError");
    assert.equal(d!.raw, "not json");
    await d!.deadLetter("undecodable");
    assert.equal((await broker.deadLetters())[0]!.raw, "not json");
  } finally {
    await broker.close();
  }
});

Deno.test("sqlite broker: a waiting fetch wakes on a publish, times out, and honours its signal", async () => {
  await using store = await tempStore();
  const broker = new SqliteBroker(store.url);
  await broker.connect();
  try {
    // Same process: the publish wakes the waiter at once.
    const waiting = broker.fetch(["q"], { max: 1, timeoutMs: 10_000 });
    await broker.publish(message("w"), route("q"));
    const [w] = await waiting;
    assert.deepEqual(ids([w!]), ["w"]);
    await w!.ack();

    let started = performance.now();
    assert.deepEqual(await broker.fetch(["q"], { max: 1, timeoutMs: 120 }), []);
    const waited = performance.now() - started;
    assert.ok(waited >= 100 && waited < 2000, `waited ${waited} ms`);

    const controller = new AbortController();
    started = performance.now();
    const aborted = broker.fetch(["q"], { max: 1, timeoutMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    assert.deepEqual(await aborted, []);
    assert.ok(performance.now() - started < 2000);

    // close() ends a waiting fetch too.
    const closing = broker.fetch(["q"], { max: 1, timeoutMs: 60_000 });
    await broker.close();
    assert.deepEqual(await closing, []);
  } finally {
    await broker.close();
  }
});

Deno.test("sqlite broker: a waiting fetch sees a row written by another connection by polling", async () => {
  await using store = await tempStore();
  const consumer = new SqliteBroker(store.url);
  await consumer.connect();
  try {
    const raw = encodeRedisEnvelope(message("seen"), {
      exchange: "",
      routingKey: "q",
      deliveryTag: "tag",
    });
    const waiting = consumer.fetch(["q"], { max: 1, timeoutMs: 5000 });
    const started = performance.now();
    // Written through a connection of its own, as another process would: no wake-up.
    store.exec(
      `INSERT INTO celeriac_messages (queue, priority, bucket, ord, raw, published_at)
       VALUES ('q', 0, 0, 1, '${raw.replaceAll("'", "''")}', 0)`,
    );
    const [d] = await waiting;
    assert.deepEqual(ids([d!]), ["seen"]);
    assert.ok(performance.now() - started < 1000, "found within a few polls (≤ 250 ms each)");
    await d!.ack();
  } finally {
    await consumer.close();
  }
});

Deno.test("sqlite broker: fanout crosses instances on one file; bindings route a named exchange", async () => {
  await using store = await tempStore();
  const a = new SqliteBroker(store.url);
  const b = new SqliteBroker(store.url);
  await a.connect();
  await b.connect();
  try {
    await a.broadcast("celeryev", "worker.online", message("before"));
    const got: string[] = [];
    const sub = await b.subscribe("celeryev", "#", (m) => void got.push(String(m.headers.id)));
    await a.broadcast("celeryev", "worker.heartbeat", message("after"));
    await pollUntil(() => got.length === 1, { message: "the other instance's broadcast" });
    assert.deepEqual(got, ["after"], "a subscriber sees only what came after it started");
    await sub.close();

    // A publish to a named exchange goes to the queues bound with its routing key; other
    // publishes go to the queue named by the routing key, as before.
    await b.bindQueue("oid-1.reply.celery.pidbox", "reply.celery.pidbox", "oid-1");
    await a.publish(message("reply"), { exchange: "reply.celery.pidbox", routingKey: "oid-1" });
    assert.equal(await a.queueSize("oid-1.reply.celery.pidbox"), 1);
    assert.equal(await a.queueSize("oid-1"), 0);
    await b.unbindQueue("oid-1.reply.celery.pidbox", "reply.celery.pidbox", "oid-1");
    await a.publish(message("unbound"), { exchange: "reply.celery.pidbox", routingKey: "oid-1" });
    assert.equal(await a.queueSize("oid-1"), 1);
    assert.equal(await a.queueSize("oid-1.reply.celery.pidbox"), 1);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("sqlite broker: URL factory, parameters and errors", async () => {
  await using store = await tempStore();
  const broker = await createBroker(`${store.url}?visibility_timeout=2.5&owner=me`);
  assert.ok(broker instanceof SqliteBroker);
  assert.equal(broker.kind, "sqlite");
  assert.equal(broker.visibilityTimeoutMs, 2500);
  assert.equal(broker.owner, "me");
  assert.equal(new SqliteBroker(store.url).visibilityTimeoutMs, 3600_000);
  assert.notEqual(new SqliteBroker(store.url).owner, new SqliteBroker(store.url).owner);
  await assert.rejects(createBroker("sqlite://"), ConfigError);
  await assert.rejects(createBroker(`${store.url}?visibility=1`), ConfigError);
  await assert.rejects(createBroker(`${store.url}?visibility_timeout=0`), ConfigError);
  await assert.rejects(
    broker.publish(message("x"), route("q")),
    /not connected/,
  );
});

Deno.test("sqlite broker: an app on sqlite:// defaults its backend to the same file", async () => {
  await using store = await tempStore();
  const app = createApp({ broker: `${store.url}?visibility_timeout=60` });
  assert.equal(app.backendSpec, store.url);
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const worker = new Worker(app, { logLevel: "critical", fetchTimeoutMs: 100 });
  try {
    await worker.start();
    const result = await add.delay(2, 3);
    assert.equal(await result.get({ timeout: 5 }), 5);
    assert.equal((await (await app.backend())!.get(result.id))!.status, "SUCCESS");
  } finally {
    await worker.stop();
    await app.close();
  }
});

Deno.test("sqlite broker: a worker holds an ETA message leased, and gives it back at stop", async () => {
  await using store = await tempStore();
  const app = createApp({ broker: store.url });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const worker = new Worker(app, { logLevel: "critical", fetchTimeoutMs: 50 });
  const probe = new SqliteBroker(store.url);
  await probe.connect();
  try {
    await worker.start();
    const later = await add.applyAsync([1, 2], {}, { countdown: 3600 });
    await pollUntil(() => worker.scheduledIds.includes(later.id), { message: "the ETA task held" });
    assert.equal(await probe.queueSize("celery"), 0, "held messages stay leased");
    const soon = await add.applyAsync([2, 2], {}, { countdown: 0.2 });
    assert.equal(await soon.get({ timeout: 5 }), 4);
    await worker.stop();
    assert.equal(await probe.queueSize("celery"), 1, "given back at warm shutdown");
    const [d] = await probe.fetch(["celery"], { max: 1, timeoutMs: 0 });
    assert.equal(d!.message!.headers.id, later.id);
    assert.equal(d!.redelivered, true);
    await d!.ack();
  } finally {
    await worker.stop();
    await app.close();
    await probe.close();
  }
});

Deno.test("sqlite broker: an ETA message held by a broker that died comes back after the visibility timeout", async () => {
  await using store = await tempStore();
  const crashed = new SqliteBroker(store.url, { visibilityTimeout: 0.2 });
  await crashed.connect();
  const eta = new Date(Date.now() + 60_000);
  await crashed.publish(message("eta", undefined, eta), route("celery"));
  const [held] = await crashed.fetch(["celery"], { max: 1, timeoutMs: 0 });
  assert.ok(held);
  await crashed.close(); // no settle, no more renewals: as if the process had died
  const next = new SqliteBroker(store.url, { visibilityTimeout: 0.2 });
  await next.connect();
  try {
    const [back] = await next.fetch(["celery"], { max: 1, timeoutMs: 5000 });
    assert.equal(back?.message?.headers.id, "eta");
    assert.equal(back?.message?.headers.eta, held.message!.headers.eta);
    await back!.ack();
  } finally {
    await next.close();
  }
});

runBrokerContract({
  name: "sqlite",
  async create() {
    const store = await tempStore();
    const broker = new SqliteBroker(store.url, { visibilityTimeout: 5 });
    await broker.connect();
    return {
      broker,
      async cleanup() {
        await broker.close();
        await store.cleanup();
      },
    };
  },
  recover(broker) {
    (broker as SqliteBroker).restoreUnacked();
    return Promise.resolve(broker);
  },
});
