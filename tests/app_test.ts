/**
 * App behaviour on the memory broker and backend: defaults, task registration, the messages
 * `delay`/`applyAsync`/`sendTask` publish, and `AsyncResult`.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { App, createApp } from "../src/app.ts";
import { MemoryBackend } from "../src/backends/memory.ts";
import type { Delivery } from "../src/brokers/broker.ts";
import { MemoryBroker } from "../src/brokers/memory.ts";
import { ConfigError, ResultTimeoutError, TaskFailedError } from "../src/errors.ts";
import { parseJson } from "../src/protocol/json.ts";
import { buildResultMeta, revokedException } from "../src/protocol/result.ts";
import { parseIso } from "../src/protocol/time.ts";
import { uniqueName } from "./helpers/harness.ts";

/** A fresh app on its own memory broker and backend. */
function freshApp(prefix: string, options: Parameters<typeof createApp>[0] = {}): App {
  return createApp({ broker: `memory://${uniqueName(prefix)}`, ...options });
}

/** Takes the one message waiting in `queue` (it stays unacked until the caller settles it). */
async function peek(app: App, queue = "celery"): Promise<Delivery> {
  const broker = await app.broker();
  const deliveries = await broker.fetch([queue], { max: 10, timeoutMs: 0 });
  assert.equal(deliveries.length, 1, `expected one message in queue "${queue}"`);
  return deliveries[0]!;
}

function body(delivery: Delivery): [unknown[], Record<string, unknown>, unknown] {
  return parseJson(Buffer.from(delivery.message!.body).toString("utf8"));
}

Deno.test("createApp: defaults", async () => {
  const app = createApp();
  try {
    assert.ok(app instanceof App);
    assert.equal(app.defaultQueue, "celery");
    assert.equal(app.resultExpires, 86400);
    assert.equal(app.brokerSpec, "memory://");
    assert.equal(app.backendSpec, "memory://");
    assert.equal(app.tasks.size, 0);
    assert.match(app.origin, /^gen\d+@/);
    assert.equal((await app.broker()).kind, "memory");
    assert.equal((await app.backend())?.kind, "memory");
  } finally {
    await app.close();
  }
});

Deno.test("createApp: a named memory broker gets the memory backend of the same name", async () => {
  const name = uniqueName("app-named");
  const app = createApp({ broker: `memory://${name}` });
  const other = createApp({ broker: `memory://${name}` });
  try {
    assert.equal(app.backendSpec, `memory://${name}`);
    assert.equal(await app.broker(), await other.broker());
    assert.equal(await app.backend(), await other.backend());
  } finally {
    await app.close();
    await other.close();
  }
});

Deno.test("createApp: broker instance, backend off, redis without backend, options", async () => {
  const broker = new MemoryBroker("inst");
  const a = createApp({ broker });
  assert.equal(a.brokerSpec, broker);
  assert.equal(a.backendSpec, "memory://", "a memory broker instance gets a memory backend");
  assert.equal(await a.broker(), broker);
  await a.close();

  const b = createApp({ broker: "memory://x", backend: null, defaultQueue: "jobs" });
  assert.equal(b.backendSpec, null);
  assert.equal(await b.backend(), null);
  assert.equal(b.defaultQueue, "jobs");
  await b.close();

  // Not connected: the spec alone decides the default backend.
  const c = createApp({ broker: "redis://127.0.0.1:6379/0" });
  assert.equal(c.backendSpec, null);

  const d = createApp({ resultExpires: 60 });
  assert.equal(d.resultExpires, 60);
  assert.throws(() => createApp({ resultExpires: 0 }), RangeError);
  assert.throws(() => createApp({ resultExpires: -5 }), /resultExpires must be > 0/);
});

Deno.test("createApp: an unknown broker scheme fails on first use with ConfigError", async () => {
  const app = createApp({ broker: "kafka://host" });
  await assert.rejects(app.broker(), ConfigError);
  await assert.rejects(app.sendTask("t"), /scheme "kafka" is not supported/);
  await app.close();
});

Deno.test("app.task: registration and its errors", () => {
  const app = freshApp("app-reg");
  const add = app.task("tasks.add", (x: number, y: number) => x + y, { params: ["x", "y"] });
  assert.equal(add.name, "tasks.add");
  assert.equal(app.tasks.get("tasks.add"), add);
  assert.deepEqual(add.options, { params: ["x", "y"] });

  assert.throws(
    () => app.task("tasks.add", () => 1),
    (err: unknown) => err instanceof TypeError && /"tasks\.add".*exists/.test(err.message),
  );
  assert.equal(app.tasks.get("tasks.add"), add, "the first registration stays");
  assert.throws(() => app.task("", () => 1), /name must be a non-empty string/);
  assert.throws(() => app.task(undefined as unknown as string, () => 1), TypeError);
  assert.throws(
    () => app.task("tasks.nofn", 5 as unknown as () => void),
    /fn must be a function/,
  );
  assert.equal(app.tasks.has("tasks.nofn"), false);
  assert.equal(app.tasks.size, 1);
});

