/**
 * The Redis broker: the shared contract, then kombu's exact layout and interop with
 * messages captured from Python Celery 5.2 (fixtures). One redis-server for the file,
 * flushed before each test, stopped by the last test.
 */
import assert from "node:assert/strict";
import type { Delivery } from "../../src/brokers/broker.ts";
import { RedisBroker } from "../../src/brokers/redis/broker.ts";
import { restoreVisible } from "../../src/brokers/redis/unacked.ts";
import { RedisClient } from "../../src/redis/client.ts";
import { encodeTaskMessage } from "../../src/protocol/task.ts";
import { decodeTaskMessage } from "../../src/protocol/task.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { ids, runBrokerContract } from "./contract.ts";

const FIXTURES = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);
const fixture = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(name, FIXTURES)));
const SEP = "\x06\x16";

const r = await startRedis();

async function fresh(options = {}): Promise<{ broker: RedisBroker; cleanup(): Promise<void> }> {
  await r.cli("FLUSHALL");
  const broker = new RedisBroker(r.url(0), { restoreIntervalMs: 0, ...options });
  await broker.connect();
  return { broker, cleanup: () => broker.close() };
}

/** Reads a stored value as redis-cli quotes it (`--no-raw`), back to the exact string. */
async function read(...args: string[]): Promise<string> {
  return JSON.parse((await r.cli("--no-raw", ...args)).trim());
}

function task(id: string, priority?: number) {
  return encodeTaskMessage(
    { id, task: "tasks.add", args: [2], origin: "gen1@h", priority },
    new Date(),
  );
}

runBrokerContract({
  name: "redis",
  create: () => fresh(),
  async recover(broker) {
    await broker.close(); // a crash: its unsettled messages stay in `unacked`
    const next = new RedisBroker(r.url(0), { restoreIntervalMs: 0 });
    await next.connect();
    // As if the visibility timeout had passed: scores are whole seconds rounded up, so a
    // ceiling 1 s past now covers every delivery made so far.
    await next.restoreVisible(-1);
    return next;
  },
});

