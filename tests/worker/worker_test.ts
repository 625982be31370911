/**
 * Worker behaviour on the memory broker and backend: results, arguments, context,
 * concurrency, acks, triage (unknown, malformed, expired, ETA), shutdown, burst mode,
 * result encoding, backend and broker failures, log lines.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import FakeTimers from "npm:@sinonjs/fake-timers@^13";
import { MemoryBackend } from "../../src/backends/memory.ts";
import type { Delivery, FetchOptions } from "../../src/brokers/broker.ts";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { TaskFailedError } from "../../src/errors.ts";
import { encodeJsonBody, type TransportMessage } from "../../src/protocol/message.ts";
import type { ResultMeta } from "../../src/protocol/result.ts";
import { encodeTaskMessage } from "../../src/protocol/task.ts";
import type { TaskContext } from "../../src/task.ts";
import { MAX_TIMEOUT_MS } from "../../src/worker/timers.ts";
import { Worker } from "../../src/worker/worker.ts";
import { harness, uniqueName } from "../helpers/harness.ts";
import { type Gate, gate, nextMacrotask, waitFor } from "../helpers/wait.ts";

/** The rejection of `promise`, failing when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("expected the promise to reject");
}

async function taskFailure(promise: Promise<unknown>): Promise<TaskFailedError> {
  const err = await rejection(promise);
  assert.ok(err instanceof TaskFailedError, `expected TaskFailedError, got ${err}`);
  return err;
}

/** A task body that waits until its context's signal aborts, then rejects with the reason. */
function untilAborted(ctx: TaskContext): Promise<never> {
  return new Promise((_, reject) => {
    if (ctx.signal.aborted) reject(ctx.signal.reason);
    ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
  });
}

Deno.test("worker: stores SUCCESS and FAILURE results and acks both", async () => {
  const h = await harness("w-results");
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const boom = h.app.task("tasks.boom", (message: string): never => {
      throw new Error(message);
    });
    const badType = h.app.task("tasks.bad_type", async () => {
      await Promise.resolve();
      throw new TypeError("bad type");
    });
    const nothing = h.app.task("tasks.nothing", () => {});
    const worker = h.worker({ concurrency: 4 });
    await worker.start();

    assert.equal(await (await add.delay(2, 3)).get({ timeout: 5 }), 5);
    assert.equal(await (await nothing.delay()).get({ timeout: 5 }), null, "undefined ⇒ None");

    const failed = await boom.delay("kaput");
    const err = await taskFailure(failed.get({ timeout: 5 }));
    assert.equal(err.state, "FAILURE");
    assert.equal(err.taskId, failed.id);
    assert.equal(err.excType, "Error");
    assert.equal(err.excModule, "celeriac");
    assert.deepEqual(err.excMessage, ["kaput"]);
    assert.match(err.remoteTraceback ?? "", /kaput/);
    assert.equal(await failed.state, "FAILURE");

    const typed = await taskFailure((await badType.delay()).get({ timeout: 5 }));
    assert.equal(typed.excType, "TypeError");
    assert.equal(typed.excModule, "builtins");

    await waitFor(() => h.broker.unackedCount === 0, { message: "every message acked" });
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.equal(worker.counters.processed, 4);
    assert.deepEqual(worker.counters.total, {
      "tasks.add": 1,
      "tasks.nothing": 1,
      "tasks.boom": 1,
      "tasks.bad_type": 1,
    });
    assert.equal(worker.counters.rejected, 0);
  } finally {
    await h.close();
  }
});

Deno.test("worker: keyword arguments are placed by params", async () => {
  const h = await harness("w-kwargs");
  try {
    const sub = h.app.task("tasks.sub", (x: number, y: number) => x - y, { params: ["x", "y"] });
    const third = h.app.task(
      "tasks.third",
      (a: unknown, b: unknown, c: unknown) => [a, b, c],
      { params: ["a", "b", "c"] },
    );
    await h.worker().start();

    assert.equal(await (await sub.applyAsync([], { y: 1, x: 10 })).get({ timeout: 5 }), 9);
    assert.equal(await (await sub.applyAsync([10], { y: 4 })).get({ timeout: 5 }), 6);
    assert.deepEqual(
      await (await third.applyAsync([], { c: 3 })).get({ timeout: 5 }),
      [null, null, 3],
      "missing leading parameters are undefined (stored as None)",
    );
    const twice = await taskFailure((await sub.applyAsync([10], { x: 4 })).get({ timeout: 5 }));
    assert.equal(twice.excType, "TypeError");
    assert.match(String(twice.excMessage[0]), /multiple values for argument "x"/);
  } finally {
    await h.close();
  }
});

Deno.test("worker: a keyword argument without a place is a FAILURE TypeError, not a crash", async () => {
  const h = await harness("w-kwarg-noplace");
  try {
    let ran = false;
    const noKw = h.app.task("tasks.no_kw", (x: number) => {
      ran = true;
      return x;
    });
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const worker = h.worker();
    await worker.start();

    const result = await noKw.applyAsync([1], { z: 2 });
    const err = await taskFailure(result.get({ timeout: 5 }));
    assert.equal(err.excType, "TypeError");
    assert.equal(err.excModule, "builtins");
    assert.match(String(err.excMessage[0]), /keyword argument "z" has no parameter/);
    assert.equal(ran, false, "the function is not called");
    assert.ok(h.logs.some((l) => /tasks\.no_kw\[.*\] raised unexpected: TypeError/.test(l)));

    // The worker keeps working.
    assert.equal(await (await add.delay(1, 2)).get({ timeout: 5 }), 3);
    await waitFor(() => h.broker.unackedCount === 0);
    assert.equal(worker.counters.processed, 2);
  } finally {
    await h.close();
  }
});