Deno.test("delay: publishes a protocol v2 message to the default queue", async () => {
  const app = freshApp("app-delay");
  try {
    const add = app.task("tasks.add", (x: number, y: number) => x + y);
    const before = Date.now();
    const result = await add.delay(2, 3);
    const broker = await app.broker();
    assert.equal(await broker.queueSize("celery"), 1);
    const d = await peek(app);
    const h = d.message!.headers;
    assert.equal(h.task, "tasks.add");
    assert.equal(h.id, result.id);
    assert.match(result.id, /^[0-9a-f-]{36}$/);
    assert.equal(h.root_id, result.id);
    assert.equal(h.parent_id, null);
    assert.equal(h.argsrepr, "(2, 3)");
    assert.equal(h.kwargsrepr, "{}");
    assert.equal(h.eta, null);
    assert.equal(h.expires, null);
    assert.equal(h.retries, 0);
    assert.equal(h.lang, "py");
    assert.equal(h.origin, app.origin);
    assert.equal(h.ignore_result, false);
    assert.deepEqual(h.timelimit, [null, null]);
    const p = d.message!.properties;
    assert.equal(p.correlation_id, result.id);
    assert.equal(p.priority, 0);
    assert.equal(p.expiration, undefined);
    assert.equal(d.message!.contentType, "application/json");
    assert.equal(d.queue, "celery");
    assert.deepEqual(body(d), [[2, 3], {}, {
      callbacks: null,
      errbacks: null,
      chain: null,
      chord: null,
    }]);
    assert.ok(Date.now() >= before);
    await d.ack();
  } finally {
    await app.close();
  }
});

Deno.test("applyAsync: kwargs, countdown ⇒ eta, expires (seconds and Date), priority", async () => {
  const app = freshApp("app-apply");
  try {
    const add = app.task("tasks.add", (x: number, y: number) => x + y, { params: ["x", "y"] });

    let t0 = Date.now();
    const r1 = await add.applyAsync([2], { y: 3 }, { countdown: 10, expires: 60, priority: 7 });
    let t1 = Date.now();
    let d = await peek(app);
    let h = d.message!.headers;
    assert.equal(h.id, r1.id);
    assert.equal(h.argsrepr, "(2,)");
    assert.equal(h.kwargsrepr, "{'y': 3}");
    assert.deepEqual(body(d).slice(0, 2), [[2], { y: 3 }]);
    assert.match(h.eta as string, /\+00:00$/);
    const eta = parseIso(h.eta as string)!.getTime();
    assert.ok(eta >= t0 + 10_000 && eta <= t1 + 10_000, `eta ${h.eta} is now + 10 s`);
    const expires = parseIso(h.expires as string)!.getTime();
    assert.ok(expires >= t0 + 60_000 && expires <= t1 + 60_000, `expires ${h.expires}`);
    const expiration = Number(d.message!.properties.expiration);
    assert.ok(expiration > 59_000 && expiration <= 60_000, `expiration ${expiration} ms`);
    assert.equal(d.message!.properties.priority, 7);
    await d.ack();

    const at = new Date(Date.UTC(2031, 4, 6, 7, 8, 9, 10));
    const until = new Date(Date.UTC(2031, 4, 7));
    t0 = Date.now();
    await add.applyAsync([1, 2], {}, { eta: at, expires: until });
    t1 = Date.now();
    d = await peek(app);
    h = d.message!.headers;
    assert.equal(h.eta, "2031-05-06T07:08:09.010000+00:00");
    assert.equal(h.expires, "2031-05-07T00:00:00.000000+00:00");
    const exp = Number(d.message!.properties.expiration);
    assert.ok(exp <= until.getTime() - t0 && exp >= until.getTime() - t1);
    await d.ack();
  } finally {
    await app.close();
  }
});