Deno.test("redis broker: kombu layout of a published task, binding and unacked entry", async () => {
  const { broker, cleanup } = await fresh();
  try {
    await broker.declareQueue("celery");
    assert.equal(
      (await r.cli("SMEMBERS", "_kombu.binding.celery")).trim(),
      `celery${SEP}${SEP}celery`,
    );
    await broker.publish(
      encodeTaskMessage({
        id: "t1",
        task: "tasks.add",
        args: [2],
        kwargs: { y: 3 },
        origin: "gen1@h",
      }, new Date()),
      { exchange: "", routingKey: "celery" },
    );
    const raw = await read("LINDEX", "celery", "0");
    const env = JSON.parse(raw);
    const basic = fixture("redis-task-basic.json").envelope;
    assert.deepEqual(Object.keys(env), Object.keys(basic));
    assert.deepEqual(Object.keys(env.properties), Object.keys(basic.properties));
    assert.deepEqual(Object.keys(env.headers), Object.keys(basic.headers));
    assert.equal(env.properties.body_encoding, "base64");
    assert.deepEqual(env.properties.delivery_info, { exchange: "", routing_key: "celery" });
    assert.match(env.properties.delivery_tag, /^[0-9a-f-]{36}$/);
    const body = JSON.parse(atob(env.body));
    assert.deepEqual(body.slice(0, 2), [[2], { y: 3 }]);
    assert.deepEqual(Object.keys(body[2]), Object.keys(JSON.parse(atob(basic.body))[2]));

    const [d] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
    const tag = env.properties.delivery_tag;
    const stored = await read("HGET", "unacked", tag);
    assert.equal(stored, `[${raw}, "", "celery"]`, "the envelope is embedded byte for byte");
    const entry = JSON.parse(stored);
    const kombu = JSON.parse(fixture("redis-unacked-entry.json").raw);
    assert.equal(entry.length, kombu.length);
    assert.deepEqual(entry.slice(1), kombu.slice(1));
    assert.deepEqual(Object.keys(entry[0]), Object.keys(kombu[0]));
    const score = Number(await r.cli("ZSCORE", "unacked_index", tag));
    assert.ok(Math.abs(score - Date.now() / 1000) < 60, `score ${score} is unix seconds`);
    await d!.ack();
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
    assert.equal((await r.cli("ZCARD", "unacked_index")).trim(), "0");
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: a message LPUSHed by Python Celery is fetched and decoded", async () => {
  const { broker, cleanup } = await fresh();
  try {
    const f = fixture("redis-task-kwargs-unicode.json");
    await r.cli("LPUSH", "celery", f.raw);
    const p = fixture("redis-task-priority.json");
    await r.cli("LPUSH", p.key, p.raw);
    const got = await broker.fetch(["celery"], { max: 2, timeoutMs: 100 });
    const [unicode, prio] = got.map((d) => decodeTaskMessage(d.message!));
    assert.equal(unicode!.task, "tasks.echo");
    assert.equal(unicode!.kwargs.big, 9007199254740993n);
    assert.equal(unicode!.kwargs.name, "Zoë ☃");
    assert.equal(prio!.priority, 5);
    assert.equal(
      await read("HGET", "unacked", f.envelope.properties.delivery_tag),
      `[${f.raw}, "", "celery"]`,
    );
    for (const d of got) await d.ack();
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: unacked_index scores are whole seconds, never before the delivery", async () => {
  const { broker, cleanup } = await fresh({ visibilityTimeout: 30 });
  try {
    for (let i = 0; i < 3; i++) {
      await broker.publish(task(`s${i}`), { exchange: "", routingKey: "celery" });
    }
    const before = Date.now() / 1000;
    const got = await broker.fetch(["celery"], { max: 3, timeoutMs: 100 });
    const after = Date.now() / 1000;
    assert.equal(got.length, 3);
    const scores = async () => {
      const flat = (await r.cli("ZRANGE", "unacked_index", "0", "-1", "WITHSCORES")).trim()
        .split("\n");
      return flat.filter((_, i) => i % 2 === 1);
    };
    for (const score of await scores()) {
      assert.match(score, /^\d+$/, "a whole number of seconds");
      assert.ok(Number(score) >= before && Number(score) <= Math.ceil(after), score);
    }
    assert.equal(await broker.restoreVisible(), 0, "nothing is restored early");
    await broker.touch(...(await r.cli("HKEYS", "unacked")).trim().split("\n"));
    for (const score of await scores()) assert.match(score, /^\d+$/, "refreshed: whole seconds");
    for (const d of got) await d.ack();
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: a restore pass refreshes the stale tags this process holds, restores the rest", async () => {
  const { broker, cleanup } = await fresh({ visibilityTimeout: 30 });
  const client = await RedisClient.connect({ host: "127.0.0.1", port: r.port });
  try {
    for (const id of ["mine1", "theirs", "mine2"]) {
      await broker.publish(task(id), { exchange: "", routingKey: "celery" });
    }
    const got = await broker.fetch(["celery"], { max: 3, timeoutMs: 100 });
    assert.equal(got.length, 3);
    const tagOf = new Map<string, string>();
    for (const tag of (await r.cli("HKEYS", "unacked")).trim().split("\n")) {
      tagOf.set(JSON.parse(await read("HGET", "unacked", tag))[0].headers.id, tag);
      await r.cli("ZADD", "unacked_index", "1", tag); // stale: as if held for ages
    }
    const held = new Set([tagOf.get("mine1")!, tagOf.get("mine2")!]);
    const before = Math.floor(Date.now() / 1000);
    assert.equal(
      await restoreVisible(client, (_, routingKey) => Promise.resolve([routingKey]), 30, held),
      1,
    );
    for (const tag of held) {
      const score = Number(await r.cli("ZSCORE", "unacked_index", tag));
      assert.ok(Number.isInteger(score) && score >= before, `refreshed to now: ${score}`);
    }
    assert.equal((await r.cli("HEXISTS", "unacked", tagOf.get("theirs")!)).trim(), "0");
    assert.equal(await broker.queueSize("celery"), 1, "the one not held went back");
    for (const d of got) await d.ack();
  } finally {
    client.disconnect();
    await cleanup();
  }
});

Deno.test("redis broker: restoreVisible gives back an old unacked message as kombu does", async () => {
  const { broker, cleanup } = await fresh({ visibilityTimeout: 30 });
  try {
    await broker.publish(task("old", 6), { exchange: "", routingKey: "celery" });
    const [d] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
    assert.ok(d);
    assert.equal(await broker.restoreVisible(), 0, "nothing is old yet");
    const tag = (await r.cli("HKEYS", "unacked")).trim();
    await r.cli("ZADD", "unacked_index", String(Date.now() / 1000 - 31), tag); // its worker died
    assert.equal(await broker.restoreVisible(), 1);
    // RPUSH to the base list (the priority bucket is lost, as in kombu).
    assert.equal((await r.cli("LLEN", `celery${SEP}6`)).trim(), "0");
    const env = JSON.parse(await read("LINDEX", "celery", "-1"));
    const kombu = fixture("redis-task-restored.json").envelope;
    assert.equal(env.headers.redelivered, kombu.headers.redelivered);
    assert.equal(
      env.properties.delivery_info.redelivered,
      kombu.properties.delivery_info.redelivered,
    );
    assert.deepEqual(
      Object.keys(env.properties.delivery_info),
      Object.keys(kombu.properties.delivery_info),
    );
    assert.equal(env.properties.delivery_tag, tag, "the tag is kept");
    assert.equal((await r.cli("EXISTS", "unacked", "unacked_mutex")).trim(), "0");
    await d.ack(); // too late: it was given back; the ack must not lose the restored copy
    const [again] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
    assert.equal(again!.redelivered, true);
    assert.equal(decodeTaskMessage(again!.message!).id, "old");
    await again!.ack();
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: restoreVisible restores Python's own unacked entries, and skips while the mutex is held", async () => {
  const { broker, cleanup } = await fresh({ visibilityTimeout: 30 });
  try {
    const f = fixture("redis-unacked-entry.json");
    await r.cli("HSET", "unacked", f.delivery_tag, f.raw);
    await r.cli("ZADD", "unacked_index", "1", f.delivery_tag);
    await r.cli("SET", "unacked_mutex", "python-token", "PX", "10000");
    assert.equal(await broker.restoreVisible(), 0);
    assert.equal((await r.cli("GET", "unacked_mutex")).trim(), "python-token");
    await r.cli("DEL", "unacked_mutex");
    assert.equal(await broker.restoreVisible(), 1);
    const [d] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
    assert.equal(d!.redelivered, true);
    assert.equal(decodeTaskMessage(d!.message!).id, JSON.parse(f.raw)[0].headers.id);
    await d!.ack();
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: malformed envelopes are moved to celeriac.dead by the fetch, never lost", async () => {
  const { broker, cleanup } = await fresh();
  try {
    const noTag = JSON.stringify({ body: "W10=", headers: {}, properties: {} });
    await r.cli("LPUSH", "celery", "not json {");
    await r.cli("LPUSH", "celery", noTag);
    const got = await broker.fetch(["celery"], { max: 5, timeoutMs: 100 });
    assert.equal(got.length, 2);
    for (const d of got) {
      assert.equal(d.message, null);
      assert.ok(d.decodeError);
      await d.deadLetter("again"); // a no-op: it is dead-lettered already
    }
    assert.equal(got[0]!.raw, "not json {");
    const dead = await broker.deadLetters();
    assert.deepEqual(dead.map((x) => x.raw), [noTag, "not json {"]);
    assert.equal(dead[0]!.queue, "celery");
    assert.match(dead[0]!.reason, /Cannot decode Redis envelope/);
    assert.equal(await broker.queueSize("celery"), 0);
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
    // Also when BRPOP pops it.
    const waiting = broker.fetch(["celery"], { max: 1, timeoutMs: 3000 });
    await r.cli("LPUSH", "celery", "[1, 2");
    assert.equal((await waiting)[0]!.message, null);
    assert.equal((await broker.deadLetters(1))[0]!.raw, "[1, 2");
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: onTaken comes before the taken messages are decoded, and what it sends is written first", async () => {
  const { broker, cleanup } = await fresh();
  // Every write of the test's connections, with how many deliveries the broker had made by
  // then (a delivery is made as its envelope is decoded).
  const writes: { fetch: boolean; decoded: number }[] = [];
  const probe = await Deno.connect({ hostname: "127.0.0.1", port: r.port });
  let proto = probe as Deno.Conn;
  while (!Object.hasOwn(proto, "write")) proto = Object.getPrototypeOf(proto);
  probe.close();
  const write = proto.write;
  proto.write = function (this: Deno.Conn, bytes: Uint8Array) {
    const text = new TextDecoder().decode(bytes);
    writes.push({ fetch: text.includes("EVAL"), decoded: broker.unackedCount });
    return write.call(this, bytes);
  };
  try {
    for (const id of ["t1", "t2", "t3", "t4", "t5"]) {
      await broker.publish(task(id), { exchange: "", routingKey: "celery" });
    }
    const taken: { count: number; decoded: number }[] = [];
    let second: Promise<Delivery[]> | undefined;
    writes.length = 0;
    const first = await broker.fetch(["celery"], {
      max: 3,
      timeoutMs: 100,
      onTaken: (count) => {
        taken.push({ count, decoded: broker.unackedCount });
        second = broker.fetch(["celery"], { max: 2, timeoutMs: 100 });
      },
    });
    assert.deepEqual(taken, [{ count: 3, decoded: 0 }], "called once, before decoding");
    assert.deepEqual(
      writes.filter((w) => w.fetch),
      [{ fetch: true, decoded: 0 }, { fetch: true, decoded: 0 }],
      "the second FETCH was written before the first batch was decoded",
    );
    assert.deepEqual(ids(first), ["t1", "t2", "t3"]);
    assert.deepEqual(ids(await second!), ["t4", "t5"]);

    // Nothing taken (empty queues, the blocking pop times out): no call.
    const none = await broker.fetch(["celery"], {
      max: 2,
      timeoutMs: 50,
      onTaken: () => assert.fail("nothing was taken"),
    });
    assert.deepEqual(none, []);
    // Taken by the blocking pop: called too.
    const waiting = broker.fetch(["celery"], {
      max: 2,
      timeoutMs: 3000,
      onTaken: (count) => taken.push({ count, decoded: broker.unackedCount }),
    });
    await broker.publish(task("t6"), { exchange: "", routingKey: "celery" });
    assert.deepEqual(ids(await waiting), ["t6"]);
    assert.deepEqual(taken.at(-1), { count: 1, decoded: 5 });
  } finally {
    proto.write = write;
    await cleanup();
  }
});

Deno.test("redis broker: requeue front is kombu's restore, back keeps its priority bucket", async () => {
  const { broker, cleanup } = await fresh();
  try {
    await broker.publish(task("a", 3), { exchange: "", routingKey: "q" });
    await broker.publish(task("b", 3), { exchange: "", routingKey: "q" });
    const [a, b] = await broker.fetch(["q"], { max: 2, timeoutMs: 100 });
    await a!.requeue("front");
    await b!.requeue("back");
    assert.equal(JSON.parse(await read("LINDEX", "q", "-1")).headers.id, "a");
    assert.equal(JSON.parse(await read("LINDEX", `q${SEP}3`, "0")).headers.redelivered, true);
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: a named direct exchange routes through kombu bindings", async () => {
  const { broker, cleanup } = await fresh();
  try {
    await r.cli("SADD", "_kombu.binding.tasks", `urgent${SEP}${SEP}sms`, `urgent${SEP}${SEP}mail`);
    await broker.publish(task("x"), { exchange: "tasks", routingKey: "urgent" });
    await broker.publish(task("y"), { exchange: "tasks", routingKey: "nobody" }); // dropped, as kombu
    assert.equal(await broker.queueSize("sms"), 1);
    assert.equal(await broker.queueSize("mail"), 1);
    const [d] = await broker.fetch(["sms"], { max: 1, timeoutMs: 100 });
    assert.deepEqual(d!.message!.deliveryInfo, { exchange: "tasks", routingKey: "urgent" });
    await d!.requeue("front"); // restore looks the bindings up again
    assert.equal(await broker.queueSize("sms"), 1);
    assert.equal(await broker.queueSize("mail"), 2);
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: fanout uses kombu's pub/sub channels and topic filtering", async () => {
  const { broker, cleanup } = await fresh();
  try {
    const got: string[] = [];
    let arrived!: () => void;
    const both = new Promise<void>((resolve) => arrived = resolve);
    const sub = await broker.subscribe("celeryev", "task.#", (m) => {
      got.push(m.deliveryInfo!.routingKey);
      if (got.length === 2) arrived();
    });
    await broker.broadcast("celeryev", "worker.heartbeat", task("e"));
    await broker.broadcast("celeryev", "task.multi", task("e"));
    const f = fixture("redis-event-task-succeeded.json"); // a Python publisher's event
    await r.cli("PUBLISH", f.channel, f.raw);
    await both;
    assert.deepEqual(got, ["task.multi", "task.multi"]);
    await sub.close();
  } finally {
    await cleanup();
  }
});

Deno.test("redis broker: stop the test redis-server", () => r.stop());