Deno.test("worker: bind: true passes the context (id, retries, headers, signal, queue, hostname)", async () => {
  const h = await harness("w-bind");
  try {
    let seen: TaskContext | undefined;
    let self: unknown;
    const bound = h.app.task(
      "tasks.bound",
      function (this: unknown, ctx: TaskContext, a: number, b: number) {
        seen = ctx;
        self = this;
        return a + b;
      },
      { bind: true, params: ["a", "b"] },
    );
    await h.worker({ queues: ["bound-q"], name: "w1@test-host" }).start();

    const result = await bound.applyAsync([1], { b: 2, extra: "only in ctx.kwargs" }, {
      queue: "bound-q",
      retries: 3,
      headers: { "x-trace": "abc" },
      parentId: "parent-1",
      rootId: "root-1",
      group: "group-1",
    });
    assert.equal(await result.get({ timeout: 5 }), 3);
    assert.ok(seen);
    assert.equal(seen.id, result.id);
    assert.equal(seen.name, "tasks.bound");
    assert.deepEqual(seen.args, [1]);
    assert.deepEqual(seen.kwargs, { b: 2, extra: "only in ctx.kwargs" });
    assert.equal(seen.retries, 3);
    assert.equal(seen.headers["x-trace"], "abc");
    assert.equal(seen.headers.task, "tasks.bound");
    assert.equal(seen.headers.id, result.id);
    assert.ok(seen.signal instanceof AbortSignal);
    assert.equal(seen.signal.aborted, false);
    assert.equal(seen.queue, "bound-q");
    assert.equal(seen.hostname, "w1@test-host");
    assert.equal(seen.parentId, "parent-1");
    assert.equal(seen.rootId, "root-1");
    assert.equal(seen.group, "group-1");
    assert.equal(seen.app, h.app);
    assert.equal(self, seen, "`this` is the context too");
  } finally {
    await h.close();
  }
});

Deno.test("worker: concurrency 3 runs at most 3 tasks and holds at most 3 unacked messages", async () => {
  const h = await harness("w-concurrency");
  try {
    const gates: Gate[] = [];
    let running = 0;
    let maxRunning = 0;
    const unackedSeen: number[] = [];
    const slow = h.app.task("tasks.slow", async (i: number) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      unackedSeen.push(h.broker.unackedCount);
      const g = gate();
      gates.push(g);
      await g.promise;
      running--;
      return i;
    });
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await slow.delay(i));
    const worker = h.worker({ concurrency: 3 });
    await worker.start();

    for (let released = 0; released < 10; released++) {
      const expected = Math.min(3, 10 - released);
      await waitFor(() => running === expected && gates.length === released + expected, {
        message: `${expected} tasks running after ${released} finished`,
      });
      assert.equal(h.broker.unackedCount, expected, "one unacked message per running task");
      assert.equal(await h.broker.queueSize("celery"), 10 - released - expected);
      assert.equal(worker.pool.active, expected);
      assert.equal(worker.activeIds.length, expected);
      gates[released]!.resolve();
    }
    const values = await Promise.all(results.map((r) => r.get({ timeout: 5 })));
    assert.deepEqual(values, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(maxRunning, 3);
    assert.ok(unackedSeen.every((n) => n <= 3), `unacked while running: ${unackedSeen}`);
    await waitFor(() => h.broker.unackedCount === 0);
  } finally {
    await h.close();
  }
});

Deno.test("worker: acks late by default: unacked while the task runs, acked after", async () => {
  const h = await harness("w-acks-late");
  try {
    const g = gate();
    let started = false;
    const task = h.app.task("tasks.late", async () => {
      started = true;
      await g.promise;
      return "done";
    });
    await h.worker().start();
    const result = await task.delay();
    await waitFor(() => started);
    assert.equal(h.broker.unackedCount, 1);
    assert.equal(await h.broker.queueSize("celery"), 0);
    g.resolve();
    assert.equal(await result.get({ timeout: 5 }), "done");
    await waitFor(() => h.broker.unackedCount === 0, { message: "acked after the task" });
    assert.equal(await h.broker.queueSize("celery"), 0);
  } finally {
    await h.close();
  }
});

Deno.test("worker: acksLate: false acks before the task runs; task options override", async () => {
  const h = await harness("w-acks-early");
  try {
    const seen: Record<string, number> = {};
    const early = h.app.task("tasks.early", () => {
      seen.early = h.broker.unackedCount;
    });
    const forcedLate = h.app.task("tasks.forced_late", () => {
      seen.forcedLate = h.broker.unackedCount;
    }, { acksLate: true });
    await h.worker({ acksLate: false }).start();
    await (await early.delay()).get({ timeout: 5 });
    await (await forcedLate.delay()).get({ timeout: 5 });
    assert.equal(seen.early, 0, "acked on receipt");
    assert.equal(seen.forcedLate, 1, "the task's acksLate: true wins");
    await waitFor(() => h.broker.unackedCount === 0);
  } finally {
    await h.close();
  }

  const h2 = await harness("w-acks-early-task");
  try {
    let unacked = -1;
    const early = h2.app.task("tasks.early", () => {
      unacked = h2.broker.unackedCount;
    }, { acksLate: false });
    await h2.worker().start();
    await (await early.delay()).get({ timeout: 5 });
    assert.equal(unacked, 0, "the task's acksLate: false wins over the worker's default");
  } finally {
    await h2.close();
  }
});

