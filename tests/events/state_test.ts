/**
 * The cluster state: worker liveness (`now < last heartbeat + freq × 2`), task states and
 * Celery's merge rules (checked against Python's own `celery.events.state.State` on the same
 * event sequence), bounds, queries, counts and throughput.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import type { CeleryEvent } from "../../src/events/event.ts";
import { EventReceiver } from "../../src/events/receiver.ts";
import { State, TaskState, WorkerState } from "../../src/events/state.ts";
import { runPythonJson } from "../helpers/python_celery.ts";
import { eventFixtures } from "./fixtures.ts";

function clockAt(start: number) {
  const t = { now: start };
  return { t, now: () => t.now };
}

const ev = (type: string, fields: Record<string, unknown>, at: number): CeleryEvent => ({
  hostname: "w1@h",
  utcoffset: 0,
  pid: 1,
  timestamp: at,
  local_received: at,
  type,
  ...fields,
});

Deno.test("state: a worker is alive until its last heartbeat + freq × 2; offline ends it", () => {
  const { t, now } = clockAt(100);
  const state = new State({ now });
  const w = state.event(
    ev("worker-online", {
      freq: 2,
      active: 0,
      processed: 0,
      sw_ident: "py-celery",
      sw_ver: "5.2.6",
      sw_sys: "Linux",
      loadavg: [0.25, 0.06, 0.02],
    }, 100),
  ) as WorkerState;
  assert.ok(w instanceof WorkerState);
  assert.equal(w.alive, true);
  assert.equal(w.heartbeatExpires, 104);
  t.now = 103.999;
  assert.deepEqual(state.aliveWorkers().map((x) => x.hostname), ["w1@h"]);
  t.now = 104;
  assert.equal(w.alive, false);
  assert.equal(w.status, "OFFLINE");
  assert.deepEqual(state.aliveWorkers(), []);
  state.event(ev("worker-heartbeat", { freq: 2, active: 1, processed: 3 }, 104));
  assert.equal(w.alive, true);
  assert.deepEqual([w.active, w.processed, w.swIdent, w.swVer, w.swSys], [
    1,
    3,
    "py-celery",
    "5.2.6",
    "Linux",
  ]);
  assert.deepEqual(w.loadavg, [0.25, 0.06, 0.02]);
  // At most 4 heartbeats, kept sorted even when one arrives late.
  for (const at of [105, 107, 106, 108]) state.event(ev("worker-heartbeat", { freq: 2 }, at));
  assert.deepEqual(w.heartbeats, [105, 106, 107, 108]);
  state.event(ev("worker-offline", {}, 109));
  assert.equal(state.worker("w1@h"), w, "kept, as Celery's State does");
  assert.deepEqual([w.alive, w.status, w.heartbeats], [false, "OFFLINE", []]);
  assert.deepEqual(state.aliveWorkers(), []);
  // An offline event of an unknown worker does not add it.
  state.event(ev("worker-offline", { hostname: "w9@h" }, 109));
  assert.equal(state.worker("w9@h"), undefined);
  // freq defaults to 60 (Celery's assumption) when the events lack it.
  const quiet = state.event(ev("worker-heartbeat", { hostname: "w2@h" }, 110)) as WorkerState;
  assert.equal(quiet.freq, 60);
  t.now = 229;
  assert.equal(quiet.alive, true);
  t.now = 230;
  assert.equal(quiet.alive, false);
  // Worker events without hostname or timestamp change nothing.
  assert.equal(state.event({ type: "worker-heartbeat", timestamp: 1 }), undefined);
  assert.equal(state.event({ type: "worker-heartbeat", hostname: "w3@h" }), undefined);
  assert.equal(state.workers().length, 2);
  assert.equal(state.eventCount, 11);
});

Deno.test("state: task lifecycle, timings, results and exceptions", () => {
  const { now } = clockAt(200);
  const state = new State({ now });
  state.event(
    ev("task-received", {
      uuid: "a",
      name: "tasks.add",
      args: "(2, 3)",
      kwargs: "{}",
      root_id: "a",
      parent_id: null,
      retries: 0,
      eta: null,
      expires: null,
      clock: 1,
    }, 200),
  );
  assert.equal(state.task("a")?.state, "RECEIVED");
  state.event(ev("task-started", { uuid: "a", clock: 2 }, 200.5));
  state.event(ev("task-succeeded", { uuid: "a", result: "5", runtime: 0.25, clock: 3 }, 201));
  const a = state.task("a")!;
  assert.ok(a instanceof TaskState);
  assert.deepEqual(
    [a.state, a.name, a.args, a.kwargs, a.result, a.runtime, a.worker, a.rootId, a.clock, a.ready],
    ["SUCCESS", "tasks.add", "(2, 3)", "{}", "5", 0.25, "w1@h", "a", 3, true],
  );
  assert.deepEqual([a.received, a.started, a.succeeded, a.timestamp], [200, 200.5, 201, 201]);
  state.event(
    ev("task-failed", { uuid: "b", exception: "ValueError('x')", traceback: "Traceback…" }, 202),
  );
  assert.deepEqual([state.task("b")!.state, state.task("b")!.exception], [
    "FAILURE",
    "ValueError('x')",
  ]);
  state.event(
    ev("task-revoked", { uuid: "c", terminated: false, signum: null, expired: true }, 203),
  );
  assert.equal(state.task("c")!.state, "REVOKED");
  assert.equal(state.task("c")!.extra.expired, true);
  state.event(ev("task-rejected", { uuid: "d", requeue: false }, 203));
  assert.equal(state.task("d")!.state, "REJECTED");
  state.event(ev("task-cancelled", { uuid: "e" }, 203));
  assert.equal(state.task("e")!.state, "CANCELLED");
  state.event(
    ev("task-sent", {
      uuid: "f",
      name: "tasks.echo",
      hostname: "gen7@h",
      queue: "celery",
      exchange: "",
      routing_key: "celery",
    }, 204),
  );
  const f = state.task("f")!;
  assert.deepEqual([f.state, f.client, f.worker, f.queue, f.routingKey], [
    "PENDING",
    "gen7@h",
    null,
    "celery",
    "celery",
  ]);
  assert.equal(state.worker("gen7@h"), undefined, "task-sent comes from a client, not a worker");
  // Task events keep their worker alive (Celery counts them as heartbeats).
  assert.equal(state.worker("w1@h")!.heartbeats.at(-1), 203);
  assert.equal(state.taskCount, 1);
  // Task events without uuid or hostname change nothing.
  assert.equal(state.event({ type: "task-started", hostname: "w", timestamp: 1 }), undefined);
  assert.equal(state.event({ type: "task-started", uuid: "z", timestamp: 1 }), undefined);
  assert.equal(state.task("z"), undefined);
});

Deno.test("state: out-of-order events follow Celery's precedence and merge rules", () => {
  const state = new State({ now: () => 0 });
  // Succeeded arrives before received/started (e.g. from different batches).
  state.event(ev("task-succeeded", { uuid: "a", result: "5", runtime: 0.1 }, 3));
  state.event(ev("task-started", { uuid: "a" }, 2));
  state.event(
    ev("task-received", { uuid: "a", name: "tasks.add", args: "(2, 3)", hostname: "other@h" }, 1),
  );
  const a = state.task("a")!;
  assert.deepEqual([a.state, a.timestamp, a.name, a.args, a.result], [
    "SUCCESS",
    3,
    "tasks.add",
    "(2, 3)",
    "5",
  ]);
  assert.deepEqual([a.received, a.started, a.succeeded], [1, 2, 3]);
  // After RETRY anything goes: the retried task is received again.
  state.event(ev("task-retried", { uuid: "r", exception: "ValueError('first')" }, 1));
  state.event(ev("task-received", { uuid: "r", name: "tasks.retry", retries: 1 }, 2));
  assert.deepEqual([state.task("r")!.state, state.task("r")!.retries], ["RECEIVED", 1]);
});

Deno.test("state: bounded — least recently updated tasks and workers go first", () => {
  const state = new State({ maxTasks: 3, maxWorkers: 2, now: () => 0 });
  for (const id of ["a", "b", "c"]) state.event(ev("task-received", { uuid: id }, 1));
  state.event(ev("task-started", { uuid: "a" }, 2)); // a is now the most recent
  state.event(ev("task-received", { uuid: "d" }, 3));
  assert.deepEqual(state.tasks().map((t) => t.uuid), ["d", "a", "c"]);
  for (const h of ["w1@h", "w2@h", "w3@h"]) state.event(ev("worker-heartbeat", { hostname: h }, 1));
  assert.deepEqual(state.workers().map((w) => w.hostname), ["w2@h", "w3@h"]);
  assert.throws(() => new State({ maxTasks: 0 }), RangeError);
  assert.throws(() => new State({ maxWorkers: 1.5 }), RangeError);
});

Deno.test("state: queries, counts, task types, throughput, clear", () => {
  const { t, now } = clockAt(1000);
  const state = new State({ now, throughputWindow: 60 });
  state.event(ev("task-received", { uuid: "1", name: "tasks.add" }, 1000));
  state.event(ev("task-succeeded", { uuid: "1" }, 1000));
  state.event(ev("task-received", { uuid: "2", name: "tasks.fail", hostname: "w2@h" }, 1000));
  state.event(ev("task-failed", { uuid: "2", hostname: "w2@h", exception: "E()" }, 1000));
  state.event(ev("task-received", { uuid: "3", name: "tasks.add" }, 1000));
  state.event(ev("task-started", { uuid: "3" }, 1000));
  state.event(ev("task-started", { uuid: "4" }, 1000));
  assert.deepEqual(state.counts(), { SUCCESS: 1, FAILURE: 1, STARTED: 2 });
  assert.deepEqual(state.tasks({ state: "STARTED" }).map((x) => x.uuid), ["4", "3"]);
  assert.deepEqual(state.tasks({ limit: 2 }).map((x) => x.uuid), ["4", "3"]);
  assert.deepEqual(state.tasks({ name: "tasks.add" }).map((x) => x.uuid), ["3", "1"]);
  assert.deepEqual(state.tasks({ worker: "w2@h" }).map((x) => x.uuid), ["2"]);
  assert.deepEqual(state.taskTypes(), ["tasks.add", "tasks.fail"]);
  assert.equal(state.throughput(10), 0.2);
  // A second finish event of a finished task is not counted twice.
  state.event(ev("task-succeeded", { uuid: "1" }, 1000));
  assert.equal(state.throughput(10), 0.2);
  t.now = 1011;
  assert.equal(state.throughput(10), 0);
  assert.equal(state.throughput(60), 2 / 60);
  state.clear(true);
  assert.deepEqual(state.tasks().map((x) => x.uuid).sort(), ["3", "4"]);
  state.clear();
  assert.deepEqual([state.tasks().length, state.workers().length, state.eventCount], [0, 0, 0]);
  assert.equal(JSON.parse(JSON.stringify(new TaskState("x"))).uuid, "x");
});

Deno.test("state: the fixtures' events give the states Celery's monitors show", () => {
  const state = new State();
  const receiver = new EventReceiver(new MemoryBroker(), {
    handlers: { "*": (e) => state.event(e) },
  });
  for (const f of eventFixtures().filter((x) => x.transport === "redis")) {
    receiver.handleMessage(f.message);
  }
  const byType = Object.fromEntries(
    eventFixtures().filter((x) => x.transport === "redis").map((f) => [f.event.type, f.event]),
  );
  const uuid = (type: string) => String(byType[type].uuid);
  assert.equal(state.task(uuid("task-succeeded"))!.state, "SUCCESS");
  assert.equal(state.task(uuid("task-succeeded"))!.result, "5");
  assert.equal(state.task(uuid("task-failed"))!.state, "FAILURE");
  assert.equal(state.task(uuid("task-revoked"))!.state, "REVOKED");
  assert.equal(state.task(uuid("task-retried"))!.state, "RETRY");
  // The files come in name order (…-worker-offline before -online): the worker is back.
  assert.equal(state.worker("w1@fixtures")?.heartbeats.length, 1);
  assert.equal(state.worker("w1@fixtures")?.swIdent, "py-celery");
});

Deno.test("state: the same event sequence gives the same task states as Python's State", async () => {
  const base = Date.now() / 1000;
  const events: CeleryEvent[] = [
    ev("worker-online", { freq: 2.0, active: 0, processed: 0 }, base),
    ev(
      "task-received",
      { uuid: "a", name: "tasks.add", args: "(2, 3)", kwargs: "{}", clock: 2 },
      base,
    ),
    ev("task-started", { uuid: "a", clock: 3 }, base + 0.1),
    ev("task-succeeded", { uuid: "a", result: "5", runtime: 0.01, clock: 4 }, base + 0.2),
    ev("task-succeeded", { uuid: "b", result: "1", runtime: 0.5, clock: 7 }, base + 0.5),
    ev("task-started", { uuid: "b", clock: 6 }, base + 0.4),
    ev("task-received", { uuid: "b", name: "tasks.x", args: "()", clock: 5 }, base + 0.3),
    ev(
      "task-failed",
      { uuid: "c", exception: "ValueError('bad')", traceback: "tb", clock: 8 },
      base + 0.6,
    ),
    ev("task-received", { uuid: "c", name: "tasks.fail", clock: 7 }, base + 0.55),
    ev("task-retried", { uuid: "d", exception: "E()", traceback: "", clock: 9 }, base + 0.7),
    ev("task-received", { uuid: "d", name: "tasks.r", retries: 1, clock: 10 }, base + 0.8),
    ev(
      "task-revoked",
      { uuid: "e", terminated: false, signum: null, expired: true, clock: 11 },
      base + 0.9,
    ),
    ev("task-rejected", { uuid: "f", requeue: false, clock: 12 }, base + 1),
    ev("task-cancelled", { uuid: "g", clock: 13 }, base + 1),
    ev("worker-online", { hostname: "w2@h", freq: 2.0 }, base),
    ev("worker-offline", { hostname: "w2@h", freq: 2.0 }, base + 1),
  ];
  const state = new State();
  for (const e of events) state.event(e);
  const ours = {
    tasks: Object.fromEntries(
      state.tasks().map((
        t,
      ) => [t.uuid, [t.state, t.name, t.args, t.result, t.runtime, t.exception]]),
    ),
    alive: state.aliveWorkers().map((w) => w.hostname).sort(),
    workers: state.workers().map((w) => w.hostname).sort(),
  };
  const python = await runPythonJson(
    `
    import json
    from celery.events.state import State
    events = json.loads(${JSON.stringify(JSON.stringify(events))})
    state = State()
    for e in events:
        state.event(e)
    print(json.dumps({
        "tasks": {u: [t.state, t.name, t.args, t.result, t.runtime, t.exception] for u, t in state.tasks.items()},
        "alive": sorted(w.hostname for w in state.alive_workers()),
        "workers": sorted(state.workers.keys()),
    }))
    `,
    { broker: "memory://" },
  );
  assert.deepEqual(ours, python);
});
