/**
 * Interop with the real Python Celery 5.2 over a real redis-server (started on a free
 * loopback port for each test):
 *
 * 1. A Python client (`send_task`, `apply_async`, `delay`) calls a celeriac worker (the
 *    worker CLI as a subprocess) and reads the results with Python's `AsyncResult.get()`.
 * 2. A celeriac producer (`app.sendTask`, registered tasks' `delay`/`applyAsync`) feeds a
 *    real Python Celery worker and reads the results with celeriac's `AsyncResult.get()`.
 *
 * Every process is stopped in `finally`; waits are bounded by timeouts of a few seconds.
 */

import assert from "node:assert/strict";
import { createApp, TaskFailedError } from "../../mod.ts";
import { startRedis } from "../helpers/redis_server.ts";
import {
  type CeleryUrls,
  runPythonJson,
  startCeleriacWorker,
  startPythonWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";

/** 2^64 + 1: far above 2^53, where a JS number would round it. */
const BIG = 18446744073709551617n;
const UNICODE = 'héllo wörld ✓ 日本語 🎉 \u0000 "quoted" \\ back';

Deno.test("interop: Python client → celeriac worker (Redis)", async (t) => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({ ...urls, concurrency: 4 });

    await t.step("send_task('tasks.add') → SUCCESS 5, read by Python", async () => {
      const out = await runPythonJson(
        `
        import json
        from pytasks import app
        r = app.send_task("tasks.add", (2, 3))
        value = r.get(timeout=5)
        print(json.dumps({"value": value, "state": r.state, "type": type(value).__name__}))
        `,
        urls,
      );
      assert.deepEqual(out, { value: 5, state: "SUCCESS", type: "int" });
    });

    await t.step(
      "apply_async kwargs: add(x=, y=) and echo(**kwargs) with unicode and 2^64+1",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from pytasks import add, echo
        text = ${JSON.stringify(UNICODE)}
        big = ${BIG}
        added = add.apply_async(kwargs={"x": 40, "y": 2}).get(timeout=5)
        r = echo.apply_async(kwargs={"text": text, "big": big, "neg": -big, "nested": {"l": [1, 2.5, None, True]}})
        got = r.get(timeout=5)
        print(json.dumps({
            "added": added,
            "state": r.state,
            "text_equal": got["text"] == text,
            "big_exact": got["big"] == big and type(got["big"]) is int,
            "neg_exact": got["neg"] == -big,
            "big_str": str(got["big"]),
            "nested": got["nested"],
            "keys": sorted(got),
        }))
        `,
          urls,
        );
        assert.deepEqual(out, {
          added: 42,
          state: "SUCCESS",
          text_equal: true,
          big_exact: true,
          neg_exact: true,
          big_str: String(BIG),
          nested: { l: [1, 2.5, null, true] },
          keys: ["big", "neg", "nested", "text"],
        });
      },
    );

    await t.step("tasks.fail → FAILURE; Python sees ValueError and the message", async () => {
      const out = await runPythonJson(
        `
        import json
        from pytasks import fail
        r = fail.delay("boom ✗")
        try:
            r.get(timeout=5, propagate=True)
            print(json.dumps({"raised": False}))
        except Exception as exc:
            print(json.dumps({
                "raised": True,
                "type": type(exc).__name__,
                "message": str(exc),
                "is_value_error": isinstance(exc, ValueError),
                "state": r.state,
                "has_traceback": bool(r.traceback),
            }))
        `,
        urls,
      );
      assert.deepEqual(out, {
        raised: true,
        type: "ValueError",
        message: "boom ✗",
        is_value_error: true,
        state: "FAILURE",
        has_traceback: true,
      });
    });

    await t.step(
      "unknown task → FAILURE NotRegistered, raw message kept in celeriac.dead",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from pytasks import app
        r = app.send_task("tasks.no_such_task", (1, 2), kwargs={"k": "v"})
        try:
            r.get(timeout=5, propagate=True)
            print(json.dumps({"raised": False}))
        except Exception as exc:
            print(json.dumps({
                "id": r.id,
                "raised": True,
                "type": type(exc).__name__,
                "message": str(exc),
                "state": r.state,
            }))
        `,
          urls,
        );
        assert.equal(out.raised, true);
        assert.equal(out.type, "NotRegistered");
        assert.match(out.message, /tasks\.no_such_task/);
        assert.equal(out.state, "FAILURE");
        // Not lost: the raw envelope, as Python sent it, sits in the dead-letter list.
        const dead = (await redis.cli("LRANGE", "celeriac.dead", "0", "-1")).trim();
        assert.ok(dead.includes(out.id), `celeriac.dead does not hold task ${out.id}:\n${dead}`);
        assert.ok(dead.includes("tasks.no_such_task"));
        // And the queue is empty: it was neither requeued nor left unacked.
        assert.equal((await redis.cli("LLEN", "celery")).trim(), "0");
        assert.equal((await redis.cli("HLEN", "unacked")).trim(), "0");
      },
    );
  } finally {
    const exit = worker ? await worker.stop() : undefined;
    await redis.stop();
    if (exit) assert.equal(exit.code, 0, `celeriac worker exit ${exit.code}\n${exit.stderr}`);
  }
});

