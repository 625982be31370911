/**
 * Events across languages over a real redis-server (a fresh one per test):
 *
 * 1. A celeriac worker started with `-E` is followed by Python Celery's own monitors: a script
 *    with `app.events.Receiver` + `celery.events.state.State`, and `celery events --dump`;
 *    and by celeriac's `events.ts --dump`. The raw pub/sub traffic is checked against the
 *    fixtures' kombu envelopes.
 * 2. celeriac's `EventReceiver` + `State` follow a Python Celery worker started with `-E`
 *    (and wake it with the `heartbeat` cast).
 *
 * Every process is stopped in `finally`; waits are bounded.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { createBroker } from "../../src/brokers/mod.ts";
import type { CeleryEvent } from "../../src/events/event.ts";
import { EventReceiver, wakeupWorkers } from "../../src/events/receiver.ts";
import { State } from "../../src/events/state.ts";
import { type Child, spawnChild } from "../helpers/process.ts";
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
import { eventFixtures } from "./fixtures.ts";

const PY_MONITOR = `
import json
from pytasks import app
from celery.events.state import State

state = State()
types = []

def on_event(event):
    state.event(event)
    types.append(event["type"])
    done = any(t.state == "SUCCESS" and t.worker and t.worker.hostname == "celeriac@test"
               for t in state.tasks.values())
    if done and "worker-heartbeat" in types:
        recv.should_stop = True

with app.connection() as conn:
    recv = app.events.Receiver(conn, handlers={"*": on_event})
    recv.capture(limit=None, timeout=30, wakeup=False)

(uuid, task), = [(u, t) for u, t in state.tasks.items() if t.state == "SUCCESS"]
worker = state.workers["celeriac@test"]
print(json.dumps({
    "types": types,
    "task": {"uuid": uuid, "state": task.state, "name": task.name, "args": task.args,
             "kwargs": task.kwargs, "result": task.result, "runtime": task.runtime,
             "received": task.received is not None, "started": task.started is not None},
    "worker": {"alive": worker.alive, "freq": worker.freq, "sw_ident": worker.sw_ident,
               "sw_ver": worker.sw_ver, "active": worker.active, "processed": worker.processed,
               "loadavg": worker.loadavg},
}))
`;

/** Clients with a pattern subscription (PUBSUB NUMPAT counts distinct patterns only). */
async function patternSubscribers(
  redis: { cli(...args: string[]): Promise<string> },
): Promise<number> {
  const clients = (await redis.cli("CLIENT", "LIST")).split("\n");
  return clients.filter((c) => /\bpsub=[1-9]/.test(c)).length;
}