Deno.test("worker: acks early: a cold shutdown does not requeue (at-most-once, as Celery)", async () => {
  const h = await harness("w-acks-early-cold");
  try {
    let ctx: TaskContext | undefined;
    const task = h.app.task("tasks.wait", (c: TaskContext) => {
      ctx = c;
      return untilAborted(c);
    }, { bind: true });
    const worker = h.worker({ acksLate: false });
    await worker.start();
    const result = await task.delay();
    await waitFor(() => ctx);
    assert.equal(h.broker.unackedCount, 0);
    await worker.terminate();
    assert.equal(ctx!.signal.aborted, true);
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.equal(h.broker.unackedCount, 0);
    assert.equal(await result.state, "PENDING");
  } finally {
    await h.close();
  }
});

Deno.test("worker: unknown task ⇒ FAILURE NotRegistered, dead letter with raw and reason", async () => {
  const h = await harness("w-unknown");
  try {
    const worker = h.worker();
    await worker.start();
    const result = await h.app.sendTask("tasks.nope", [1, 2]);
    const err = await taskFailure(result.get({ timeout: 5 }));
    assert.equal(err.state, "FAILURE");
    assert.equal(err.excType, "NotRegistered");
    assert.equal(err.excModule, "celery.exceptions");
    assert.deepEqual(err.excMessage, ["tasks.nope"]);

    const dead = await waitFor(async () => {
      const d = await h.broker.deadLetters();
      return d.length === 1 && d;
    }, { message: "one dead letter" });
    assert.equal(dead[0]!.queue, "celery");
    assert.match(dead[0]!.reason, /unregistered task of type 'tasks\.nope'/);
    assert.ok(dead[0]!.reason.includes(result.id));
    const raw = JSON.parse(dead[0]!.raw);
    assert.equal(raw.headers.id, result.id);
    assert.equal(raw.headers.task, "tasks.nope");
    assert.deepEqual(JSON.parse(Buffer.from(raw.body, "base64").toString("utf8")).slice(0, 2), [
      [1, 2],
      {},
    ]);
    assert.equal(worker.counters.rejected, 1);
    assert.equal(worker.counters.processed, 0);
    assert.equal(h.broker.unackedCount, 0);
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.ok(
      h.logs.some((l) => /ERROR.*Received unregistered task of type 'tasks\.nope'/.test(l)),
      h.logs.join("\n"),
    );
  } finally {
    await h.close();
  }
});

Deno.test("worker: malformed messages are dead-lettered, never lost, FAILURE when they had an id", async () => {
  const h = await harness("w-malformed");
  try {
    const ok = h.app.task("tasks.ok", (x: number) => x);
    const base = (id: string): TransportMessage =>
      encodeTaskMessage({ id, task: "tasks.ok", args: [1], origin: "test" }, new Date());

    const noId = base("no-id");
    delete noId.headers.id;
    const noTask = base("no-task");
    delete noTask.headers.task;
    const twoElements = base("two-elements");
    twoElements.body = encodeJsonBody([[1], {}]);
    const badJson = base("bad-json");
    badJson.body = new TextEncoder().encode('[[1], {}, {"callbacks": ');
    const pickle = base("pickle");
    pickle.contentType = "application/x-python-serialize";
    pickle.body = new Uint8Array([0x80, 0x04, 0x95, 0x00, 0x2e]);
    const malformed = [noId, noTask, twoElements, badJson, pickle];
    for (const m of malformed) {
      await h.broker.publish(m, { exchange: "", routingKey: "celery" });
    }
    const good = await ok.delay(7);

    const worker = h.worker();
    await worker.start();
    assert.equal(await good.get({ timeout: 5 }), 7, "a valid message after them still runs");
    const dead = await waitFor(async () => {
      const d = await h.broker.deadLetters();
      return d.length === malformed.length && d;
    }, { message: "every malformed message dead-lettered" });
    assert.equal(worker.counters.rejected, malformed.length);

    // Each raw message is kept byte for byte (body included).
    const bodies = new Set(dead.map((d) => JSON.parse(d.raw).body as string));
    for (const m of malformed) {
      assert.ok(bodies.has(Buffer.from(m.body).toString("base64")), "raw body kept");
    }
    for (const d of dead) {
      assert.equal(d.queue, "celery");
      assert.match(d.reason, /invalid message from queue 'celery'/);
    }

    for (const id of ["no-task", "two-elements", "bad-json", "pickle"]) {
      const err = await taskFailure(h.app.asyncResult(id).get({ timeout: 5 }));
      assert.equal(err.excType, "InvalidTaskError", id);
      assert.equal(err.excModule, "celery.exceptions", id);
    }
    assert.match(
      String((await taskFailure(h.app.asyncResult("pickle").get())).excMessage[0]),
      /application\/x-python-serialize/,
    );
    assert.equal(await h.app.asyncResult("no-id").state, "PENDING", "no id: no result");

    assert.equal(h.broker.unackedCount, 0);
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.equal(
      h.logs.filter((l) => /ERROR.*Received invalid message from queue 'celery'/.test(l)).length,
      malformed.length,
    );
  } finally {
    await h.close();
  }
});

