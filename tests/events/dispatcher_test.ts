/**
 * Sending events: a celeriac worker's events compared field by field with the Celery 5.2
 * fixtures, batching on `task.multi` (next tick, 24 events), groups (`-E`, enable/disable),
 * the heartbeat under fake time, brokers without fanout, failures, and `task-sent`.
 */

import assert from "node:assert/strict";
import FakeTimers from "npm:@sinonjs/fake-timers@^13";
import type { Broker } from "../../src/brokers/broker.ts";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { createApp } from "../../src/app.ts";
import { EventDispatcher } from "../../src/events/dispatcher.ts";
import {
  type CeleryEvent,
  decodeEventBody,
  eventRoutingKey,
  localUtcOffset,
} from "../../src/events/event.ts";
import { EventReceiver } from "../../src/events/receiver.ts";
import { SOFTWARE_INFO, WorkerEvents } from "../../src/events/worker_events.ts";
import type { TransportMessage } from "../../src/protocol/message.ts";
import type { TaskMessage } from "../../src/protocol/task.ts";
import { VERSION } from "../../src/version.ts";
import { Hooks } from "../../src/worker/hooks.ts";
import { Worker } from "../../src/worker/worker.ts";
import { uniqueName } from "../helpers/harness.ts";
import { nextMacrotask, waitFor } from "../helpers/wait.ts";
import { eventFixtures } from "./fixtures.ts";

class ValueError extends Error {
  override name = "ValueError";
}

interface Captured {
  routingKey: string;
  message: TransportMessage;
  events: CeleryEvent[];
}

async function capture(broker: Broker): Promise<{ got: Captured[]; close: () => Promise<void> }> {
  const got: Captured[] = [];
  const sub = await broker.subscribe!("celeryev", "#", (message) =>
    got.push({
      routingKey: message.deliveryInfo!.routingKey,
      message,
      events: decodeEventBody(message),
    }));
  return { got, close: () => sub.close() };
}

const all = (got: Captured[]) => got.flatMap((c) => c.events);

