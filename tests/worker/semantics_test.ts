/**
 * Execution semantics on the memory broker: retries, rate limits, time limits, revoke,
 * the held-message bound.
 */

import assert from "node:assert/strict";
import { MaxRetriesExceededError, Retry, TaskFailedError } from "../../src/errors.ts";
import { decodeTaskMessage } from "../../src/protocol/task.ts";
import type { TaskContext } from "../../src/task.ts";
import { planRetry } from "../../src/worker/retry.ts";
import { Worker } from "../../src/worker/worker.ts";
import { harness } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

Deno.test("retry: ctx.retry sends the same id with retries + 1, stores RETRY, then succeeds", async () => {
  const h = await harness("retry-basic");
  try {
    const seen: { retries: number; parentId: string | null }[] = [];
    const states: string[] = [];
    const flaky = h.app.task("tasks.flaky", (ctx: TaskContext, x: number) => {
      seen.push({ retries: ctx.retries, parentId: ctx.parentId });
      if (ctx.retries < 2) {
        ctx.retry({ countdown: 0.01, exc: new TypeError(`attempt ${ctx.retries}`) });
      }
      return x * 2;
    }, { bind: true });
    const worker = h.worker();
    worker.on("retried", () => states.push("retried"));
    await worker.start();
    const result = await flaky.delay(21);
    assert.equal(await result.get({ timeout: 5 }), 42);
    assert.deepEqual(seen.map((s) => s.retries), [0, 1, 2]);
    assert.deepEqual(
      seen.slice(1).map((s) => s.parentId),
      [result.id, result.id],
      "parent_id = own id",
    );
    assert.deepEqual(states, ["retried", "retried"]);
    await waitFor(() => h.broker.unackedCount === 0, { message: "every message acked" });
    assert.ok(
      h.logs.some((l) =>
        /tasks\.flaky\[.*\] retry: Retry in 0\.01s: TypeError\('attempt 0'\)/.test(l)
      ),
    );
  } finally {
    await h.close();
  }
});

Deno.test("retry: the RETRY state holds the causing error while the retry waits", async () => {
  const h = await harness("retry-state");
  try {
    const task = h.app.task("tasks.later", (ctx: TaskContext) => {
      if (ctx.retries === 0) ctx.retry({ countdown: 60, exc: new TypeError("not yet") });
      return "done";
    }, { bind: true });
    const worker = h.worker();
    await worker.start();
    const result = await task.delay();
    await waitFor(async () => (await result.state) === "RETRY");
    const meta = await result.meta();
    assert.deepEqual(meta?.result, {
      exc_type: "TypeError",
      exc_message: ["not yet"],
      exc_module: "builtins",
    });
    // The retry message (same id, retries = 1) is held for its ETA.
    await waitFor(() => worker.held.some((x) => x.id === result.id && x.message.retries === 1));
  } finally {
    await h.close();
  }
});

Deno.test("retry: exhausting maxRetries fails with the last error, or MaxRetriesExceededError", async () => {
  const h = await harness("retry-max");
  try {
    const withExc = h.app.task("tasks.always_exc", (ctx: TaskContext) => {
      ctx.retry({ countdown: 0, exc: new TypeError("still broken") });
    }, { bind: true, maxRetries: 2 });
    const bare = h.app.task("tasks.always_bare", (): never => {
      throw new Retry({ countdown: 0 });
    }, { maxRetries: 1 });
    const runs: string[] = [];
    const worker = h.worker();
    worker.on("started", ({ message }) => runs.push(`${message.task}:${message.retries}`));
    await worker.start();
    const a = await withExc.delay();
    await assert.rejects(() => a.get({ timeout: 5 }), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.excType, "TypeError");
      assert.deepEqual(err.excMessage, ["still broken"]);
      return true;
    });
    const b = await bare.delay();
    await assert.rejects(() => b.get({ timeout: 5 }), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.excType, "MaxRetriesExceededError");
      assert.equal(err.excModule, "celery.exceptions");
      return true;
    });
    assert.deepEqual(runs.filter((r) => r.startsWith("tasks.always_exc")), [
      "tasks.always_exc:0",
      "tasks.always_exc:1",
      "tasks.always_exc:2",
    ]);
  } finally {
    await h.close();
  }
});