Deno.test("worker: an expired message ⇒ REVOKED ['expired'], never runs, acked", async () => {
  const h = await harness("w-expired");
  try {
    let ran = false;
    const task = h.app.task("tasks.expiring", () => {
      ran = true;
    });
    const result = await task.applyAsync([], {}, { expires: new Date(Date.now() - 1000) });
    const worker = h.worker();
    await worker.start();
    const err = await taskFailure(result.get({ timeout: 5 }));
    assert.equal(err.state, "REVOKED");
    assert.equal(err.excType, "TaskRevokedError");
    assert.deepEqual(err.excMessage, ["expired"]);
    assert.equal(await result.state, "REVOKED");
    assert.equal(ran, false);
    await waitFor(() => h.broker.unackedCount === 0);
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.equal(worker.counters.processed, 0);
    assert.ok(
      h.logs.some((l) => /Discarding revoked task: tasks\.expiring\[.*\(expired\)/.test(l)),
    );
  } finally {
    await h.close();
  }
});

Deno.test("worker: an ETA message that expires while held is revoked, not run", async () => {
  const h = await harness("w-eta-expires");
  try {
    let ran = false;
    const task = h.app.task("tasks.late_and_expiring", () => {
      ran = true;
    });
    await h.worker().start();
    const now = Date.now();
    const result = await task.applyAsync([], {}, {
      eta: new Date(now + 150),
      expires: new Date(now + 50),
    });
    const err = await taskFailure(result.get({ timeout: 5 }));
    assert.equal(err.state, "REVOKED");
    assert.deepEqual(err.excMessage, ["expired"]);
    assert.equal(ran, false);
    await waitFor(() => h.broker.unackedCount === 0);
  } finally {
    await h.close();
  }
});

Deno.test("worker: an ETA in the near future is held, then run no sooner than its time", async () => {
  const h = await harness("w-eta");
  try {
    let ranAt = 0;
    const task = h.app.task("tasks.later", () => {
      ranAt = Date.now();
      return "on time";
    });
    const worker = h.worker();
    await worker.start();
    const eta = new Date(Date.now() + 200);
    const result = await task.applyAsync([], {}, { eta });
    await waitFor(() => worker.scheduledIds.includes(result.id), { message: "held" });
    assert.equal(ranAt, 0);
    assert.equal(h.broker.unackedCount, 1, "held messages stay reserved (unacked)");
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.deepEqual(worker.activeIds, []);
    assert.equal(await result.get({ timeout: 5 }), "on time");
    assert.ok(ranAt >= eta.getTime(), `ran ${eta.getTime() - ranAt} ms early`);
    assert.deepEqual(worker.scheduledIds, []);
    await waitFor(() => h.broker.unackedCount === 0);
    assert.ok(h.logs.some((l) => l.includes(`received (eta ${eta.toISOString()})`)));
  } finally {
    await h.close();
  }
});

Deno.test("worker: an ETA 30 days ahead (> 2^31-1 ms) is not run early (fake clock)", async () => {
  const clock = FakeTimers.install({
    now: Date.now(),
    toFake: ["setTimeout", "clearTimeout", "Date"],
  });
  const h = await harness("w-eta-long");
  try {
    let ran = false;
    const task = h.app.task("tasks.next_month", () => {
      ran = true;
      return 1;
    });
    const worker = h.worker();
    await worker.start();
    const days30 = 30 * 24 * 3600 * 1000;
    const result = await task.applyAsync([], {}, { countdown: days30 / 1000 });
    await waitFor(() => worker.scheduledIds.length === 1, { message: "held" });

    clock.tick(1);
    await nextMacrotask();
    assert.equal(ran, false, "a plain setTimeout overflows and fires at once");
    clock.tick(MAX_TIMEOUT_MS);
    await nextMacrotask();
    assert.equal(ran, false, "not after 2^31-1 ms either");
    clock.tick(days30 - MAX_TIMEOUT_MS - 2);
    await nextMacrotask();
    assert.equal(ran, false, "not 1 ms early");
    assert.deepEqual(worker.scheduledIds, [result.id]);

    clock.tick(1);
    await waitFor(() => ran, { message: "run at its ETA" });
    await waitFor(async () => (await result.state) === "SUCCESS");
  } finally {
    await h.close();
    clock.uninstall();
  }
});

Deno.test("worker: a warm stop gives a held ETA message back to its queue", async () => {
  const h = await harness("w-eta-stop");
  try {
    let ran = false;
    const task = h.app.task("tasks.later", () => {
      ran = true;
    });
    const worker = h.worker();
    await worker.start();
    const result = await task.applyAsync([], {}, { countdown: 3600 });
    await waitFor(() => worker.scheduledIds.length === 1);
    await worker.stop();
    assert.equal(ran, false);
    assert.deepEqual(worker.scheduledIds, []);
    assert.equal(await h.broker.queueSize("celery"), 1);
    assert.equal(h.broker.unackedCount, 0);
    assert.ok(h.logs.some((l) => l.includes("Restored 1 reserved message(s)")));

    const [again] = await h.broker.fetch(["celery"], { max: 1, timeoutMs: 0 });
    assert.ok(again);
    assert.equal(again.message!.headers.id, result.id);
    assert.equal(again.redelivered, true);
    await again.ack();
  } finally {
    await h.close();
  }
});

Deno.test("worker: a warm stop waits for running tasks, which complete and are acked", async () => {
  const h = await harness("w-warm");
  try {
    const gates: Gate<string>[] = [];
    const task = h.app.task("tasks.gated", async () => {
      const g = gate<string>();
      gates.push(g);
      return await g.promise;
    });
    const worker = h.worker({ concurrency: 3 });
    await worker.start();
    const results = [await task.delay(), await task.delay(), await task.delay()];
    await waitFor(() => gates.length === 3);

    let stopped = false;
    const stopping = worker.stop().then(() => stopped = true);
    let doneResolved = false;
    void worker.done.then(() => doneResolved = true);
    const late = await task.delay(); // sent after the stop: must not be fetched
    await nextMacrotask();
    assert.equal(stopped, false, "stop() waits for the running tasks");
    assert.equal(doneResolved, false);
    gates.forEach((g, i) => g.resolve(`r${i}`));
    await stopping;
    await worker.done;
    assert.equal(stopped, true);
    assert.deepEqual(
      await Promise.all(results.map((r) => r.get({ timeout: 1 }))),
      ["r0", "r1", "r2"],
    );
    assert.equal(h.broker.unackedCount, 0, "all acked");
    assert.equal(gates.length, 3, "the late message never ran");
    assert.equal(await h.broker.queueSize("celery"), 1);
    assert.equal(await late.state, "PENDING");
    assert.ok(h.logs.at(-1)!.endsWith("stopped."));
  } finally {
    await h.close();
  }
});

/** A memory broker whose fetch ignores the abort signal, like a network fetch in flight. */
class DeafBroker extends MemoryBroker {
  override fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    return super.fetch(queues, { ...options, signal: undefined });
  }
}