Deno.test("interop: Python's Receiver + State, `celery events --dump` and events.ts follow a celeriac worker -E (Redis)", async () => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  const children: Child[] = [];
  let worker: WorkerProcess | undefined;
  try {
    const monitor = spawnChild(PYTHON, {
      args: ["-c", PY_MONITOR],
      cwd: INTEROP_DIR,
      env: pythonEnv(urls),
      label: "python monitor",
    });
    const dumper = spawnChild(PYTHON, {
      args: ["-m", "celery", "-A", "pytasks", "events", "--dump"],
      cwd: INTEROP_DIR,
      env: pythonEnv(urls),
      label: "celery events --dump",
    });
    const ours = spawnChild(Deno.execPath(), {
      args: ["run", "-A", `${REPO_ROOT}/events.ts`, "--broker", urls.broker, "--dump"],
      cwd: REPO_ROOT,
      env: { NO_COLOR: "1" },
      label: "events.ts --dump",
    });
    const raw = spawnChild("redis-cli", {
      args: ["-h", "127.0.0.1", "-p", String(redis.port), "psubscribe", "/0.celeryev/*"],
      label: "redis-cli psubscribe",
    });
    children.push(monitor, dumper, ours, raw);
    await waitFor(async () => await patternSubscribers(redis) >= 4, {
      timeoutMs: 20_000,
      message: "four event subscribers on /0.celeryev/*",
    });

    worker = await startCeleriacWorker({ ...urls, args: ["-E"] });
    const { id, value } = await runPythonJson(
      `
      import json
      from pytasks import app
      r = app.send_task("tasks.add", (2, 3))
      print(json.dumps({"id": r.id, "value": r.get(timeout=10)}))
      `,
      urls,
    );
    assert.equal(value, 5);

    // 1. Python's Receiver + State.
    const out = await monitor.waitForExit(30_000);
    assert.equal(out.code, 0, monitor.output);
    const py = JSON.parse(out.stdout.trimEnd().split("\n").at(-1)!);
    for (const t of ["worker-online", "task-received", "task-started", "task-succeeded"]) {
      assert.ok(py.types.includes(t), `Python saw ${t}: ${py.types}`);
    }
    assert.deepEqual(py.task, {
      uuid: id,
      state: "SUCCESS",
      name: "tasks.add",
      args: "(2, 3)",
      kwargs: "{}",
      result: "5",
      runtime: py.task.runtime,
      received: true,
      started: true,
    });
    assert.ok(typeof py.task.runtime === "number" && py.task.runtime >= 0);
    assert.equal(py.worker.alive, true);
    assert.equal(py.worker.freq, 2.0);
    assert.equal(py.worker.sw_ident, "celeriac");
    assert.equal(py.worker.loadavg.length, 3);

    // 2. `celery events --dump` (Celery's Dumper wording).
    const at = String.raw`\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\]`;
    const task = String.raw`tasks\.add\(${id}\) args=\(2, 3\) kwargs=\{\}`;
    for (
      const re of [
        new RegExp(`^celeriac@test ${at} started: .*freq=2\\.0`),
        new RegExp(`^celeriac@test ${at} task received: ${task}`),
        new RegExp(`^celeriac@test ${at} task started: ${task}`),
        new RegExp(`^celeriac@test ${at} task succeeded: ${task} .*result=5, runtime=`),
      ]
    ) await dumper.waitForLine(re, { timeoutMs: 10_000 });

    // 3. events.ts --dump.
    await ours.waitForLine(
      new RegExp(`^celeriac@test .* task-succeeded uuid=${id} name=tasks\\.add result=5 runtime=`),
      {
        timeoutMs: 10_000,
      },
    );

    // Worker-offline at warm shutdown reaches every monitor.
    await worker.stop();
    await dumper.waitForLine(new RegExp(`^celeriac@test ${at} shutdown: `), { timeoutMs: 10_000 });
    await ours.waitForLine(/^celeriac@test .* worker-offline /, { timeoutMs: 10_000 });
    const stopped = await ours.stop();
    assert.equal(stopped.code, 0, ours.output);

    // 4. The raw pub/sub traffic has kombu's envelope, as in the fixtures.
    await waitFor(() => raw.lines.stdout.some((l) => l.includes("worker.offline")));
    const lines = raw.lines.stdout;
    const messages: { channel: string; envelope: Record<string, unknown> }[] = [];
    for (let i = 0; i + 3 < lines.length; i++) {
      if (lines[i] === "pmessage" && lines[i + 1] === "/0.celeryev/*") {
        messages.push({ channel: lines[i + 2], envelope: JSON.parse(lines[i + 3]) });
        i += 3;
      }
    }
    const fixture = eventFixtures().find((f) => f.name === "redis-event-worker-online")!;
    for (const m of messages) {
      const props = m.envelope.properties as Record<string, unknown>;
      const info = props.delivery_info as { exchange: string; routing_key: string };
      assert.deepEqual(Object.keys(m.envelope), [
        "body",
        "content-encoding",
        "content-type",
        "headers",
        "properties",
      ]);
      assert.deepEqual(Object.keys(props), Object.keys(fixture.envelopeProperties!));
      assert.deepEqual(m.envelope.headers, { hostname: "celeriac@test" });
      assert.equal(props.delivery_mode, 1);
      assert.equal(props.priority, 0);
      assert.equal(props.body_encoding, "base64");
      assert.equal(info.exchange, "celeryev");
      assert.equal(m.channel, `/0.celeryev/${info.routing_key}`);
    }
    const channels = new Set(messages.map((m) => m.channel));
    for (const c of ["worker.online", "worker.heartbeat", "task.multi", "worker.offline"]) {
      assert.ok(channels.has(`/0.celeryev/${c}`), `published on ${c}: ${[...channels]}`);
    }
  } finally {
    await worker?.stop();
    await Promise.all(children.map((c) => c.stop({ graceMs: 5000 })));
    await redis.stop();
  }
});