Deno.test("retry: autoretryFor retries matching errors with capped backoff; others fail at once", async () => {
  const h = await harness("retry-auto");
  try {
    let calls = 0;
    const auto = h.app.task("tasks.auto", () => {
      calls++;
      if (calls < 3) throw new TypeError("transient");
      return calls;
    }, { autoretryFor: [TypeError], retryBackoff: 0.01, retryBackoffMax: 0.02 });
    const other = h.app.task("tasks.other", (): never => {
      throw new RangeError("permanent");
    }, { autoretryFor: [TypeError] });
    await h.worker({ random: () => 0.99 }).start();
    assert.equal(await (await auto.delay()).get({ timeout: 5 }), 3);
    await assert.rejects(async () => (await other.delay()).get({ timeout: 5 }), TaskFailedError);
  } finally {
    await h.close();
  }
});

Deno.test("retry: backoff plan is exponential, capped and jittered by the injected random", () => {
  const message = { id: "t", task: "tasks.x", retries: 0 } as never;
  const opts = { autoretryFor: [Error], retryBackoff: true, retryBackoffMax: 8 };
  const countdowns = [0, 1, 2, 3, 4, 5].map((retries) => {
    const plan = planRetry(
      new Error("x"),
      { ...(message as object), retries } as never,
      { ...opts, maxRetries: 10 },
      new Date(0),
      () => 0.999,
    );
    return plan.kind === "retry" ? plan.countdown : -1;
  });
  assert.deepEqual(countdowns, [1, 2, 4, 8, 8, 8]);
  const half = planRetry(
    new Error("x"),
    { ...(message as object), retries: 3 } as never,
    { ...opts, maxRetries: 10 },
    new Date(0),
    () => 0.5,
  );
  assert.equal(half.kind === "retry" && half.countdown, 4);
  const none = planRetry(new Error("x"), message, {}, new Date(0));
  assert.equal(none.kind, "fail");
  const max = planRetry(
    new Retry(),
    { ...(message as object), retries: 3 } as never,
    {},
    new Date(0),
  );
  assert.ok(max.kind === "fail" && max.error instanceof MaxRetriesExceededError);
});

Deno.test("rate limit: a limited task type waits for tokens without blocking other types", async () => {
  const h = await harness("rate");
  try {
    const starts: number[] = [];
    const limited = h.app.task("tasks.limited", () => starts.push(Date.now()), {
      rateLimit: "2/s",
    });
    const free = h.app.task("tasks.free", () => "ok");
    await h.worker({ concurrency: 10 }).start();
    const limitedResults = [];
    for (let i = 0; i < 4; i++) limitedResults.push(await limited.delay());
    const freeResults = [];
    for (let i = 0; i < 4; i++) freeResults.push(await free.delay());
    for (const r of freeResults) assert.equal(await r.get({ timeout: 5 }), "ok");
    // The free tasks finished while at most the first burst (capacity 2) of limited ones ran.
    assert.ok(starts.length <= 2, `limited tasks started: ${starts.length}`);
    for (const r of limitedResults) await r.get({ timeout: 10 });
    // 2/s: the 3rd and 4th start at least ~0.5 s apart from the first pair.
    assert.ok(starts[3]! - starts[0]! >= 900, `spread ${starts[3]! - starts[0]!} ms`);
  } finally {
    await h.close();
  }
});

Deno.test("rate limit: setRateLimit validates Celery rates", async () => {
  const h = await harness("rate-set");
  try {
    const worker = h.worker();
    assert.throws(() => worker.setRateLimit("tasks.x", "fast"), RangeError);
    worker.setRateLimit("tasks.x", "10/m");
    worker.setRateLimit("tasks.x", null);
  } finally {
    await h.close();
  }
});

Deno.test("time limits: soft aborts ctx.signal, hard fails a task that ignores it", async () => {
  const h = await harness("limits");
  try {
    const polite = h.app.task(
      "tasks.polite",
      (ctx: TaskContext) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))
        ),
      {
        bind: true,
        softTimeLimit: 0.05,
      },
    );
    const stubborn = h.app.task("tasks.stubborn", () => new Promise(() => {}), { timeLimit: 0.05 });
    const viaHeader = h.app.task("tasks.header", () => new Promise(() => {}));
    const worker = h.worker({ concurrency: 3 });
    await worker.start();
    const check = async (p: Promise<unknown>, type: string) => {
      await assert.rejects(() => p, (err: unknown) => {
        assert.ok(err instanceof TaskFailedError);
        assert.equal(err.excType, type);
        assert.equal(err.excModule, "billiard.exceptions");
        return true;
      });
    };
    await check((await polite.delay()).get({ timeout: 5 }), "SoftTimeLimitExceeded");
    await check((await stubborn.delay()).get({ timeout: 5 }), "TimeLimitExceeded");
    // Celery's timelimit header [hard, soft] is honoured.
    await check(
      (await viaHeader.applyAsync([], {}, { timeLimit: [0.05, null] })).get({ timeout: 5 }),
      "TimeLimitExceeded",
    );
    await waitFor(() => worker.pool.active === 0, { message: "abandoned runs free their slots" });
    assert.equal(h.broker.unackedCount, 0);
  } finally {
    await h.close();
  }
});