for (const kind of ["memory", "in-flight fetch"] as const) {
  Deno.test(`worker: a message fetched as the stop begins is requeued, not started (${kind})`, async () => {
    const h = await harness("w-stop-race", {
      broker: kind === "memory" ? undefined : new DeafBroker(uniqueName("deaf")),
      backend: new MemoryBackend(),
    });
    try {
      let ran = false;
      h.app.task("tasks.t", () => {
        ran = true;
      });
      const worker = h.worker();
      await worker.start();
      // Let the consumer block in fetch, then publish and stop in the same tick: the fetch
      // returns the message after the stop began.
      await nextMacrotask();
      const message = encodeTaskMessage(
        { id: "raced", task: "tasks.t", origin: "test" },
        new Date(),
      );
      void h.broker.publish(message, { exchange: "", routingKey: "celery" });
      await worker.stop();
      assert.equal(ran, false, "a warm shutdown starts nothing new");
      assert.equal(await h.broker.queueSize("celery"), 1, "the reserved message is back");
      assert.equal(h.broker.unackedCount, 0);
      const [again] = await h.broker.fetch(["celery"], { max: 1, timeoutMs: 0 });
      assert.equal(again!.message!.headers.id, "raced");
      await again!.ack();
    } finally {
      await h.close();
    }
  });
}

Deno.test("worker: an ETA that comes due while the consumer winds down is requeued, not run", async () => {
  const h = await harness("w-eta-during-stop", {
    broker: new DeafBroker(uniqueName("deaf-eta")),
    backend: new MemoryBackend(),
  });
  try {
    let ran = false;
    const task = h.app.task("tasks.soon", () => {
      ran = true;
    });
    // The in-flight fetch keeps the consumer busy for up to 300 ms after stop().
    const worker = h.worker({ fetchTimeoutMs: 300 });
    await worker.start();
    const result = await task.applyAsync([], {}, { eta: new Date(Date.now() + 60) });
    await waitFor(() => worker.scheduledIds.length === 1);
    await worker.stop();
    assert.equal(ran, false, "due during the shutdown: not started");
    assert.equal(await h.broker.queueSize("celery"), 1);
    assert.equal(h.broker.unackedCount, 0);
    assert.equal(await result.state, "PENDING");
  } finally {
    await h.close();
  }
});

Deno.test("worker: a warm stop past shutdownTimeout goes cold: abort, requeue to the front", async () => {
  const h = await harness("w-warm-timeout");
  try {
    let ctx: TaskContext | undefined;
    const task = h.app.task("tasks.stuck", (c: TaskContext) => {
      ctx = c;
      return untilAborted(c);
    }, { bind: true });
    const other = h.app.task("tasks.other", () => 1);
    const worker = h.worker({ concurrency: 1, shutdownTimeout: 0.05 });
    await worker.start();
    const stuck = await task.delay();
    await waitFor(() => ctx, { message: "the stuck task started" });
    const next = await other.delay(); // waits in the queue behind it (the pool is full)
    assert.equal(await h.broker.queueSize("celery"), 1);

    await worker.stop();
    assert.equal(ctx!.signal.aborted, true, "ctx.signal is aborted");
    assert.match(String(ctx!.signal.reason), /cold shutdown/);
    assert.equal(h.broker.unackedCount, 0, "not left unacked");
    assert.equal(await h.broker.queueSize("celery"), 2, "requeued, not lost");
    assert.equal(await stuck.state, "PENDING", "no result for an abandoned task");
    assert.equal(worker.counters.processed, 0);
    assert.ok(h.logs.some((l) => /Tasks still running after 0\.05 s: going cold/.test(l)));
    assert.ok(h.logs.some((l) => l.includes("Requeued 1 running task(s)")));

    const deliveries = await h.broker.fetch(["celery"], { max: 2, timeoutMs: 0 });
    assert.deepEqual(deliveries.map((d) => d.message!.headers.id), [stuck.id, next.id]);
    assert.equal(deliveries[0]!.redelivered, true, "requeued to the front");
    for (const d of deliveries) await d.ack();
  } finally {
    await h.close();
  }
});

