/**
 * The Redis result backend: the shared contract, Celery's exact layout (SETEX + PUBLISH on
 * the key-named channel), waits woken by a Python-style write of a fixture, concurrency,
 * close, and a Redis restart. One redis-server for the file, results in db 1.
 */
import assert from "node:assert/strict";
import { RedisBackend } from "../../src/backends/redis.ts";
import { BrokerConnectionError, ConfigError, ResultTimeoutError } from "../../src/errors.ts";
import { buildResultMeta } from "../../src/protocol/result.ts";
import { pollUntil } from "../helpers/poll.ts";
import { monitor } from "../helpers/redis_monitor.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { runBackendContract } from "./contract.ts";

const FIXTURES = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);
const fixture = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(name, FIXTURES)));

const r = await startRedis();
const db1 = (...args: string[]) => r.cli("-n", "1", ...args);

async function fresh(options = {}): Promise<RedisBackend> {
  await r.cli("FLUSHALL");
  const backend = new RedisBackend(r.url(1), options);
  await backend.connect();
  return backend;
}

/** Resolves once someone subscribes to the result channel of `taskId` (no fixed sleep). */
function subscribed(taskId: string): Promise<void> {
  return pollUntil(async () => {
    const out = await db1("PUBSUB", "NUMSUB", `celery-task-meta-${taskId}`);
    return Number(out.trim().split("\n")[1]) > 0;
  }, { message: `a subscriber of celery-task-meta-${taskId}` });
}

runBackendContract("redis", async () => {
  const backend = await fresh();
  return { backend, cleanup: () => backend.close() };
});

Deno.test("redis backend: writes celery-task-meta-<id> with SETEX and publishes the same value", async () => {
  const backend = await fresh();
  try {
    const waiting = backend.waitFor("abc", { timeoutMs: 5000 });
    await subscribed("abc");
    const meta = buildResultMeta({ taskId: "abc", status: "SUCCESS", result: 5 }, new Date());
    await backend.store(meta);
    assert.equal((await waiting).result, 5);
    const stored = JSON.parse(await db1("GET", "celery-task-meta-abc"));
    assert.deepEqual(
      Object.keys(stored),
      Object.keys(fixture("redis-result-success.json").decoded),
    );
    const ttl = Number(await db1("TTL", "celery-task-meta-abc"));
    assert.ok(ttl > 86000 && ttl <= 86400, `ttl ${ttl}`);
    assert.equal(
      (await db1("PUBSUB", "NUMSUB", "celery-task-meta-abc")).trim().split("\n")[1],
      "0",
    );
  } finally {
    await backend.close();
  }
});

Deno.test("redis backend: expires from the options or the URL; 0 keeps results", async () => {
  assert.equal(new RedisBackend("redis://h/1?expires=60").expires, 60);
  assert.equal(new RedisBackend("redis://h/1").expires, 86400);
  assert.throws(() => new RedisBackend("redis://h/1?visibility_timeout=1"), ConfigError);
  const backend = await fresh({ expires: 0 });
  try {
    await backend.store(buildResultMeta({ taskId: "k", status: "SUCCESS", result: 1 }, new Date()));
    assert.equal((await db1("TTL", "celery-task-meta-k")).trim(), "-1");
  } finally {
    await backend.close();
  }
});

for (const name of ["redis-result-success.json", "redis-result-failure.json"]) {
  Deno.test(`redis backend: a waiter is woken by Python Celery's SETEX + PUBLISH (${name})`, async () => {
    const backend = await fresh();
    try {
      const f = fixture(name);
      const id = f.decoded.task_id;
      const waiting = backend.waitFor(id, { timeoutMs: 5000 });
      await subscribed(id);
      await db1("SETEX", f.key, "86400", f.raw);
      await db1("PUBLISH", f.key, f.raw);
      const meta = await waiting;
      assert.equal(meta.status, f.decoded.status);
      assert.deepEqual(meta.result, f.decoded.result);
      assert.equal(meta.date_done, f.decoded.date_done);
    } finally {
      await backend.close();
    }
  });
}

