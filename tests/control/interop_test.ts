/**
 * Remote control across languages over a real redis-server (one per test):
 *
 * 1. Python's `celery inspect …` / `celery control …` (subprocesses) against a celeriac
 *    worker (the worker CLI as a subprocess): Celery's own output.
 * 2. celeriac's client (`app.control`, and control.ts as a subprocess) against a real Python
 *    Celery worker.
 *
 * Every process is stopped in `finally`; waits are bounded.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { runChild } from "../helpers/process.ts";
import {
  type CeleryUrls,
  INTEROP_DIR,
  PYTHON,
  pythonEnv,
  REPO_ROOT,
  runPythonJson,
  startCeleriacWorker,
  startPythonWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

/** `python3 -m celery -A pytasks <args>`: its exit code and stdout. */
async function celery(urls: CeleryUrls, ...args: string[]) {
  return await runChild(PYTHON, {
    args: ["-m", "celery", "-A", "pytasks", ...args],
    cwd: INTEROP_DIR,
    env: pythonEnv(urls),
    timeoutMs: 30_000,
    label: `celery ${args.join(" ")}`,
  });
}

/** `deno run -A control.ts <args> --broker <url>`. */
async function controlTs(urls: CeleryUrls, ...args: string[]) {
  return await runChild(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/control.ts`, ...args, "--broker", urls.broker],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    timeoutMs: 30_000,
    label: `control.ts ${args.join(" ")}`,
  });
}

Deno.test("interop: celery inspect/control (Python CLI) → celeriac worker (Redis)", async (t) => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({ ...urls, name: "w1@interop", concurrency: 3 });

    await t.step("inspect ping", async () => {
      const r = await celery(urls, "inspect", "ping");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "->  w1@interop: OK\n        pong\n\n1 node online.\n");
    });

    await t.step("inspect stats", async () => {
      const r = await celery(urls, "inspect", "stats");
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^-> {2}w1@interop: OK\n {4}\{\n/);
      assert.match(r.stdout, /"max-concurrency": 3,/);
      assert.match(r.stdout, /"transport": "redis",/);
      assert.match(r.stdout, /"clock": "\d+",/);
      // Python's API reads it as Celery's stats dict.
      const stats = await runPythonJson(
        `
        import json
        from pytasks import app
        s = app.control.inspect(timeout=1).stats()["w1@interop"]
        print(json.dumps({"clock": type(s["clock"]).__name__, "uptime": type(s["uptime"]).__name__,
                          "pool": s["pool"]["max-concurrency"], "prefetch": s["prefetch_count"],
                          "heartbeat": type(s["broker"]["heartbeat"]).__name__,
                          "utime": type(s["rusage"]["utime"]).__name__}))
        `,
        urls,
      );
      assert.deepEqual(stats, {
        clock: "str",
        uptime: "int",
        pool: 3,
        prefetch: 3,
        heartbeat: "float",
        utime: "float",
      });
    });

    await t.step("inspect registered, then control rate_limit, then registered again", async () => {
      const before = await celery(urls, "inspect", "registered");
      const lines = before.stdout.split("\n");
      assert.equal(lines[0], "->  w1@interop: OK");
      const items = lines.filter((l) => l.startsWith("    * "));
      assert.deepEqual(items, [...items].sort());
      for (const name of ["tasks.add", "tasks.echo", "tasks.fail", "tasks.sleep"]) {
        assert.ok(items.includes(`    * ${name}`), name);
      }
      assert.match(before.stdout, /\n\n1 node online\.\n$/);
      const set = await celery(urls, "control", "rate_limit", "tasks.add", "10/m");
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout, "->  w1@interop: OK\n        new rate limit set successfully\n");
      const bad = await celery(urls, "control", "rate_limit", "tasks.nope", "10/m");
      assert.equal(bad.stdout, "->  w1@interop: ERROR\n        unknown task\n");
      const after = await celery(urls, "inspect", "registered");
      assert.match(after.stdout, /\n {4}\* tasks\.add \[rate_limit=10\/m\]\n/);
    });

    await t.step(
      "inspect active shows a running task; control revoke --terminate ends it",
      async () => {
        const { id } = await runPythonJson(
          `
        import json
        from pytasks import app
        print(json.dumps({"id": app.send_task("tasks.sleep", (30,)).id}))
        `,
          urls,
        );
        await waitFor(async () => (await celery(urls, "inspect", "active")).stdout.includes(id), {
          timeoutMs: 20_000,
          intervalMs: 100,
          message: "the sleeping task in inspect active",
        });
        const active = await celery(urls, "inspect", "active");
        assert.match(
          active.stdout,
          new RegExp(
            `^->  w1@interop: OK\\n {4}\\* \\{'id': '${id}', 'name': 'tasks\\.sleep', 'args': \\[30\\], 'kwargs': \\{\\}, 'type': 'tasks\\.sleep', 'hostname': 'w1@interop', 'time_start': \\d+\\.\\d+, 'acknowledged': False, 'delivery_info': \\{'exchange': '', 'routing_key': 'celery', 'priority': 0, 'redelivered': None\\}, 'worker_pid': \\d+\\}\\n`,
          ),
        );
        const { state } = await runPythonJson(
          `
        import json
        from pytasks import app
        r = app.control.revoke(${JSON.stringify(id)}, terminate=True, reply=True)
        assert r == [{"w1@interop": {"ok": "terminate: ${id}"}}], r
        res = app.AsyncResult(${JSON.stringify(id)})
        import time
        deadline = time.time() + 10
        while res.state != "REVOKED" and time.time() < deadline:
            time.sleep(0.05)
        print(json.dumps({"state": res.state}))
        `,
          urls,
        );
        assert.equal(state, "REVOKED");
      },
    );

    await t.step("mingle's hello: Python's LimitedSet accepts the revoked timestamps", async () => {
      const out = await runPythonJson(
        `
        import json
        from pytasks import app
        from celery.utils.collections import LimitedSet
        replies = app.control.broadcast("hello", arguments={"from_node": "py@mingle", "revoked": {}},
                                        reply=True, timeout=1)
        (reply,) = [r["w1@interop"] for r in replies]
        s = LimitedSet(maxlen=50000, expires=10800)
        s.update(reply["revoked"])
        print(json.dumps({"ids": len(s), "clock": type(reply["clock"]).__name__}))
        `,
        urls,
      );
      assert.ok(out.ids >= 1, "the terminated task's id is in the revoked set");
      assert.equal(out.clock, "int");
    });

    await t.step("unknown command, and control.ts against the same worker", async () => {
      const r = await celery(urls, "inspect", "clock");
      assert.match(r.stdout, /^-> {2}w1@interop: OK\n {4}\{\n {8}"clock": \d+\n {4}\}\n/);
      const ours = await controlTs(urls, "inspect", "ping");
      assert.equal(ours.code, 0, ours.stderr);
      assert.equal(ours.stdout, "->  w1@interop: OK\n        pong\n\n1 node online.\n");
      const nosuch = await controlTs(urls, "control", "nosuchcmd");
      assert.equal(nosuch.stdout, "->  w1@interop: ERROR\n        KeyError('nosuchcmd')\n");
    });

    await t.step("reply queues are cleaned up: no orphan reply lists or bindings", async () => {
      const keys = (await redis.cli("KEYS", "*reply.celery.pidbox*")).trim();
      assert.equal(keys, "");
      const pidbox = await redis.cli("SMEMBERS", "_kombu.binding.celery.pidbox");
      assert.match(pidbox, /w1@interop\.celery\.pidbox/);
    });
  } finally {
    await worker?.stop();
    await redis.stop();
  }
});

Deno.test("interop: a celeriac worker with --control-allow refuses other commands (Redis)", async () => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({
      ...urls,
      name: "w2@interop",
      args: ["--control-allow", "ping,registered"],
    });
    const ping = await celery(urls, "inspect", "ping");
    assert.match(ping.stdout, /pong/);
    const shutdown = await celery(urls, "inspect", "stats");
    assert.equal(
      shutdown.stdout,
      "->  w2@interop: ERROR\n        Command 'stats' is not allowed on this worker\n\n1 node online.\n",
    );
    const refused = await controlTs(urls, "control", "shutdown", "--json", "-t", "0.5");
    assert.equal(refused.code, 0);
    assert.equal(
      refused.stdout,
      '[{"w2@interop": {"error": "Command \'shutdown\' is not allowed on this worker"}}]\n',
    );
    assert.ok(!worker.child.hasExited);
  } finally {
    await worker?.stop();
    await redis.stop();
  }
});

Deno.test("interop: celeriac's app.control and control.ts → Python Celery worker (Redis)", async () => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  const app = createApp({ broker: urls.broker, backend: null });
  let worker: WorkerProcess | undefined;
  try {
    worker = await startPythonWorker({ ...urls, name: "py@interop" });
    const inspect = app.control.inspect({ destination: ["py@interop"], timeout: 5 });
    assert.deepEqual(await inspect.ping(), { "py@interop": { ok: "pong" } });
    const names = (await inspect.registered())["py@interop"]!;
    assert.deepEqual(names, [...names].sort());
    for (const name of ["tasks.add", "tasks.echo", "tasks.fail", "tasks.sleep"]) {
      assert.ok(names.includes(name), name);
    }
    const stats = (await inspect.stats())["py@interop"]!;
    assert.equal(typeof stats.clock, "string");
    assert.equal((stats.pool as Record<string, unknown>)["max-concurrency"], 2);
    assert.equal((stats.broker as Record<string, unknown>).transport, "redis");
    assert.deepEqual(
      await app.control.rateLimit("tasks.add", "10/m", {
        reply: true,
        destination: ["py@interop"],
        timeout: 5,
      }),
      [{ "py@interop": { ok: "new rate limit set successfully" } }],
    );
    assert.deepEqual((await inspect.registered())["py@interop"]![0], "tasks.add [rate_limit=10/m]");
    assert.deepEqual(await inspect.request("nosuchcmd"), {
      "py@interop": { error: "KeyError('nosuchcmd')" },
    });
    // A command the Python worker does not know (celeriac's own) is an error, not a crash.
    const byName = await app.control.revokeByName("tasks.add", {
      reply: true,
      destination: ["py@interop"],
      timeout: 5,
    });
    assert.deepEqual(byName, [{ "py@interop": { error: "KeyError('revoke_by_name')" } }]);

    const cli = await controlTs(urls, "inspect", "ping");
    assert.equal(cli.stdout, "->  py@interop: OK\n        pong\n\n1 node online.\n");
    const keys = (await redis.cli("KEYS", "*reply.celery.pidbox*")).trim();
    assert.equal(keys, "", "no reply list left behind");
  } finally {
    await app.close();
    await worker?.stop();
    await redis.stop();
  }
});