Deno.test("interop: celeriac's EventReceiver + State follow a Python worker -E (Redis)", async () => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  const broker = await createBroker(urls.broker);
  await broker.connect();
  const app = createApp(urls);
  const state = new State();
  const events: CeleryEvent[] = [];
  const receiver = new EventReceiver(broker, {
    handlers: { "*": (e) => void (events.push(e), state.event(e)) },
  });
  let worker: WorkerProcess | undefined;
  try {
    await receiver.start();
    // Solo pool: Celery 5.2's Dispatcher appends to its task group buffer outside the
    // mutex that flush() holds while it publishes and then clears that buffer, so with
    // `-P threads` an event sent from a pool thread during a flush is dropped by Python
    // (seen here: one of the task events missing, its Lamport clock value skipped).
    worker = await startPythonWorker({ ...urls, pool: "solo", args: ["-E"] });
    await waitFor(() => state.worker("py@test")?.alive, {
      timeoutMs: 10_000,
      message: "the Python worker's worker-online",
    });
    const ok = await app.sendTask("tasks.add", [2, 3]);
    assert.equal(await ok.get({ timeout: 10 }), 5);
    const bad = await app.sendTask("tasks.fail", ["boom"]);
    await bad.get({ timeout: 10 }).catch(() => {});
    await waitFor(
      () => state.task(ok.id)?.state === "SUCCESS" && state.task(bad.id)?.state === "FAILURE",
      { timeoutMs: 10_000, message: "SUCCESS and FAILURE from the Python worker's events" },
    );
    const t = state.task(ok.id)!;
    assert.deepEqual([t.name, t.args, t.kwargs, t.result, t.worker], [
      "tasks.add",
      "(2, 3)",
      "{}",
      "5",
      "py@test",
    ]);
    assert.ok(t.runtime !== null && t.runtime > 0 && t.runtime < 10, `runtime ${t.runtime}`);
    assert.ok(t.received !== null && t.started !== null && t.succeeded !== null);
    // Python's thread pool reports `ExceptionWithTraceback()` here (solo/prefork: the repr).
    assert.match(
      state.task(bad.id)!.exception ?? "",
      /ValueError\('boom'\)|ExceptionWithTraceback/,
    );
    assert.match(state.task(bad.id)!.traceback ?? "", /ValueError: boom/);
    const w = state.worker("py@test")!;
    assert.deepEqual([w.alive, w.freq, w.swIdent, w.swVer], [true, 2, "py-celery", "5.2.6"]);
    // Task events came batched on task.multi; the clock followed the worker's.
    assert.ok(receiver.clock.value > Math.max(...events.map((e) => e.clock ?? 0)));

    // The heartbeat cast wakes the Python worker: it answers with freq 5 (Celery's control).
    await wakeupWorkers(broker, receiver.clock);
    await waitFor(() => events.some((e) => e.type === "worker-heartbeat" && e.freq === 5), {
      timeoutMs: 10_000,
      message: "a worker-heartbeat with freq 5",
    });

    await worker.stop();
    await waitFor(() => events.some((e) => e.type === "worker-offline"), { timeoutMs: 10_000 });
    assert.equal(state.worker("py@test")!.alive, false);
  } catch (err) {
    // Say what was seen: the events and the Python worker's log.
    throw new Error(
      `${(err as Error).message}\n--- events ---\n${
        events.map((e) => `${e.type} ${e.uuid ?? ""} clock=${e.clock}`).join("\n")
      }\n--- python worker ---\n${worker?.child.output ?? ""}`,
      { cause: err },
    );
  } finally {
    await worker?.stop();
    await receiver.close();
    await app.close();
    await broker.close();
    await redis.stop();
  }
});