Deno.test("worker: a task that ignores the abort finishes later; nothing is stored or acked", async () => {
  const h = await harness("w-cold-ignore");
  try {
    const g = gate();
    let started = false;
    let finished = false;
    const task = h.app.task("tasks.stubborn", async () => {
      started = true;
      await g.promise;
      finished = true;
      return "late";
    });
    const worker = h.worker();
    await worker.start();
    const result = await task.delay();
    await waitFor(() => started);
    await worker.terminate();
    assert.equal(await h.broker.queueSize("celery"), 1);
    g.resolve();
    await waitFor(() => finished);
    await waitFor(() => worker.pool.active === 0);
    assert.equal(await result.state, "PENDING");
    assert.equal(await h.broker.queueSize("celery"), 1, "the requeued message stays");
    assert.equal(h.broker.unackedCount, 0);
    assert.equal(worker.counters.processed, 0);
  } finally {
    await h.close();
  }
});

Deno.test("worker: terminate() goes cold at once", async () => {
  const h = await harness("w-terminate");
  try {
    const contexts: TaskContext[] = [];
    const task = h.app.task("tasks.wait", (c: TaskContext) => {
      contexts.push(c);
      return untilAborted(c);
    }, { bind: true });
    const worker = h.worker({ concurrency: 2, shutdownTimeout: 600 });
    await worker.start();
    await task.delay();
    await task.delay();
    await waitFor(() => contexts.length === 2);
    const started = performance.now();
    await worker.terminate();
    await worker.done;
    assert.ok(performance.now() - started < 5000, "did not wait for the shutdown timeout");
    assert.ok(contexts.every((c) => c.signal.aborted));
    assert.equal(await h.broker.queueSize("celery"), 2);
    assert.equal(h.broker.unackedCount, 0);
  } finally {
    await h.close();
  }
});

Deno.test("worker: burst mode drains the queues, then resolves done", async () => {
  const h = await harness("w-burst");
  try {
    const square = h.app.task("tasks.square", async (x: number) => {
      await Promise.resolve();
      return x * x;
    });
    const results = [];
    for (let i = 0; i < 7; i++) results.push(await square.delay(i));
    const worker = h.worker({ burst: true, concurrency: 2, fetchTimeoutMs: 10 });
    await worker.start();
    await worker.done;
    assert.deepEqual(
      await Promise.all(results.map((r) => r.get({ timeout: 1 }))),
      [0, 1, 4, 9, 16, 25, 36],
    );
    assert.equal(worker.counters.processed, 7);
    assert.deepEqual(worker.counters.total, { "tasks.square": 7 });
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.equal(h.broker.unackedCount, 0);
    assert.ok(h.logs.some((l) => l.includes("Burst mode: queues are empty, stopping")));
  } finally {
    await h.close();
  }

  const empty = await harness("w-burst-empty");
  try {
    const worker = empty.worker({ burst: true, fetchTimeoutMs: 10 });
    await worker.start();
    await worker.done;
    assert.equal(worker.counters.processed, 0);
  } finally {
    await empty.close();
  }
});

