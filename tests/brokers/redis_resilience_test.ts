/**
 * The Redis broker under stress: URLs and options, failing connects (closed port, missing
 * permission), aborted waits, concurrent fetches, keep-alive of held messages, late settles,
 * and a Redis restart under a connected broker. One redis-server for the file.
 */
import assert from "node:assert/strict";
import { RedisBroker } from "../../src/brokers/redis/broker.ts";
import { BrokerConnectionError, ConfigError } from "../../src/errors.ts";
import { encodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";
import { decodeTaskMessage, encodeTaskMessage } from "../../src/protocol/task.ts";
import { pollUntil } from "../helpers/poll.ts";
import { spawnChild } from "../helpers/process.ts";
import { freePort, startRedis } from "../helpers/redis_server.ts";

const r = await startRedis();

async function fresh(options = {}): Promise<RedisBroker> {
  await r.cli("FLUSHALL");
  const broker = new RedisBroker(r.url(0), { restoreIntervalMs: 0, ...options });
  await broker.connect();
  return broker;
}

function task(id: string) {
  return encodeTaskMessage({ id, task: "tasks.add", origin: "gen1@h" }, new Date());
}

const idOf = (d: { message: unknown }) =>
  decodeTaskMessage(d.message as Parameters<typeof decodeTaskMessage>[0]).id;

Deno.test("redis broker: URL parsing, redaction and options", () => {
  const b = new RedisBroker("redis://user:s3cret@example.com:6390/4?visibility_timeout=90");
  assert.equal(b.displayUrl, "redis://user:**@example.com:6390/4?visibility_timeout=90");
  assert.equal(b.visibilityTimeout, 90);
  assert.equal(new RedisBroker("rediss://h", { visibilityTimeout: 5 }).visibilityTimeout, 5);
  assert.equal(new RedisBroker("redis://h").visibilityTimeout, 3600);
  assert.throws(() => new RedisBroker("redis://h/x"), ConfigError);
  assert.throws(() => new RedisBroker("redis://h/0?visibility_timeout=-1"), ConfigError);
  assert.throws(() => new RedisBroker("redis://h/0?typo=1"), /unknown parameter "typo"/);
  assert.throws(() => new RedisBroker("amqp://h"), ConfigError);
  assert.throws(() => new RedisBroker("redis://h", { visibilityTimeout: 0 }), RangeError);
});

Deno.test("redis broker: connecting to a closed port fails fast with BrokerConnectionError", async () => {
  const port = freePort();
  const broker = new RedisBroker(`redis://127.0.0.1:${port}/0`);
  const started = performance.now();
  await assert.rejects(() => broker.connect(), (err: unknown) => {
    assert.ok(err instanceof BrokerConnectionError);
    assert.match(
      err.message,
      new RegExp(`^Cannot connect to Redis \\(broker\\) at 127\\.0\\.0\\.1:${port}`),
    );
    return true;
  });
  assert.ok(performance.now() - started < 3000);
  await broker.close();
});

Deno.test("redis broker: a refused login or database fails connect with the server's reason", async () => {
  await r.cli("CONFIG", "SET", "requirepass", "sekret");
  try {
    for (
      const [url, reason] of [
        [r.url(0), /NOAUTH/],
        [r.url(0).replace("//", "//:wrong@"), /WRONGPASS/],
        [r.url(99).replace("//", "//:sekret@"), /DB index is out of range/],
      ] as const
    ) {
      const broker = new RedisBroker(url);
      await assert.rejects(broker.connect(), (err: Error) => {
        assert.ok(err instanceof BrokerConnectionError);
        assert.match(err.message, reason);
        assert.doesNotMatch(err.message, /sekret|wrong/);
        return true;
      });
      await broker.close();
    }
    const ok = new RedisBroker(r.url(2).replace("//", "//:sekret@"));
    await ok.connect();
    await ok.close();
  } finally {
    await r.cli("-a", "sekret", "--no-auth-warning", "CONFIG", "SET", "requirepass", "");
  }
});

Deno.test("redis broker and backend: a missing net permission names the flag", async () => {
  const script = `
    import { RedisBroker } from ${
    JSON.stringify(import.meta.resolve("../../src/brokers/redis/broker.ts"))
  };
    import { RedisBackend } from ${
    JSON.stringify(import.meta.resolve("../../src/backends/redis.ts"))
  };
    for (const c of [new RedisBroker("${r.url(0)}"), new RedisBackend("${r.url(1)}")]) {
      try { await c.connect(); console.log("connected"); }
      catch (e) { console.log(e.name + " " + e.flag); }
    }`;
  const child = spawnChild(Deno.execPath(), {
    args: ["run", "--no-prompt", "--no-config", "-"],
    stdin: script,
    label: "no-net",
  });
  const { code, stdout } = await child.waitForExit(30_000);
  assert.equal(code, 0, child.output);
  const flag = `--allow-net=127.0.0.1:${r.port}`;
  assert.equal(stdout, `PermissionMissingError ${flag}\nPermissionMissingError ${flag}\n`);
});

Deno.test("redis broker: an aborted wait returns at once and a message popped late goes back unmarked", async () => {
  const broker = await fresh();
  try {
    const controller = new AbortController();
    const waiting = broker.fetch(["q"], { max: 1, timeoutMs: 10_000, signal: controller.signal });
    await pollUntil(async () => (await r.cli("CLIENT", "LIST")).includes("cmd=brpop"));
    controller.abort();
    assert.deepEqual(await waiting, []);
    await broker.publish(task("late"), { exchange: "", routingKey: "q" }); // the BRPOP may take it
    const [d] = await broker.fetch(["q"], { max: 1, timeoutMs: 3000 });
    assert.equal(idOf(d!), "late");
    assert.equal(d!.redelivered, false);
    await d!.ack();
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
  } finally {
    await broker.close();
  }
});

Deno.test("redis broker: concurrent waiting fetches each get their own message", async () => {
  const broker = await fresh();
  try {
    const a = broker.fetch(["q"], { max: 1, timeoutMs: 5000 });
    const b = broker.fetch(["q"], { max: 1, timeoutMs: 5000 });
    await broker.publish(task("1"), { exchange: "", routingKey: "q" });
    await broker.publish(task("2"), { exchange: "", routingKey: "q" });
    const got = [...await a, ...await b];
    assert.deepEqual(got.map(idOf).sort(), ["1", "2"]);
    for (const d of got) await d.ack();
  } finally {
    await broker.close();
  }
});

Deno.test("redis broker: a blocking fetch that wakes takes the other waiting messages too", async () => {
  const broker = await fresh();
  try {
    const waiting = broker.fetch(["q"], { max: 3, timeoutMs: 5000 });
    await pollUntil(async () => (await r.cli("CLIENT", "LIST")).includes("cmd=brpop"));
    const envelopes = ["1", "2", "3"].map((id) =>
      encodeRedisEnvelope(task(id), { exchange: "", routingKey: "q", deliveryTag: `tag-${id}` })
    );
    // Three pushes in one script: BRPOP wakes once they are all there.
    const push = "for i = 1, #ARGV do redis.call('LPUSH', 'q', ARGV[i]) end";
    await r.cli("EVAL", push, "0", ...envelopes);
    const got = await waiting;
    assert.deepEqual(got.map(idOf), ["1", "2", "3"]);
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "3");
    for (const d of got) await d.ack();
  } finally {
    await broker.close();
  }
});