Deno.test("dispatcher: a worker's events have exactly the fields of Celery 5.2's, in order", async () => {
  const app = createApp({ broker: `memory://${uniqueName("ev-fields")}` });
  const broker = await app.broker();
  const { got, close } = await capture(broker);
  let received: TaskMessage | undefined;
  const worker = new Worker(app, {
    name: "w1@fixtures",
    sendEvents: true,
    heartbeatInterval: 0.05,
    logLevel: "critical",
    fetchTimeoutMs: 50,
  });
  worker.on("received", ({ message }) => received ??= message);
  try {
    app.task("tasks.add", (x: number, y: number) => x + y);
    app.task("tasks.fail", (message: string): never => {
      throw new ValueError(message);
    });
    await worker.start();
    assert.equal(await (await app.sendTask("tasks.add", [2, 3])).get({ timeout: 5 }), 5);
    await (await app.sendTask("tasks.fail", ["bad input"])).get({ timeout: 5 }).catch(() => {});
    await app.sendTask("tasks.add", [1, 1], {}, { expires: new Date(Date.now() - 1000) });
    await app.sendTask("tasks.nope", []);
    // The worker has no retry yet: drive its hook as a retry would.
    worker.hooks.emit("retried", {
      message: received!,
      error: new ValueError("first attempt fails"),
    });
    await waitFor(() =>
      all(got).filter((e) => e.type === "worker-heartbeat").length >= 1 &&
      all(got).some((e) => e.type === "task-revoked") &&
      all(got).some((e) => e.type === "task-retried") &&
      all(got).filter((e) => e.type === "task-failed").length >= 2, {
      message: "every event type",
    });
  } finally {
    await worker.stop();
    await nextMacrotask();
    await close();
    await app.close();
  }
  const events = all(got);
  assert.equal(events.at(-1)?.type, "worker-offline");

  // Envelope of every message: header {hostname}, delivery_mode 1, JSON; task events batched.
  for (const c of got) {
    assert.deepEqual(c.message.headers, { hostname: "w1@fixtures" });
    assert.deepEqual(c.message.properties, { delivery_mode: 1 });
    assert.equal(c.message.contentType, "application/json");
    assert.equal(c.message.contentEncoding, "utf-8");
    const body = JSON.parse(new TextDecoder().decode(c.message.body));
    if (c.routingKey === "task.multi") {
      assert.ok(Array.isArray(body) && body.every((e) => e.type.startsWith("task-")));
    } else {
      assert.ok(!Array.isArray(body));
      assert.equal(c.routingKey, eventRoutingKey(body.type));
      assert.ok(body.type.startsWith("worker-"));
    }
  }
  // Lamport clock: forwarded once per event, in send order.
  assert.deepEqual(events.map((e) => e.clock), events.map((_, i) => i + 1));

  const ours = (type: string) =>
    type === "task-failed"
      ? events.find((e) => e.type === type && "traceback" in e)
      : events.find((e) => e.type === type);
  const fixtures = eventFixtures();
  for (const f of fixtures) {
    const fx = f.event;
    const ev = ours(fx.type);
    assert.ok(ev, `no ${fx.type} event`);
    assert.deepEqual(Object.keys(ev), Object.keys(fx), `${f.name}: fields and their order`);
    for (const key of Object.keys(fx)) {
      const kind = (v: unknown) => v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
      assert.equal(kind(ev[key]), kind(fx[key]), `${f.name}: type of ${key}`);
    }
    // Values that do not naturally differ.
    assert.equal(ev.hostname, "w1@fixtures");
    assert.equal(ev.utcoffset, localUtcOffset());
    assert.equal(ev.pid, Deno.pid);
    assert.ok(Math.abs(ev.timestamp! - Date.now() / 1000) < 60);
  }
  const byType = Object.fromEntries(fixtures.map((f) => [f.event.type, ours(f.event.type)!]));
  assert.deepEqual(
    ["name", "args", "kwargs", "parent_id", "retries", "eta", "expires"].map((k) =>
      byType["task-received"][k]
    ),
    ["tasks.add", "(2, 3)", "{}", null, 0, null, null],
  );
  assert.equal(byType["task-received"].root_id, byType["task-received"].uuid);
  assert.equal(byType["task-succeeded"].result, "5");
  assert.ok((byType["task-succeeded"].runtime as number) >= 0);
  assert.equal(byType["task-failed"].exception, "ValueError('bad input')");
  assert.match(byType["task-failed"].traceback as string, /ValueError: bad input/);
  assert.equal(byType["task-retried"].exception, "ValueError('first attempt fails')");
  assert.deepEqual(
    [
      byType["task-revoked"].terminated,
      byType["task-revoked"].signum,
      byType["task-revoked"].expired,
    ],
    [false, null, true],
  );
  for (const type of ["worker-online", "worker-heartbeat", "worker-offline"]) {
    const w = byType[type];
    assert.deepEqual([w.sw_ident, w.sw_ver, w.sw_sys], ["celeriac", VERSION, SOFTWARE_INFO.sw_sys]);
    assert.equal(w.freq, 0.05);
    assert.equal((w.loadavg as number[]).length, 3);
  }
  assert.equal(byType["worker-offline"].processed, 2);
  assert.equal(byType["worker-offline"].active, 0);
  // An unknown task: Celery's on_unknown_task sends only uuid and exception.
  const unknown = events.find((e) => e.type === "task-failed" && !("traceback" in e))!;
  assert.equal(unknown.exception, "NotRegistered('tasks.nope')");
  assert.deepEqual(Object.keys(unknown), [
    "hostname",
    "utcoffset",
    "pid",
    "clock",
    "uuid",
    "exception",
    "timestamp",
    "type",
  ]);
});

Deno.test("dispatcher: task events are batched on task.multi and flushed on the next tick", async () => {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  const broker = new MemoryBroker();
  const { got, close } = await capture(broker);
  const d = new EventDispatcher(broker, { hostname: "w@h", bufferGroups: ["task"] });
  try {
    d.send("task-received", { uuid: "a" });
    d.send("task-started", { uuid: "a" });
    d.send("task-succeeded", { uuid: "a", result: "1", runtime: 0.5 });
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(got.length, 0, "nothing before the tick");
    await clock.tickAsync(0);
    assert.equal(got.length, 1);
    assert.equal(got[0].routingKey, "task.multi");
    assert.deepEqual(got[0].events.map((e) => e.type), [
      "task-received",
      "task-started",
      "task-succeeded",
    ]);
    // A worker event first flushes what is buffered (clock order on the wire).
    d.send("task-started", { uuid: "b" });
    d.send("worker-heartbeat", { freq: 2 });
    await clock.tickAsync(0);
    assert.deepEqual(got.slice(1).map((c) => c.routingKey), ["task.multi", "worker.heartbeat"]);
    assert.deepEqual(got.flatMap((c) => c.events).map((e) => e.clock), [1, 2, 3, 4, 5]);
  } finally {
    await d.close();
    await close();
    clock.uninstall();
  }
});

Deno.test("dispatcher: 24 buffered events flush at once; the 25th waits for the tick", async () => {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  const broker = new MemoryBroker();
  const { got, close } = await capture(broker);
  const d = new EventDispatcher(broker, { hostname: "w@h", bufferGroups: ["task"] });
  try {
    for (let i = 0; i < 25; i++) d.send("task-started", { uuid: String(i) });
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.deepEqual(got.map((c) => c.events.length), [24]);
    await clock.tickAsync(0);
    assert.deepEqual(got.map((c) => c.events.length), [24, 1]);
  } finally {
    await d.close();
    await close();
    clock.uninstall();
  }
});