Deno.test("worker: a result that cannot be serialized ⇒ FAILURE EncodeError, message acked", async () => {
  const h = await harness("w-encode");
  try {
    const fn = h.app.task("tasks.returns_function", () => () => 1);
    const cycle = h.app.task("tasks.returns_cycle", () => {
      const o: Record<string, unknown> = { a: 1 };
      o.self = o;
      return o;
    });
    const nested = h.app.task("tasks.returns_nested_function", () => ({ ok: true, cb: () => 1 }));
    const symbol = h.app.task("tasks.returns_symbol", () => Symbol("s"));
    await h.worker().start();
    for (const task of [fn, cycle, nested, symbol]) {
      const result = await task.delay();
      const err = await taskFailure(result.get({ timeout: 5 }));
      assert.equal(err.state, "FAILURE", task.name);
      assert.equal(err.excType, "EncodeError", task.name);
      assert.equal(err.excModule, "kombu.exceptions", task.name);
      assert.match(String(err.excMessage[0]), /Cannot serialize the result/);
    }
    await waitFor(() => h.broker.unackedCount === 0, { message: "acked" });
    assert.equal(await h.broker.queueSize("celery"), 0);
    assert.equal(
      h.logs.filter((l) => /ERROR.*raised unexpected: EncodeError\('Cannot serialize/.test(l))
        .length,
      4,
    );
    assert.ok(!h.logs.some((l) => / succeeded in /.test(l)), "not logged as succeeded");
  } finally {
    await h.close();
  }
});

Deno.test("worker: the succeeded log line never blocks the ack (cycle not stored, huge value)", async () => {
  const h = await harness("w-log-repr");
  try {
    const cycle = h.app.task("tasks.cycle_ignored", () => {
      const o: Record<string, unknown> = {};
      o.self = o;
      return o;
    }, { ignoreResult: true });
    const huge = h.app.task("tasks.huge", () => "x".repeat(5000));
    await h.worker().start();
    await cycle.delay();
    assert.equal((await (await huge.delay()).get({ timeout: 5 })).length, 5000);
    await waitFor(() =>
      h.broker.unackedCount === 0 && h.logs.some((l) => /cycle_ignored.*succeeded/.test(l))
    );
    assert.equal(await h.broker.queueSize("celery"), 0);
    const line = h.logs.find((l) => /tasks\.huge\[.*succeeded/.test(l))!;
    assert.ok(line.length < 1200, `log line cut as Celery's saferepr (${line.length} chars)`);
    assert.ok(line.endsWith("..."));
  } finally {
    await h.close();
  }
});

Deno.test("worker: results read back as they travel over the wire (JSON)", async () => {
  const h = await harness("w-wire");
  try {
    const when = h.app.task("tasks.when", () => ({ at: new Date(Date.UTC(2030, 0, 1)) }));
    const big = h.app.task("tasks.big", () => 2n ** 64n);
    await h.worker().start();
    assert.deepEqual(await (await when.delay()).get({ timeout: 5 }), {
      at: "2030-01-01T00:00:00.000Z",
    });
    assert.equal(await (await big.delay()).get({ timeout: 5 }), 2n ** 64n);
  } finally {
    await h.close();
  }
});

/** A memory backend whose `store` fails the first `failures` times. */
class FlakyBackend extends MemoryBackend {
  failures: number;
  attempts = 0;
  constructor(failures: number) {
    super();
    this.failures = failures;
  }
  override store(meta: ResultMeta): Promise<void> {
    this.attempts++;
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error("backend down"));
    }
    return super.store(meta);
  }
}

Deno.test("worker: a backend whose store throws ⇒ the message is requeued, not acked", async () => {
  const backend = new FlakyBackend(Infinity);
  const h = await harness("w-backend-down", { backend });
  try {
    let runs = 0;
    const task = h.app.task("tasks.t", () => {
      runs++;
      return 1;
    });
    const worker = h.worker({ concurrency: 1 });
    await worker.start();
    await task.delay();
    // Polling needs timers to run: this also checks that the worker does not starve the
    // event loop by re-running the requeued message in a tight microtask loop.
    await waitFor(() => runs >= 1 && backend.attempts >= 1, { timeoutMs: 3000 });
    await worker.stop();
    assert.equal(await h.broker.queueSize("celery"), 1, "requeued");
    assert.equal(h.broker.unackedCount, 0, "not acked, not left unacked");
    assert.ok(runs < 50, `ran ${runs} times: the worker must back off while the backend is down`);
    assert.ok(
      h.logs.some((l) => /ERROR.*Cannot store result of task .* \(SUCCESS\): backend down/.test(l)),
    );
    assert.ok(h.logs.some((l) => /WARNING.*Result backend is failing; fetching again in/.test(l)));
  } finally {
    await h.close();
  }
});

Deno.test("worker: once the backend is back, the requeued task runs again and is stored", async () => {
  const backend = new FlakyBackend(1);
  const h = await harness("w-backend-flaky", { backend });
  try {
    let runs = 0;
    const task = h.app.task("tasks.t", () => ++runs);
    await h.worker({ concurrency: 1 }).start();
    const result = await task.delay();
    assert.equal(await result.get({ timeout: 5 }), 2, "ran twice: at-least-once");
    await waitFor(() => h.broker.unackedCount === 0);
    assert.equal(await h.broker.queueSize("celery"), 0);
  } finally {
    await h.close();
  }
});

/** A memory broker whose fetch fails the first `failures` times. */
class FlakyBroker extends MemoryBroker {
  failures: number;
  constructor(failures: number) {
    super(uniqueName("flaky"));
    this.failures = failures;
  }
  override fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error("connection reset"));
    }
    return super.fetch(queues, options);
  }
}

Deno.test("worker: fetch errors are logged and retried; a stop during the back-off is clean", async () => {
  const broker = new FlakyBroker(2);
  const h = await harness("w-fetch-error", { broker, backend: new MemoryBackend() });
  try {
    const task = h.app.task("tasks.t", () => "ok");
    await h.worker().start();
    const result = await task.delay();
    assert.equal(await result.get({ timeout: 5 }), "ok");
    assert.equal(
      h.logs.filter((l) => /ERROR.*Cannot fetch from .*connection reset; trying again/.test(l))
        .length,
      2,
    );
  } finally {
    await h.close();
  }

  // Stopping while the consumer sleeps in its back-off must not leave the back-off timer
  // pending (it would keep the process alive for up to 5 s after stop()).
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  const down = new FlakyBroker(Infinity);
  const h2 = await harness("w-fetch-down", { broker: down, backend: new MemoryBackend() });
  try {
    const worker = h2.worker();
    await worker.start();
    await waitFor(() => h2.logs.some((l) => l.includes("Cannot fetch from")));
    assert.equal(clock.countTimers(), 1, "sleeping in the back-off");
    await worker.stop();
    assert.equal(clock.countTimers(), 0, "no timer left after stop()");
  } finally {
    await h2.close();
    clock.uninstall();
  }
});

Deno.test("worker: log lines for received, succeeded, raised unexpected, unregistered", async () => {
  const h = await harness("w-logs");
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const boom = h.app.task("tasks.boom", (): never => {
      throw new Error("kaput");
    });
    const worker = h.worker({ name: "logs@host" });
    await worker.start();
    const a = await add.delay(2, 3);
    await a.get({ timeout: 5 });
    const b = await boom.delay();
    await rejection(b.get({ timeout: 5 }));
    const c = await h.app.sendTask("tasks.nope");
    await rejection(c.get({ timeout: 5 }));
    await worker.stop();

    const line = (re: RegExp) => {
      const found = h.logs.find((l) => re.test(l));
      assert.ok(found, `no log line matches ${re}:\n${h.logs.join("\n")}`);
      return found;
    };
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const prefix = String.raw`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: `;
    line(new RegExp(`${prefix}INFO/MainProcess\\] logs@host ready\\.$`));
    line(new RegExp(`${prefix}INFO/MainProcess\\] Task tasks\\.add\\[${esc(a.id)}\\] received$`));
    line(
      new RegExp(
        `${prefix}INFO/MainProcess\\] Task tasks\\.add\\[${
          esc(a.id)
        }\\] succeeded in \\d+\\.\\d{6}s: 5$`,
      ),
    );
    line(
      new RegExp(
        `${prefix}ERROR/MainProcess\\] Task tasks\\.boom\\[${
          esc(b.id)
        }\\] raised unexpected: Error\\('kaput'\\)`,
      ),
    );
    line(
      new RegExp(
        `${prefix}ERROR/MainProcess\\] Received unregistered task of type 'tasks\\.nope' \\(id ${
          esc(c.id)
        }\\)`,
      ),
    );
    line(/INFO\/MainProcess\] logs@host stopped\.$/);
  } finally {
    await h.close();
  }
});

