/**
 * Interop with the real Python Celery 5.2 over a real RabbitMQ (one rabbitmq-server and one
 * redis-server for the file):
 *
 * 1. a Python client calls a celeriac worker (the worker CLI as a subprocess), results read
 *    by Python through the Redis backend, then through `rpc://`;
 * 2. a celeriac producer feeds a real Python worker (`--pool solo`), results read by
 *    celeriac through Redis and through `rpc://`, and a task routed by `taskRoutes` to a
 *    named queue the Python worker consumes (`-Q`).
 *
 * 3. celeriac's remote-control client (`app.control`) inspects and steers a Python worker
 *    and a celeriac worker over RabbitMQ.
 *
 * Every process is stopped in `finally`; waits are bounded.
 */

import assert from "node:assert/strict";
import { createApp, TaskFailedError } from "../../mod.ts";
import { startRabbit } from "../helpers/rabbitmq_server.ts";
import { startRedis } from "../helpers/redis_server.ts";
import {
  runPythonJson,
  startCeleriacWorker,
  startPythonWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";

const rabbit = await startRabbit();
console.log(`rabbitmq-server started in ${rabbit.startupMs} ms`);
const redis = await startRedis();
const BROKER = rabbit.url();

async function purge(...queues: string[]): Promise<void> {
  for (const q of queues) await rabbit.ctl("purge_queue", q).catch(() => {});
}

Deno.test("amqp interop: Python client → celeriac worker, results via Redis", async () => {
  const urls = { broker: BROKER, backend: redis.url(1) };
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({ ...urls, concurrency: 4, name: "celeriac-redis@test" });
    const out = await runPythonJson(
      `
      import json
      from pytasks import add, echo, fail
      r = add.delay(2, 3)
      value = r.get(timeout=10)
      e = echo.apply_async(kwargs={"text": "héllo ✓", "n": [1, 2.5, None]}, priority=3)
      f = fail.delay("boom")
      try:
          f.get(timeout=10)
          failed = None
      except ValueError as exc:
          failed = str(exc)
      print(json.dumps({"value": value, "state": r.state, "echo": e.get(timeout=10), "failed": failed}))
      `,
      { ...urls, timeoutMs: 30_000 },
    );
    assert.deepEqual(out, {
      value: 5,
      state: "SUCCESS",
      echo: { text: "héllo ✓", n: [1, 2.5, null] },
      failed: "boom",
    });
  } finally {
    await worker?.stop();
  }
});

Deno.test("amqp interop: Python client → celeriac worker, results via rpc://", async () => {
  const urls = { broker: BROKER, backend: "rpc://" };
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({ ...urls, concurrency: 4, name: "celeriac-rpc@test" });
    const out = await runPythonJson(
      `
      import json
      from pytasks import add, app, fail
      results = [add.delay(i, i) for i in range(5)]
      values = [r.get(timeout=10) for r in results]
      f = fail.delay("rpc boom")
      try:
          f.get(timeout=10)
          failed = None
      except ValueError as exc:
          failed = [type(exc).__name__, str(exc), f.state]
      # Remote control over celery.pidbox (fanout) and reply.celery.pidbox (direct).
      ping = app.control.inspect(timeout=2).ping()
      print(json.dumps({"values": values, "failed": failed, "ping": ping}))
      `,
      { ...urls, timeoutMs: 30_000 },
    );
    assert.deepEqual(out, {
      values: [0, 2, 4, 6, 8],
      failed: ["ValueError", "rpc boom", "FAILURE"],
      ping: { "celeriac-rpc@test": { ok: "pong" } },
    });
  } finally {
    await worker?.stop();
  }
});