Deno.test("interop: celeriac producer → Python Celery worker (Redis)", async (t) => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  const app = createApp(urls);
  // Registered here only to get typed delay()/applyAsync(); a Python worker runs them.
  const add = app.task("tasks.add", (x: number, y: number) => x + y, { params: ["x", "y"] });
  const fail = app.task("tasks.fail", (_message: string): never => {
    throw new Error("not run here");
  }, { params: ["message"] });
  let worker: WorkerProcess | undefined;
  try {
    worker = await startPythonWorker(urls);

    await t.step("app.sendTask by name → SUCCESS value", async () => {
      const result = await app.sendTask<number>("tasks.add", [2, 3]);
      assert.equal(await result.get({ timeout: 5 }), 5);
      assert.equal(await result.state, "SUCCESS");
    });

    await t.step("registered task delay() → SUCCESS value", async () => {
      const result = await add.delay(20, 22);
      assert.equal(await result.get({ timeout: 5 }), 42);
    });

    await t.step(
      "kwargs by name: add(x=, y=) and echo(**kwargs) with unicode and 2^64+1",
      async () => {
        const byName = await add.applyAsync([], { y: 2, x: 1 });
        assert.equal(await byName.get({ timeout: 5 }), 3);
        const mixed = await add.applyAsync([10], { y: 5 });
        assert.equal(await mixed.get({ timeout: 5 }), 15);
        const kwargs = { text: UNICODE, big: BIG, neg: -BIG, nested: { l: [1, 2.5, null, true] } };
        const echoed = await app.sendTask("tasks.echo", [], kwargs);
        assert.deepEqual(await echoed.get({ timeout: 5 }), kwargs);
      },
    );

    await t.step("FAILURE → TaskFailedError with excType ValueError", async () => {
      const result = await fail.delay("boom ✗");
      const err = await result.get({ timeout: 5 }).then(
        () => assert.fail("get() resolved for a failed task"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof TaskFailedError, `not a TaskFailedError: ${err}`);
      assert.equal(err.excType, "ValueError");
      assert.equal(err.excModule, "builtins");
      assert.deepEqual(err.excMessage, ["boom ✗"]);
      assert.equal(err.state, "FAILURE");
      assert.match(err.remoteTraceback ?? "", /ValueError: boom/);
      assert.equal(await result.state, "FAILURE");
      // propagate: false returns the serialized exception instead.
      const raw = await result.get({ timeout: 1, propagate: false });
      assert.deepEqual(raw, {
        exc_type: "ValueError",
        exc_message: ["boom ✗"],
        exc_module: "builtins",
      });
    });

    await t.step("countdown: the Python worker holds it until its ETA", async () => {
      const countdown = 1.5;
      const sent = Date.now();
      const result = await add.applyAsync([1, 1], {}, { countdown });
      // Received (the worker holds it unacked, with its ETA) but not run yet.
      await worker!.child.waitForLine(new RegExp(`Task tasks\\.add\\[${result.id}\\] received`), {
        timeoutMs: 5000,
      });
      assert.equal(await result.state, "PENDING");
      assert.equal(await result.get({ timeout: 5 }), 2);
      const elapsed = Date.now() - sent;
      assert.ok(
        elapsed >= countdown * 1000 - 50,
        `ran after ${elapsed} ms, countdown ${countdown} s`,
      );
      // date_done (naive UTC, set by the Python worker) is not before the ETA either.
      const meta = await result.meta();
      const done = Date.parse(`${meta!.date_done}Z`);
      assert.ok(done >= sent + countdown * 1000 - 50, `date_done ${meta!.date_done} before ETA`);
    });
  } finally {
    await app.close();
    const exit = worker ? await worker.stop() : undefined;
    await redis.stop();
    if (exit) assert.equal(exit.code, 0, `python worker exit ${exit.code}\n${exit.stderr}`);
  }
});