Deno.test("redis backend: a stored Python SUCCESS is final, a nested status is not", async () => {
  const backend = await fresh();
  try {
    const f = fixture("redis-result-success.json");
    await db1("SET", f.key, f.raw);
    await backend.store(
      buildResultMeta({ taskId: f.decoded.task_id, status: "FAILURE", result: null }, new Date()),
    );
    assert.equal((await backend.get(f.decoded.task_id))!.status, "SUCCESS");
    // A custom state whose meta mentions SUCCESS does not block the final write.
    const progress = { status: "SUCCESS", done: 3 };
    await backend.store(
      buildResultMeta({ taskId: "p", status: "PROGRESS", result: progress }, new Date()),
    );
    await backend.store(
      buildResultMeta({ taskId: "p", status: "FAILURE", result: null }, new Date()),
    );
    assert.equal((await backend.get("p"))!.status, "FAILURE");
  } finally {
    await backend.close();
  }
});

Deno.test("redis backend: a batch reads its keys with one MGET; a SUCCESS stored first in it is kept", async () => {
  const backend = await fresh();
  const mon = await monitor(r);
  try {
    const at = new Date();
    // Issued together, so one STORE script takes all four (the backend batches its stores).
    await Promise.all([
      backend.store(buildResultMeta({ taskId: "a", status: "SUCCESS", result: 1 }, at)),
      backend.store(buildResultMeta({ taskId: "a", status: "FAILURE", result: "late" }, at)),
      backend.store(buildResultMeta({ taskId: "b", status: "STARTED", result: null }, at)),
      backend.store(buildResultMeta({ taskId: "b", status: "SUCCESS", result: 2 }, at)),
    ]);
    assert.equal(JSON.parse(await db1("GET", "celery-task-meta-a")).status, "SUCCESS");
    assert.equal(JSON.parse(await db1("GET", "celery-task-meta-b")).result, 2);
    await pollUntil(() => mon.commands.filter((c) => c.args[0] === "PUBLISH").length === 3);
    const reads = mon.commands.filter((c) => c.lua && /^(M?GET)$/.test(c.args[0]!));
    assert.deepEqual(reads.map((c) => c.args[0]), ["MGET"], "one read for the batch");
  } finally {
    await mon.close();
    await backend.close();
  }
});

Deno.test("redis backend: several waiters on one task share one subscription", async () => {
  const backend = await fresh();
  try {
    const a = backend.waitFor("shared", { timeoutMs: 5000 });
    const b = backend.waitFor("shared", { timeoutMs: 5000 });
    const short = backend.waitFor("shared", { timeoutMs: 50 });
    await assert.rejects(short, ResultTimeoutError);
    await subscribed("shared");
    await backend.store(
      buildResultMeta({ taskId: "shared", status: "REVOKED", result: null }, new Date()),
    );
    assert.deepEqual([(await a).status, (await b).status], ["REVOKED", "REVOKED"]);
  } finally {
    await backend.close();
  }
});

Deno.test("redis backend: an abort or a close ends a wait", async () => {
  const backend = await fresh();
  const controller = new AbortController();
  const aborted = backend.waitFor("x", { signal: controller.signal });
  controller.abort(new Error("stop waiting"));
  await assert.rejects(aborted, /stop waiting/);
  const closing = assert.rejects(backend.waitFor("y"), BrokerConnectionError);
  await subscribed("y");
  await backend.close();
  await closing;
  await assert.rejects(backend.waitFor("z"), BrokerConnectionError);
});

Deno.test("redis backend: a wait survives a Redis restart", async () => {
  const backend = await fresh();
  try {
    const waiting = backend.waitFor("r1", { timeoutMs: 10_000 });
    await subscribed("r1");
    await r.restart();
    await subscribed("r1"); // re-subscribed after the reconnect
    await backend.store(
      buildResultMeta({ taskId: "r1", status: "SUCCESS", result: "ok" }, new Date()),
    );
    assert.equal((await waiting).result, "ok");
  } finally {
    await backend.close();
  }
});

Deno.test("redis backend: stop the test redis-server", () => r.stop());
