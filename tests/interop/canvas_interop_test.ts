/**
 * Workflows across runtimes, with the real Python Celery 5.2 on a real redis-server: a
 * Python worker consumes queue `py`, a celeriac worker (the CLI, as a subprocess) consumes
 * queue `js`; both share the Redis broker (db 0) and result backend (db 1). Routing each
 * step with `queue` makes a chain hop between runtimes, and a chord's header run on one and
 * its body on the other — so each side continues the other's chain (`embed.chain`), does the
 * chord accounting on the other's `celery-taskset-meta-<gid>.{s,j}` keys and sends its body.
 * Producers are both a Python client (`runPythonJson`) and celeriac (`createApp`).
 */

import assert from "node:assert/strict";
import {
  chain,
  chord,
  createApp,
  group,
  GroupResult,
  signature,
  TaskFailedError,
} from "../../mod.ts";
import type { AsyncResult } from "../../src/async_result.ts";
import { startRedis } from "../helpers/redis_server.ts";
import {
  type CeleryUrls,
  runPythonJson,
  startCeleriacWorker,
  startPythonWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";

Deno.test("interop canvas: chains and chords across Python Celery and celeriac (Redis)", async (t) => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  const app = createApp({ broker: urls.broker, backend: urls.backend });
  const on = (queue: string, task: string, ...args: unknown[]) =>
    signature(app, task, { args, options: { queue } });
  let py: WorkerProcess | undefined;
  let js: WorkerProcess | undefined;
  try {
    [py, js] = await Promise.all([
      startPythonWorker({ ...urls, queues: ["py"], name: "py@canvas" }),
      startCeleriacWorker({ ...urls, queues: ["js"], name: "js@canvas", concurrency: 4 }),
    ]);

    await t.step(
      "a chain started by Python hops py → js → py → js, continued by each side",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from celery import chain
        from pytasks import add
        r = chain(add.s(1, 2).set(queue="js"), add.s(10).set(queue="py"),
                  add.s(100).set(queue="js"), add.s(1000).set(queue="py")).apply_async()
        value = r.get(timeout=15)
        ids = []
        node = r
        while node is not None:
            ids.append(node.id)
            node = node.parent
        first = ids[-1]
        print(json.dumps({"value": value, "second": r.parent.parent.get(timeout=5), "ids": ids}))
        `,
          urls,
        );
        assert.equal(out.value, 1113);
        assert.equal(out.second, 13);
        // Records written by each runtime link the steps the same way.
        const [last, third, second, first] = out.ids as string[];
        const firstMeta = await app.asyncResult(first!).meta(); // written by celeriac
        assert.deepEqual(firstMeta?.children, [[[second, null], null]]);
        assert.equal((await app.asyncResult(second!).meta())?.parent_id, first); // by Python
        assert.equal((await app.asyncResult(third!).meta())?.parent_id, second); // by celeriac
        assert.equal((await app.asyncResult(last!).meta())?.parent_id, third); // by Python
      },
    );

    await t.step(
      "a chain started by celeriac hops js → py → js, continued by each side",
      async () => {
        const ok = await chain(
          on("js", "tasks.add", 1, 2),
          on("py", "tasks.add", 10),
          on("js", "tasks.add", 100),
        )
          .applyAsync() as AsyncResult;
        assert.equal(await ok.get({ timeout: 15 }), 113);
        assert.equal(await (ok.parent as AsyncResult).get({ timeout: 5 }), 13);
        const out = await runPythonJson(
          `
        import json
        from celery.result import AsyncResult
        from pytasks import app
        r = AsyncResult(${JSON.stringify(ok.id)}, app=app)
        print(json.dumps({"value": r.get(timeout=5), "parent": r._get_task_meta().get("parent_id")}))
        `,
          urls,
        );
        assert.deepEqual(out, { value: 113, parent: ok.parent!.id });
      },
    );

    await t.step(
      "a chord from Python: header on celeriac (its accounting), body on Python",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from celery import chord
        from pytasks import add, xsum
        r = chord([add.s(i, i).set(queue="js") for i in range(5)], xsum.s().set(queue="py")).apply_async()
        print(json.dumps({"value": r.get(timeout=15), "header": r.parent.get(timeout=5)}))
        `,
          urls,
        );
        assert.deepEqual(out, { value: 20, header: [0, 2, 4, 6, 8] });
      },
    );

    await t.step(
      "a chord from celeriac: header on Python (its accounting), body on celeriac",
      async () => {
        const result = await chord(
          [1, 2, 3, 4].map((i) => on("py", "tasks.add", i, i)),
          on("js", "tasks.xsum"),
        ).applyAsync();
        assert.equal(await result.get({ timeout: 15 }), 20);
        assert.deepEqual(await (result.parent as GroupResult).get({ timeout: 5 }), [2, 4, 6, 8]);
        const gid = (result.parent as GroupResult).id;
        assert.equal(
          (await redis.cli("-n", "1", "KEYS", `celery-taskset-meta-${gid}*`)).trim(),
          "",
        );
      },
    );

    await t.step("a chord whose header members run on both runtimes, in header order", async () => {
      const ordered = await chord(
        [
          on("py", "tasks.add", 1, 0),
          on("js", "tasks.add", 2, 0),
          on("py", "tasks.add", 3, 0),
          on("js", "tasks.add", 4, 0),
        ],
        on("py", "tasks.xsum"),
      ).applyAsync();
      assert.equal(await ordered.get({ timeout: 15 }), 10);
      const out = await runPythonJson(
        `
        import json
        from celery import chord
        from pytasks import add, app
        sig = chord([add.s(10, 0).set(queue="js"), add.s(20, 0).set(queue="py"),
                     add.s(30, 0).set(queue="js")], app.signature("tasks.xsum").set(queue="js"))
        print(json.dumps(sig.apply_async().get(timeout=15)))
        `,
        urls,
      );
      assert.equal(out, 60);
    });

    await t.step(
      "a chord inside a chain, frozen by Python, applied by the celeriac worker",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from celery import chain, group
        from pytasks import add, xsum
        r = chain(add.s(1, 1).set(queue="js"),
                  group(add.s(1).set(queue="py"), add.s(2).set(queue="js")),
                  xsum.s().set(queue="js"), add.s(100).set(queue="py")).apply_async()
        print(json.dumps(r.get(timeout=15)))
        `,
          urls,
        );
        assert.equal(out, 107); // 2 → [3, 4] → 7 → 107
      },
    );

    await t.step(
      "a chord inside a chain, frozen by celeriac, applied by the Python worker",
      async () => {
        const result = await chain(
          on("py", "tasks.add", 1, 1),
          group(on("js", "tasks.add", 1), on("py", "tasks.add", 2)),
          on("py", "tasks.xsum"),
          on("js", "tasks.add", 100),
        ).applyAsync() as AsyncResult;
        assert.equal(await result.get({ timeout: 15 }), 107);
      },
    );

    await t.step(
      "a failed header member on celeriac fails the Python body with ChordError",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from celery import chord
        from pytasks import add, fail, xsum
        r = chord([add.s(1, 1).set(queue="js"), fail.si("broken").set(queue="js")],
                  xsum.s().set(queue="py")).apply_async()
        # r.get() would re-raise the header member's ValueError first (Python checks parents);
        # the body's own record is what celeriac wrote.
        from celery.result import AsyncResult
        body = AsyncResult(r.id, app=add.app)
        exc = body.get(timeout=15, propagate=False)
        print(json.dumps({"raised": type(exc).__name__, "module": type(exc).__module__,
                          "message": str(exc), "state": body.state}))
        `,
          urls,
        );
        assert.equal(out.raised, "ChordError");
        assert.equal(out.module, "celery.exceptions");
        assert.equal(out.state, "FAILURE");
        assert.match(out.message, /^Dependency [0-9a-f-]{36} raised ValueError\('broken'\)$/);
      },
    );

    await t.step(
      "a failed header member on Python fails the celeriac body with ChordError",
      async () => {
        const result = await chord(
          [
            on("py", "tasks.add", 1, 1),
            signature(app, "tasks.fail", {
              args: ["py broke"],
              options: { queue: "py" },
              immutable: true,
            }),
          ],
          on("js", "tasks.xsum"),
        ).applyAsync();
        const err = await result.get({ timeout: 15 }).then(() => undefined, (e) => e);
        assert.ok(err instanceof TaskFailedError, String(err));
        assert.equal(err.excType, "ChordError");
        assert.match(String(err.excMessage[0]), /raised ValueError\('py broke'\)/);
      },
    );

    await t.step(
      "callbacks and errbacks across runtimes; a group saved by one is restored by the other",
      async () => {
        const out = await runPythonJson(
          `
        import json
        from celery import group
        from celery.result import GroupResult
        from pytasks import add, fail, app
        r = add.apply_async((2, 3), queue="js", link=add.s(10).set(queue="py"))
        v = r.get(timeout=10)
        child = r.children[0] if r.children else None
        eb = add.si(7, 7).set(queue="py")
        eb.freeze()
        f = fail.apply_async(("js broke",), queue="js", link_error=eb)
        try:
            f.get(timeout=10)
        except ValueError:
            pass
        errback = app.AsyncResult(eb.id).get(timeout=10)
        g = group(add.s(1, 1).set(queue="js"), add.s(2, 2).set(queue="py")).apply_async()
        g.save()
        print(json.dumps({"v": v, "child": child.get(timeout=10) if child else None, "gid": g.id,
                          "ids": [x.id for x in g.results], "errback": errback}))
        `,
          urls,
        );
        assert.equal(out.v, 5);
        assert.equal(
          out.child,
          15,
          "the celeriac worker sent the Python callback, listed in children",
        );
        assert.equal(out.errback, 14, "the celeriac worker sent the errback to Python");
        const restored = await GroupResult.restore(app, out.gid);
        assert.deepEqual(restored?.ids, out.ids);
        assert.deepEqual(await restored?.get({ timeout: 10 }), [2, 4]);

        const mine = await group(on("py", "tasks.add", 5, 5), on("js", "tasks.add", 6, 6))
          .applyAsync();
        await mine.save();
        const back = await runPythonJson(
          `
        import json
        from celery.result import GroupResult
        from pytasks import app
        g = GroupResult.restore(${JSON.stringify(mine.id)}, app=app)
        print(json.dumps({"ids": [r.id for r in g.results], "values": g.get(timeout=10)}))
        `,
          urls,
        );
        assert.deepEqual(back, { ids: mine.ids, values: [10, 12] });
      },
    );
  } finally {
    await Promise.all([py?.stop(), js?.stop()]);
    await app.close();
    await redis.stop();
  }
});
