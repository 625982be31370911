/**
 * Receiving events: every fixture through the receiver, Celery's clock and timestamp rules,
 * handler dispatch, binding keys, errors, and the `heartbeat` wake-up cast.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { ConfigError } from "../../src/errors.ts";
import { EventDispatcher } from "../../src/events/dispatcher.ts";
import { adjustTimestamp, type CeleryEvent, localUtcOffset } from "../../src/events/event.ts";
import { EventReceiver, wakeupWorkers } from "../../src/events/receiver.ts";
import { decodeJsonBody, type TransportMessage } from "../../src/protocol/message.ts";
import { nextMacrotask, waitFor } from "../helpers/wait.ts";
import { eventFixtures } from "./fixtures.ts";

Deno.test("receiver: handles every Redis and AMQP event fixture (batches and single events)", () => {
  for (const f of eventFixtures()) {
    const seen: CeleryEvent[] = [];
    const receiver = new EventReceiver(new MemoryBroker(), {
      handlers: { "*": (e) => seen.push(e) },
    });
    const before = Date.now() / 1000;
    const out = receiver.handleMessage(f.message);
    const expected = Array.isArray(f.body) ? f.body : [f.body];
    assert.deepEqual(seen, out, f.name);
    assert.equal(out.length, expected.length, f.name);
    for (const [i, e] of out.entries()) {
      const src = expected[i];
      assert.equal(e.type, src.type);
      assert.equal(e.uuid, src.uuid);
      assert.equal(e.clock, src.clock, "the sender's clock is kept");
      assert.equal(e.timestamp, adjustTimestamp(src.timestamp!, src.utcoffset!, localUtcOffset()));
      assert.ok(e.local_received! >= before && e.local_received! <= Date.now() / 1000 + 1);
    }
    const maxClock = Math.max(...expected.map((e) => e.clock!));
    assert.ok(receiver.clock.value > maxClock, `${f.name}: clock adjusted`);
  }
});

Deno.test("receiver: clock rules (adjust, missing clock, untrusted task-sent) and re-based timestamps", () => {
  const r = new EventReceiver(new MemoryBroker());
  r.clock.value = 10;
  assert.equal(r.process({ type: "task-started", uuid: "a", clock: 20 })[0].clock, 20);
  assert.equal(r.clock.value, 21);
  assert.equal(r.process({ type: "task-started", uuid: "a", clock: 3 })[0].clock, 3);
  assert.equal(r.clock.value, 22);
  // Missing clock: the receiver forwards its own.
  assert.equal(r.process({ type: "worker-heartbeat" })[0].clock, 23);
  // task-sent: (local or 1) - 1, whatever the client said.
  assert.equal(r.process({ type: "task-sent", uuid: "b", clock: 999 })[0].clock, 22);
  assert.equal(new EventReceiver(new MemoryBroker()).process({ type: "task-sent" })[0].clock, 0);

  const here = localUtcOffset();
  const [east] = r.process({ type: "x", timestamp: 1000, utcoffset: here - 2 });
  assert.equal(east.timestamp, 1000 + 7200);
  const [raw] = new EventReceiver(new MemoryBroker(), { localize: false })
    .process({ type: "x", timestamp: 1000, utcoffset: here - 2 });
  assert.equal(raw.timestamp, 1000);
  // The input is not modified.
  const input: CeleryEvent = { type: "task-started", clock: 1 };
  r.process(input);
  assert.equal(input.local_received, undefined);
});

Deno.test("receiver: a type's handlers win over '*'; on() returns a remover; errors go to onError", () => {
  const log: string[] = [];
  const errors: string[] = [];
  const r = new EventReceiver(new MemoryBroker(), {
    handlers: { "*": (e) => log.push(`* ${e.type}`) },
    onError: (err) => errors.push((err as Error).message),
  });
  const off = r.on("task-failed", (e) => log.push(`failed ${e.uuid}`));
  r.on("task-failed", () => {
    throw new Error("handler bug");
  });
  r.process([{ type: "task-started", uuid: "a" }, { type: "task-failed", uuid: "a" }]);
  off();
  r.process({ type: "task-succeeded", uuid: "b" });
  assert.deepEqual(log, ["* task-started", "failed a", "* task-succeeded"]);
  assert.deepEqual(errors, ["handler bug"]);
  const bad: TransportMessage = {
    headers: {},
    properties: {},
    contentType: "application/json",
    contentEncoding: "utf-8",
    body: new TextEncoder().encode("{nope"),
  };
  assert.deepEqual(r.handleMessage(bad), []);
  assert.equal(errors.length, 2);
});

Deno.test("receiver: subscribes on the broker; binding keys filter (worker.# skips task.multi)", async () => {
  const broker = new MemoryBroker();
  const everything: string[] = [];
  const workersOnly: string[] = [];
  const a = new EventReceiver(broker, { handlers: { "*": (e) => everything.push(e.type) } });
  const b = new EventReceiver(broker, {
    routingKey: "worker.#",
    handlers: { "*": (e) => workersOnly.push(e.type) },
  });
  await a.start();
  await a.start(); // idempotent
  await b.start();
  const d = new EventDispatcher(broker, { hostname: "w@h", bufferGroups: ["task"] });
  try {
    d.send("worker-online", {});
    d.send("task-received", { uuid: "1" });
    d.send("task-succeeded", { uuid: "1" });
    d.send("worker-heartbeat", {});
    await d.flush();
    await waitFor(() => everything.length === 4);
    assert.deepEqual(everything, [
      "worker-online",
      "task-received",
      "task-succeeded",
      "worker-heartbeat",
    ]);
    assert.deepEqual(workersOnly, ["worker-online", "worker-heartbeat"]);
    await a.close();
    d.send("worker-heartbeat", {});
    await d.flush();
    await nextMacrotask();
    assert.equal(everything.length, 4, "closed receivers hear nothing");
  } finally {
    await d.close();
    await a.close();
    await b.close();
  }
});

Deno.test("receiver: a broker without fanout is a ConfigError", async () => {
  const broker = new MemoryBroker();
  Object.defineProperty(broker, "subscribe", { value: undefined });
  Object.defineProperty(broker, "broadcast", { value: undefined });
  await assert.rejects(() => new EventReceiver(broker).start(), ConfigError);
  await assert.rejects(() => wakeupWorkers(broker), ConfigError);
});

Deno.test("wakeupWorkers: a heartbeat cast in pidbox form (no ticket, no reply_to)", async () => {
  const broker = new MemoryBroker();
  const got: TransportMessage[] = [];
  const sub = await broker.subscribe("celery.pidbox", "", (m) => got.push(m));
  try {
    await wakeupWorkers(broker);
    await waitFor(() => got.length === 1);
  } finally {
    await sub.close();
  }
  const [m] = got;
  assert.equal(m.deliveryInfo?.exchange, "celery.pidbox");
  assert.equal(m.deliveryInfo?.routingKey, "");
  assert.deepEqual(Object.keys(m.headers), ["clock", "expires"]);
  assert.ok((m.headers.expires as number) > Date.now() / 1000);
  assert.deepEqual(decodeJsonBody(m), {
    method: "heartbeat",
    arguments: {},
    destination: null,
    pattern: null,
    matcher: null,
  });
});