Deno.test("dispatcher: groups; task events off unless -E, switchable at run time", async () => {
  const broker = new MemoryBroker();
  const { got, close } = await capture(broker);
  const d = new EventDispatcher(broker, {
    hostname: "w@h",
    groups: ["worker"],
    bufferGroups: ["task"],
  });
  try {
    assert.equal(d.enabled, true);
    assert.equal(d.taskEventsEnabled, false);
    assert.equal(d.send("task-started", { uuid: "x" }), undefined);
    assert.ok(d.send("worker-heartbeat", {}));
    assert.equal(d.enableTaskEvents(), true);
    assert.ok(d.send("task-started", { uuid: "y" }));
    assert.equal(d.disableTaskEvents(), true);
    assert.equal(d.disableTaskEvents(), false);
    assert.equal(d.send("task-started", { uuid: "z" }), undefined);
    assert.deepEqual([...d.groups!], ["worker"]);
    await d.flush();
    await nextMacrotask();
    assert.deepEqual(all(got).map((e) => `${e.type} ${e.uuid ?? ""}`.trim()), [
      "worker-heartbeat",
      "task-started y",
    ]);
    assert.throws(
      () => new EventDispatcher(broker, { hostname: "w", bufferLimit: 0 }),
      RangeError,
    );
  } finally {
    await d.close();
    await close();
  }
  assert.equal(d.enabled, false, "closed");
});

Deno.test("worker: task events only with sendEvents; enable/disable through worker.events", async () => {
  const app = createApp({ broker: `memory://${uniqueName("ev-groups")}` });
  const broker = await app.broker();
  const { got, close } = await capture(broker);
  const worker = new Worker(app, { logLevel: "critical", fetchTimeoutMs: 50 });
  try {
    app.task("tasks.add", (x: number, y: number) => x + y);
    assert.equal(worker.events, undefined, "not started");
    await worker.start();
    await (await app.sendTask("tasks.add", [1, 2])).get({ timeout: 5 });
    assert.equal(worker.events!.taskEventsEnabled, false);
    assert.equal(worker.events!.enableTaskEvents(), true);
    const id = (await app.sendTask("tasks.add", [3, 4])).id;
    await waitFor(() => all(got).some((e) => e.type === "task-succeeded" && e.uuid === id));
    worker.events!.disableTaskEvents();
    await (await app.sendTask("tasks.add", [5, 6])).get({ timeout: 5 });
    // Remote control's `heartbeat` command (issue #5) sends one with freq 5.
    assert.ok(worker.events!.sendWorkerEvent("worker-heartbeat", 5));
    await waitFor(() => all(got).some((e) => e.type === "worker-heartbeat" && e.freq === 5));
    assert.ok(worker.events!.clock.value >= all(got).length);
  } finally {
    await worker.stop();
    await nextMacrotask();
    await close();
    await app.close();
  }
  const taskEvents = all(got).filter((e) => e.type.startsWith("task-"));
  assert.deepEqual(taskEvents.map((e) => e.type), [
    "task-received",
    "task-started",
    "task-succeeded",
  ]);
  assert.deepEqual(
    all(got).filter((e) => e.type.startsWith("worker-") && e.type !== "worker-heartbeat")
      .map((e) => e.type),
    ["worker-online", "worker-offline"],
  );
});

Deno.test("worker: a broker without fanout runs tasks and sends no events", async () => {
  const broker = new MemoryBroker(uniqueName("nofanout"));
  Object.defineProperty(broker, "broadcast", { value: undefined });
  Object.defineProperty(broker, "subscribe", { value: undefined });
  const app = createApp({ broker, backend: "memory://" + uniqueName("nofanout-results") });
  const worker = new Worker(app, { sendEvents: true, logLevel: "critical", fetchTimeoutMs: 50 });
  try {
    app.task("tasks.add", (x: number, y: number) => x + y);
    await worker.start();
    assert.equal(worker.events, undefined);
    assert.equal(await (await app.sendTask("tasks.add", [2, 2])).get({ timeout: 5 }), 4);
    const d = new EventDispatcher(broker, { hostname: "w@h" });
    assert.equal(d.enabled, false);
    assert.equal(d.send("worker-online", {}), undefined);
    await d.close();
  } finally {
    await worker.stop();
    await app.close();
  }
});

function fakeSource(name = "w1@hb") {
  return { name, hooks: new Hooks(), activeIds: ["t1", "t2"], counters: { processed: 7 } };
}