Deno.test("applyAsync: queue routing, task-level queue and priority, custom headers, taskId", async () => {
  const app = freshApp("app-route");
  try {
    const broker = await app.broker();
    const plain = app.task("tasks.plain", () => 1);
    const slow = app.task("tasks.slow", () => 1, { queue: "slow", priority: 3 });

    await plain.applyAsync([], {}, { queue: "urgent" });
    assert.equal(await broker.queueSize("urgent"), 1);
    assert.equal(await broker.queueSize("celery"), 0);
    let d = await peek(app, "urgent");
    assert.equal(d.queue, "urgent");
    assert.equal(d.message!.deliveryInfo?.routingKey, "urgent");
    assert.equal(d.message!.deliveryInfo?.exchange, "");
    await d.ack();

    await slow.delay();
    assert.equal(await broker.queueSize("slow"), 1, "the task's queue option routes it");
    d = await peek(app, "slow");
    assert.equal(d.message!.properties.priority, 3, "the task's priority is the default");
    await d.ack();

    await slow.applyAsync([], {}, { queue: "other", priority: 9 });
    assert.equal(await broker.queueSize("slow"), 0, "a call's queue beats the task's");
    d = await peek(app, "other");
    assert.equal(d.message!.properties.priority, 9);
    await d.ack();

    const r = await plain.applyAsync([], {}, {
      taskId: "my-id",
      headers: { custom: "value", id: "cannot-override" },
      retries: 2,
      parentId: "parent",
      rootId: "root",
      ignoreResult: true,
      shadow: "shown",
      timeLimit: [30, 20],
    });
    assert.equal(r.id, "my-id");
    d = await peek(app);
    const h = d.message!.headers;
    assert.equal(h.custom, "value");
    assert.equal(h.id, "my-id", "extra headers never replace standard ones");
    assert.equal(h.retries, 2);
    assert.equal(h.parent_id, "parent");
    assert.equal(h.root_id, "root");
    assert.equal(h.ignore_result, true);
    assert.equal(h.shadow, "shown");
    assert.deepEqual(h.timelimit, [30, 20]);
    await d.ack();
  } finally {
    await app.close();
  }
});

Deno.test("applyAsync: task-level time limits go in the timelimit header", async () => {
  const app = freshApp("app-limits");
  try {
    const t = app.task("tasks.limited", () => 1, { timeLimit: 10, softTimeLimit: 5 });
    await t.delay();
    const d = await peek(app);
    assert.deepEqual(d.message!.headers.timelimit, [10, 5]);
    await d.ack();
  } finally {
    await app.close();
  }
});

Deno.test("sendTask: an unregistered name is sent as is, to the default queue", async () => {
  const app = freshApp("app-send", { defaultQueue: "work" });
  try {
    const result = await app.sendTask("py.only.task", [1], { k: "v" });
    assert.equal(app.tasks.has("py.only.task"), false);
    const broker = await app.broker();
    assert.equal(await broker.queueSize("work"), 1);
    const d = await peek(app, "work");
    assert.equal(d.message!.headers.task, "py.only.task");
    assert.equal(d.message!.headers.id, result.id);
    assert.equal(d.message!.headers.kwargsrepr, "{'k': 'v'}");
    assert.deepEqual(body(d).slice(0, 2), [[1], { k: "v" }]);
    assert.equal(await result.state, "PENDING");
    await d.ack();
  } finally {
    await app.close();
  }
});

Deno.test("sendTask: bad arguments throw TypeError and publish nothing", async () => {
  const app = freshApp("app-send-bad");
  try {
    await assert.rejects(app.sendTask("t", "x" as unknown as unknown[]), TypeError);
    await assert.rejects(
      app.sendTask("t", [], [] as unknown as Record<string, unknown>),
      TypeError,
    );
    await assert.rejects(app.sendTask(""), TypeError);
    assert.equal(await (await app.broker()).queueSize("celery"), 0);
  } finally {
    await app.close();
  }
});

Deno.test("AsyncResult: PENDING, then SUCCESS; ready; get; forget", async () => {
  const app = freshApp("app-result");
  try {
    const backend = (await app.backend())!;
    const result = app.asyncResult<number>("task-1");
    assert.equal(result.id, "task-1");
    assert.equal(await result.state, "PENDING");
    assert.equal(await result.ready(), false);
    assert.equal(await result.meta(), null);

    await backend.store(
      buildResultMeta({ taskId: "task-1", status: "STARTED", result: null }, new Date()),
    );
    assert.equal(await result.state, "STARTED");
    assert.equal(await result.ready(), false);

    const waiting = result.get({ timeout: 5 });
    await backend.store(
      buildResultMeta({ taskId: "task-1", status: "SUCCESS", result: 42 }, new Date()),
    );
    assert.equal(await waiting, 42);
    assert.equal(await result.state, "SUCCESS");
    assert.equal(await result.ready(), true);
    assert.equal(await result.get(), 42, "an already stored result returns at once");
    assert.equal((await result.meta())?.task_id, "task-1");

    await result.forget();
    assert.equal(await result.state, "PENDING");
    assert.equal(await result.ready(), false);
  } finally {
    await app.close();
  }
});