Deno.test("redis broker: held messages are kept fresh, so no visibility restore takes them", async () => {
  const holder = await fresh({ visibilityTimeout: 30, restoreIntervalMs: 20 });
  const other = new RedisBroker(r.url(0), { visibilityTimeout: 30, restoreIntervalMs: 0 });
  await other.connect();
  try {
    await holder.publish(task("long"), { exchange: "", routingKey: "q" });
    const [d] = await holder.fetch(["q"], { max: 1, timeoutMs: 100 });
    const tag = (await r.cli("HKEYS", "unacked")).trim();
    await r.cli("ZADD", "unacked_index", "1", tag); // as if held for ages
    await pollUntil(async () => Number(await r.cli("ZSCORE", "unacked_index", tag)) > 1);
    assert.equal(await other.restoreVisible(), 0);
    assert.equal(holder.unackedCount, 1);
    await d!.ack();
    assert.equal(holder.unackedCount, 0);
  } finally {
    await holder.close();
    await other.close();
  }
});

Deno.test("redis broker: settling after a visibility restore does not duplicate or lose", async () => {
  const broker = await fresh({ visibilityTimeout: 30 });
  try {
    await broker.publish(task("m"), { exchange: "", routingKey: "q" });
    const [d] = await broker.fetch(["q"], { max: 1, timeoutMs: 100 });
    await r.cli("ZADD", "unacked_index", "1", (await r.cli("HKEYS", "unacked")).trim());
    assert.equal(await broker.restoreVisible(), 1);
    await d!.deadLetter("too late");
    await d!.requeue("back");
    assert.deepEqual(await broker.deadLetters(), []);
    assert.equal(await broker.queueSize("q"), 1);
  } finally {
    await broker.close();
  }
});

Deno.test("redis broker: restoreUnacked gives this instance's held messages back, in order", async () => {
  const broker = await fresh();
  try {
    for (const id of ["1", "2", "3"]) {
      await broker.publish(task(id), { exchange: "", routingKey: "q" });
    }
    await broker.fetch(["q"], { max: 2, timeoutMs: 100 });
    assert.equal(await broker.restoreUnacked(), 2);
    const again = await broker.fetch(["q"], { max: 3, timeoutMs: 100 });
    assert.deepEqual(again.map(idOf), ["1", "2", "3"]);
    for (const d of again) await d.ack();
  } finally {
    await broker.close();
  }
});

Deno.test("redis broker: survives a Redis restart (reconnects, scripts reloaded)", async () => {
  const broker = await fresh();
  try {
    const waiting = broker.fetch(["q"], { max: 1, timeoutMs: 8000 });
    await pollUntil(async () => (await r.cli("CLIENT", "LIST")).includes("cmd=brpop"));
    await r.restart();
    await broker.publish(task("after"), { exchange: "", routingKey: "q" });
    const [d] = await waiting;
    assert.equal(idOf(d!), "after");
    await d!.ack();
    await broker.publish(task("again"), { exchange: "", routingKey: "q" });
    const [e] = await broker.fetch(["q"], { max: 1, timeoutMs: 1000 });
    assert.equal(idOf(e!), "again");
    await e!.ack();
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
  } finally {
    await broker.close();
  }
});

Deno.test("redis broker: stop the test redis-server", () => r.stop());