Deno.test("heartbeat: worker-online, a heartbeat every 2.0 s, worker-offline (fake time)", async () => {
  const clock = FakeTimers.install({
    now: 1_795_420_404_000,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
  });
  const broker = new MemoryBroker();
  const { got, close } = await capture(broker);
  const events = new WorkerEvents(fakeSource(), broker);
  try {
    await events.start();
    await clock.tickAsync(0);
    assert.deepEqual(all(got).map((e) => e.type), ["worker-online"]);
    await clock.tickAsync(1_999);
    assert.equal(got.length, 1);
    await clock.tickAsync(1);
    assert.deepEqual(all(got).map((e) => e.type), ["worker-online", "worker-heartbeat"]);
    await clock.tickAsync(2_000);
    assert.equal(got.length, 3);
    await events.stop();
    await clock.tickAsync(10_000);
  } finally {
    await events.stop();
    await close();
    clock.uninstall();
  }
  const types = all(got).map((e) => e.type);
  assert.deepEqual(types, [
    "worker-online",
    "worker-heartbeat",
    "worker-heartbeat",
    "worker-offline",
  ]);
  const hb = all(got)[1];
  assert.deepEqual(
    [hb.freq, hb.active, hb.processed, hb.timestamp, hb.clock],
    [2, 2, 7, 1_795_420_406, 2],
  );
  // On the wire freq and timestamp are floats, as Python writes them.
  const raw = new TextDecoder().decode(got[1].message.body);
  assert.match(raw, /"freq":2\.0,/);
  assert.match(raw, /"timestamp":1795420406\.0,/);
  assert.throws(() => new WorkerEvents(fakeSource(), broker, { heartbeatInterval: 0 }), RangeError);
});

Deno.test("heartbeat: stop does not hang when the broker never answers", async () => {
  const broker = new MemoryBroker();
  let calls = 0;
  Object.defineProperty(broker, "broadcast", {
    value: () => {
      calls++;
      return calls === 1 ? Promise.resolve() : new Promise<void>(() => {});
    },
  });
  const events = new WorkerEvents(fakeSource(), broker, { offlineTimeoutMs: 20 });
  await events.start();
  const started = performance.now();
  await events.stop();
  assert.ok(performance.now() - started < 2000);
  assert.equal(calls, 2);
});

Deno.test("dispatcher: publish failures go to onError, never to the caller", async () => {
  const broker = new MemoryBroker();
  Object.defineProperty(broker, "broadcast", {
    value: () => Promise.reject(new Error("connection lost")),
  });
  const errors: string[] = [];
  const d = new EventDispatcher(broker, {
    hostname: "w@h",
    onError: (err, events) =>
      errors.push(`${(err as Error).message}: ${events.map((e) => e.type)}`),
  });
  d.send("worker-heartbeat", {});
  await d.flush();
  await d.close();
  assert.deepEqual(errors, ["connection lost: worker-heartbeat"]);
});

Deno.test("app: sendSentEvent publishes task-sent with Celery's fields, singly", async () => {
  const app = createApp({ broker: `memory://${uniqueName("ev-sent")}`, sendSentEvent: true });
  const broker = await app.broker();
  const { got, close } = await capture(broker);
  const receiver = new EventReceiver(broker);
  receiver.clock.value = 10;
  try {
    const result = await app.sendTask("tasks.add", [2, 3], { z: 1 }, { countdown: 60 });
    await nextMacrotask();
    assert.equal(got.length, 1);
    assert.equal(got[0].routingKey, "task.sent");
    const body = JSON.parse(new TextDecoder().decode(got[0].message.body));
    assert.ok(!Array.isArray(body));
    const sent = got[0].events[0];
    assert.deepEqual(Object.keys(sent), [
      "hostname",
      "utcoffset",
      "pid",
      "clock",
      "uuid",
      "root_id",
      "parent_id",
      "name",
      "args",
      "kwargs",
      "retries",
      "eta",
      "expires",
      "queue",
      "exchange",
      "routing_key",
      "timestamp",
      "type",
    ]);
    assert.equal(sent.hostname, app.origin);
    assert.equal(sent.uuid, result.id);
    assert.deepEqual(
      [sent.name, sent.args, sent.kwargs, sent.queue, sent.exchange, sent.routing_key],
      ["tasks.add", "(2, 3)", "{'z': 1}", "celery", "", "celery"],
    );
    assert.match(sent.eta as string, /^\d{4}-\d\d-\d\dT.*\+00:00$/);
    // Receivers do not trust a client's clock.
    assert.equal(receiver.process(sent)[0].clock, 9);
    // Off by default.
    const quiet = createApp({ broker });
    await quiet.sendTask("tasks.add", [1, 1]);
    await nextMacrotask();
    assert.equal(got.length, 1);
  } finally {
    await close();
    await app.close();
  }
});