Deno.test("revoke: a revoked id is acked and REVOKED on arrival, never run", async () => {
  const h = await harness("revoke-arrival");
  try {
    let ran = false;
    const task = h.app.task("tasks.victim", () => ran = true);
    const worker = h.worker();
    const revokedIds: string[] = [];
    worker.on("revoked", ({ message }) => revokedIds.push(message.id));
    await worker.start();
    worker.revoke(["doomed"]);
    const result = await task.applyAsync([], {}, { taskId: "doomed" });
    await assert.rejects(() => result.get({ timeout: 5 }), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.state, "REVOKED");
      assert.deepEqual(err.excMessage, ["revoked"]);
      return true;
    });
    assert.equal(ran, false);
    assert.deepEqual(revokedIds, ["doomed"]);
    assert.equal(h.broker.unackedCount, 0);
  } finally {
    await h.close();
  }
});

Deno.test("revoke: a held ETA task is released at once; terminate aborts a running one", async () => {
  const h = await harness("revoke-held");
  try {
    const later = h.app.task("tasks.later", () => "never");
    const slow = h.app.task(
      "tasks.slow",
      (ctx: TaskContext) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))
        ),
      { bind: true },
    );
    const worker = h.worker();
    await worker.start();
    const held = await later.applyAsync([], {}, { countdown: 3600 });
    await waitFor(() => worker.scheduledIds.includes(held.id));
    worker.revoke([held.id]);
    assert.deepEqual(worker.scheduledIds, []);
    await waitFor(async () => (await held.state) === "REVOKED");

    const running = await slow.delay();
    await waitFor(() => worker.activeIds.includes(running.id));
    assert.deepEqual(worker.revoke([running.id], { terminate: true }), [running.id]);
    await assert.rejects(() => running.get({ timeout: 5 }), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.deepEqual(err.excMessage, ["terminated"]);
      return true;
    });
    await waitFor(() => h.broker.unackedCount === 0);
  } finally {
    await h.close();
  }
});

Deno.test("revoke: the revoked set survives a restart through the state file", async () => {
  const dir = await Deno.makeTempDir();
  const stateFile = `${dir}/worker.state`;
  const h = await harness("revoke-state");
  try {
    const first = new Worker(h.app, { stateFile, logLevel: "critical" });
    first.revoke(["a", "b"]);
    await first.revoked.save();
    const second = new Worker(h.app, { stateFile, logLevel: "critical" });
    await second.revoked.load();
    assert.ok(second.revoked.has("a") && second.revoked.has("b"));
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("held bound: beyond maxHeld ETA messages stay in the broker", async () => {
  const h = await harness("held-bound");
  try {
    const task = h.app.task("tasks.eta", () => 1);
    for (let i = 0; i < 5; i++) await task.applyAsync([], {}, { countdown: 3600 });
    const asked: number[] = [];
    const fetch = h.broker.fetch.bind(h.broker);
    h.broker.fetch = (queues, options) => {
      asked.push(options.max);
      return fetch(queues, options);
    };
    const worker = h.worker({ maxHeld: 2 });
    await worker.start();
    await waitFor(() => worker.scheduledIds.length === 2);
    // Give the consumer a few more rounds: it must not take more.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(worker.scheduledIds.length, 2);
    assert.ok(asked.every((max) => max >= 1), `asked for ${asked.join(", ")}`);
    assert.equal(await h.broker.queueSize("celery"), 3);
    await worker.stop();
    assert.equal(await h.broker.queueSize("celery"), 5, "held ones went back at shutdown");
    const [d] = await h.broker.fetch(["celery"], { max: 1, timeoutMs: 0 });
    assert.equal(decodeTaskMessage(d!.message!).task, "tasks.eta");
    await d!.requeue("front");
  } finally {
    await h.close();
  }
});