Deno.test("amqp interop: celeriac producer → Python worker (solo), results via Redis and rpc://", async (t) => {
  await purge("celery", "math");
  let worker: WorkerProcess | undefined;
  let rpcWorker: WorkerProcess | undefined;
  try {
    worker = await startPythonWorker({
      broker: BROKER,
      backend: redis.url(2),
      pool: "solo",
      queues: ["math"], // only "math": a task that misses its route is never run
      name: "py-redis@test",
    });
    await t.step("sendTask and registered-task calls, results through Redis", async () => {
      const app = createApp({ broker: BROKER, backend: redis.url(2), defaultQueue: "math" });
      try {
        const add = app.task("tasks.add", (x: number, y: number) => x + y);
        const r1 = await app.sendTask("tasks.add", [2, 3]);
        const r2 = await add.applyAsync([40, 2], {}, { priority: 7 });
        const r3 = await app.sendTask("tasks.echo", [], { text: "Zoë", big: 2 ** 40 });
        assert.equal(await r1.get({ timeout: 15 }), 5);
        assert.equal(await r2.get({ timeout: 15 }), 42);
        assert.deepEqual(await r3.get({ timeout: 15 }), { text: "Zoë", big: 2 ** 40 });
        const bad = await app.sendTask("tasks.fail", ["nope"]);
        await assert.rejects(() => bad.get({ timeout: 15 }), (err: unknown) => {
          assert.ok(err instanceof TaskFailedError);
          assert.equal(err.excType, "ValueError");
          return true;
        });
      } finally {
        await app.close();
      }
    });
    await t.step(
      "taskRoutes sends tasks.add to queue 'math', not the default 'celery'",
      async () => {
        const app = createApp({
          broker: BROKER,
          backend: redis.url(2),
          taskRoutes: { "tasks.a*": "math" },
        });
        try {
          const r = await app.sendTask("tasks.add", [20, 22]);
          assert.equal(await r.get({ timeout: 15 }), 42);
          assert.equal(await (await app.broker()).queueSize("celery"), 0);
        } finally {
          await app.close();
        }
      },
    );
    await worker.stop();
    worker = undefined;
    rpcWorker = await startPythonWorker({
      broker: BROKER,
      backend: "rpc://",
      pool: "solo",
      name: "py-rpc@test",
    });
    await t.step("rpc://: the Python worker replies to the app's reply queue", async () => {
      const app = createApp({ broker: BROKER, backend: "rpc://" });
      try {
        const results = await Promise.all([1, 2, 3].map((i) => app.sendTask("tasks.add", [i, i])));
        assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeout: 15 }))), [2, 4, 6]);
        const bad = await app.sendTask("tasks.fail", ["rpc nope"]);
        await assert.rejects(() => bad.get({ timeout: 15 }), /ValueError: rpc nope/);
      } finally {
        await app.close();
      }
    });
  } finally {
    await worker?.stop();
    await rpcWorker?.stop();
  }
});

Deno.test("amqp interop: celeriac's app.control inspects and steers a Python and a celeriac worker", async () => {
  const urls = { broker: BROKER, backend: redis.url(3) };
  const app = createApp({ broker: BROKER, backend: null });
  let py: WorkerProcess | undefined;
  let ours: WorkerProcess | undefined;
  try {
    [py, ours] = await Promise.all([
      startPythonWorker({ ...urls, pool: "solo", name: "py-ctl@test" }),
      startCeleriacWorker({ ...urls, concurrency: 2, name: "celeriac-ctl@test" }),
    ]);
    // Replies come back through a private queue bound to reply.celery.pidbox (no bindQueue
    // on RabbitMQ: the inbox is a subscription, as kombu's pidbox client on AMQP).
    const both = app.control.inspect({ destination: ["py-ctl@test", "celeriac-ctl@test"] });
    assert.deepEqual(await both.ping(), {
      "py-ctl@test": { ok: "pong" },
      "celeriac-ctl@test": { ok: "pong" },
    });
    const registered = await both.registered();
    for (const node of ["py-ctl@test", "celeriac-ctl@test"]) {
      assert.ok(registered[node]?.includes("tasks.add"), `${node}: ${registered[node]}`);
    }
    assert.deepEqual(
      await app.control.rateLimit("tasks.add", "10/m", {
        reply: true,
        destination: ["py-ctl@test"],
        timeout: 5,
      }),
      [{ "py-ctl@test": { ok: "new rate limit set successfully" } }],
    );
    const py2 = app.control.inspect({ destination: ["py-ctl@test"], timeout: 5 });
    assert.ok(
      (await py2.registered())["py-ctl@test"]!.includes("tasks.add [rate_limit=10/m]"),
    );
    // A broadcast without a destination gets every live node's reply within the timeout.
    const all = await app.control.ping({ timeout: 2 });
    assert.deepEqual(all.map((r) => Object.keys(r)[0]).sort(), [
      "celeriac-ctl@test",
      "py-ctl@test",
    ]);
  } finally {
    await app.close();
    await Promise.all([py?.stop(), ours?.stop()]);
  }
});

Deno.test("amqp interop: stop the test servers", async () => {
  await rabbit.stop();
  await redis.stop();
});