Deno.test("AsyncResult.get: timeout ⇒ ResultTimeoutError; signal stops the wait", async () => {
  const app = freshApp("app-timeout");
  try {
    const result = app.asyncResult("never");
    const err = await result.get({ timeout: 0.02 }).then(
      () => assert.fail("get() should time out"),
      (e) => e,
    );
    assert.ok(err instanceof ResultTimeoutError);
    assert.equal(err.taskId, "never");
    assert.equal(err.timeoutMs, 20);

    const controller = new AbortController();
    const waiting = result.get({ signal: controller.signal });
    controller.abort(new Error("caller gave up"));
    await assert.rejects(waiting, /caller gave up/);
  } finally {
    await app.close();
  }
});

Deno.test("AsyncResult.get: FAILURE ⇒ TaskFailedError; propagate: false returns the exception", async () => {
  const app = freshApp("app-failure");
  try {
    const backend = (await app.backend())!;
    const exc = { exc_type: "ValueError", exc_message: ["bad value", 3], exc_module: "builtins" };
    await backend.store(buildResultMeta({
      taskId: "f1",
      status: "FAILURE",
      result: exc,
      traceback: "Traceback (most recent call last): ...",
    }, new Date()));
    const result = app.asyncResult("f1");
    const err = await result.get({ timeout: 1 }).then(() => assert.fail("should throw"), (e) => e);
    assert.ok(err instanceof TaskFailedError);
    assert.equal(err.taskId, "f1");
    assert.equal(err.state, "FAILURE");
    assert.equal(err.excType, "ValueError");
    assert.equal(err.excModule, "builtins");
    assert.deepEqual(err.excMessage, ["bad value", 3]);
    assert.equal(err.message, "ValueError: bad value, 3");
    assert.match(err.remoteTraceback ?? "", /^Traceback/);
    assert.equal(await result.ready(), true);
    assert.deepEqual(await result.get({ propagate: false }), exc);

    await backend.store(
      buildResultMeta(
        { taskId: "r1", status: "REVOKED", result: revokedException("revoked") },
        new Date(),
      ),
    );
    await assert.rejects(
      app.asyncResult("r1").get(),
      (e: unknown) =>
        e instanceof TaskFailedError && e.state === "REVOKED" &&
        e.excType === "TaskRevokedError" && e.excMessage[0] === "revoked",
    );
  } finally {
    await app.close();
  }
});

Deno.test("AsyncResult: an app with backend: null ⇒ ConfigError", async () => {
  const app = freshApp("app-nobackend", { backend: null });
  try {
    const t = app.task("tasks.t", () => 1);
    const result = await t.delay();
    await assert.rejects(result.get({ timeout: 1 }), ConfigError);
    await assert.rejects(result.get(), /has no result backend/);
    await assert.rejects(result.state, ConfigError);
    await assert.rejects(result.ready(), ConfigError);
    await assert.rejects(result.forget(), ConfigError);
    assert.equal(await (await app.broker()).queueSize("celery"), 1, "the task was still sent");
  } finally {
    await app.close();
  }
});

Deno.test("configure: before use it replaces broker/backend; after use it throws", async () => {
  const app = freshApp("app-configure");
  const name = uniqueName("app-configured");
  const backend = new MemoryBackend();
  app.configure({ broker: `memory://${name}`, backend });
  assert.equal(app.brokerSpec, `memory://${name}`);
  assert.equal(app.backendSpec, backend);
  app.configure({}); // nothing given: nothing changes
  assert.equal(app.brokerSpec, `memory://${name}`);
  try {
    await app.sendTask("t");
    assert.equal(await app.backend(), backend);
    assert.throws(() => app.configure({ broker: "memory://late" }), TypeError);
    assert.throws(() => app.configure({ backend: null }), /already in use/);
    assert.equal(app.brokerSpec, `memory://${name}`);
  } finally {
    await app.close();
  }

  const backendOnly = freshApp("app-configure-2");
  await backendOnly.backend();
  assert.throws(() => backendOnly.configure({ backend: null }), TypeError);
  await backendOnly.close();
});

Deno.test("memory backend: records go through JSON, as on Redis", async () => {
  const app = freshApp("app-backend-json");
  try {
    const backend = (await app.backend())!;
    await backend.store(buildResultMeta({
      taskId: "j1",
      status: "SUCCESS",
      result: { at: new Date(Date.UTC(2030, 0, 1)), list: [1, undefined], big: 2n ** 70n },
    }, new Date()));
    assert.deepEqual(await app.asyncResult("j1").get(), {
      at: "2030-01-01T00:00:00.000Z",
      list: [1, null],
      big: 2n ** 70n,
    });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(
      backend.store(
        buildResultMeta({ taskId: "j2", status: "SUCCESS", result: cyclic }, new Date()),
      ),
      TypeError,
    );
    assert.equal(await app.asyncResult("j2").state, "PENDING");
  } finally {
    await app.close();
  }
});