Deno.test("worker: ignoreResult stores nothing and still acks", async () => {
  const h = await harness("w-ignore");
  try {
    let ran = 0;
    const quiet = h.app.task("tasks.quiet", () => ++ran, { ignoreResult: true });
    const loud = h.app.task("tasks.loud", () => ++ran);
    await h.worker().start();
    const q = await quiet.delay();
    const l = await loud.applyAsync([], {}, { ignoreResult: true });
    await waitFor(() => ran === 2 && h.broker.unackedCount === 0);
    assert.equal(await q.state, "PENDING");
    assert.equal(await l.state, "PENDING");
  } finally {
    await h.close();
  }
});

Deno.test("worker: lifecycle: start twice throws, stop before start, options checked", async () => {
  const h = await harness("w-lifecycle");
  try {
    assert.throws(() => h.worker({ concurrency: 0 }), RangeError);
    assert.throws(() => h.worker({ shutdownTimeout: -1 }), RangeError);
    const idle = h.worker();
    await idle.stop(); // never started: nothing to do
    const worker = h.worker({ queues: ["a", "b"] });
    assert.deepEqual(worker.queues, ["a", "b"]);
    assert.match(worker.name, /^celeriac@/);
    assert.equal(worker.uptimeMs, 0);
    await worker.start();
    await assert.rejects(worker.start(), /already started/);
    assert.equal(await h.broker.queueSize("a"), 0);
    await worker.stop();
    await worker.stop(); // twice is fine
    await worker.done;
  } finally {
    await h.close();
  }
});

Deno.test("worker: consumes several queues", async () => {
  const h = await harness("w-queues");
  try {
    const t = h.app.task("tasks.where", (ctx: TaskContext) => ctx.queue, { bind: true });
    await h.worker({ queues: ["q1", "q2"] }).start();
    const a = await t.applyAsync([], {}, { queue: "q1" });
    const b = await t.applyAsync([], {}, { queue: "q2" });
    assert.equal(await a.get({ timeout: 5 }), "q1");
    assert.equal(await b.get({ timeout: 5 }), "q2");
  } finally {
    await h.close();
  }
});

Deno.test("worker: SIGTERM starts a warm shutdown, a second signal goes cold", {
  ignore: Deno.build.os === "windows",
}, async () => {
  const h = await harness("w-signals");
  try {
    let ctx: TaskContext | undefined;
    const task = h.app.task("tasks.wait", (c: TaskContext) => {
      ctx = c;
      return untilAborted(c);
    }, { bind: true });
    const worker: Worker = h.worker({ handleSignals: true, shutdownTimeout: 600 });
    await worker.start();
    await task.delay();
    await waitFor(() => ctx);
    Deno.kill(Deno.pid, "SIGTERM");
    await waitFor(() => h.logs.some((l) => l.includes("Warm shutdown")));
    assert.equal(ctx!.signal.aborted, false, "warm: the running task goes on");
    Deno.kill(Deno.pid, "SIGTERM");
    await worker.done;
    assert.ok(h.logs.some((l) => l.includes("Cold shutdown")));
    assert.equal(ctx!.signal.aborted, true);
    assert.equal(await h.broker.queueSize("celery"), 1);
  } finally {
    await h.close();
  }
});

Deno.test("worker: two deliveries of one task id run side by side; each is tracked until it ends", async () => {
  const h = await harness("w-same-id");
  try {
    const gates: Gate[] = [];
    const aborted: unknown[] = [];
    const slow = h.app.task("tasks.slow", async (ctx: TaskContext) => {
      const g = gate();
      gates.push(g);
      ctx.signal.addEventListener("abort", () => {
        aborted.push(ctx.signal.reason);
        g.resolve();
      }, { once: true });
      await g.promise;
      return "done";
    }, { bind: true });
    // A redelivered message runs again under the same id while the first run goes on.
    await slow.applyAsync([], {}, { taskId: "twice" });
    await slow.applyAsync([], {}, { taskId: "twice" });
    const worker = h.worker({ concurrency: 2 });
    await worker.start();
    await waitFor(() => gates.length === 2, { message: "both deliveries running" });
    assert.deepEqual(worker.activeIds, ["twice", "twice"]);
    assert.equal(worker.active.length, 2);
    gates[0]!.resolve();
    await waitFor(() => worker.pool.active === 1, { message: "the first run ended" });
    assert.deepEqual(worker.activeIds, ["twice"], "the second run is still listed");
    assert.deepEqual(worker.revoke(["twice"], { terminate: true }), ["twice"]);
    await waitFor(() => aborted.length === 1, { message: "the second run aborted" });
    await waitFor(() => worker.pool.active === 0 && worker.activeIds.length === 0);
  } finally {
    await h.close();
  }
});
