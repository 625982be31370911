/**
 * The prefetch window (`prefetchMultiplier`, Celery's `worker_prefetch_multiplier`): how many
 * messages the worker reserves beyond its free slots, in what order they start, and that
 * none is lost on revoke or shutdown.
 */

import assert from "node:assert/strict";
import { parseWorkerArgs } from "../../worker.ts";
import { MemoryBackend } from "../../src/backends/memory.ts";
import type { Delivery, FetchOptions } from "../../src/brokers/broker.ts";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { ConfigError } from "../../src/errors.ts";
import type { ResultMeta } from "../../src/protocol/result.ts";
import { type Harness, harness, uniqueName } from "../helpers/harness.ts";
import { type Gate, gate, nextMacrotask, waitFor } from "../helpers/wait.ts";

/** A task that records its start order and waits for its gate; tracks the running peak. */
function gatedTask(h: Harness) {
  const gates = new Map<number, Gate>();
  const started: number[] = [];
  let running = 0;
  let peak = 0;
  const task = h.app.task("tasks.gated", async (i: number) => {
    running++;
    peak = Math.max(peak, running);
    started.push(i);
    const g = gate();
    gates.set(i, g);
    await g.promise;
    running--;
    return i;
  });
  /** Lets tasks `ids` finish, in this order, each once it has started. */
  async function release(ids: Iterable<number>): Promise<void> {
    for (const i of ids) {
      await waitFor(() => gates.has(i), { message: `task ${i} started` });
      gates.get(i)!.resolve();
    }
  }
  return {
    task,
    gates,
    started,
    release,
    get running() {
      return running;
    },
    get peak() {
      return peak;
    },
  };
}

Deno.test("prefetch: multiplier 3 at concurrency 2 reserves 6, runs 2 at a time, in order", async () => {
  const h = await harness("w-prefetch");
  try {
    const t = gatedTask(h);
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await t.task.delay(i));
    const worker = h.worker({ concurrency: 2, prefetchMultiplier: 3 });
    assert.equal(worker.prefetchCount, 6);
    await worker.start();

    await waitFor(() => t.running === 2 && worker.held.length === 4, {
      message: "2 running and 4 prefetched",
    });
    assert.equal(await h.broker.queueSize("celery"), 4, "the rest stays in the broker");
    assert.equal(h.broker.unackedCount, 6, "every reserved message is unacked");
    // Prefetched ones wait for a slot: reserved (eta null), never scheduled.
    assert.ok(worker.held.every((r) => r.eta === null));
    assert.deepEqual(worker.scheduledIds, []);
    assert.deepEqual(
      worker.held.map((r) => r.id),
      results.slice(2, 6).map((r) => r.id),
      "waiting in the order fetched",
    );

    await t.release(results.keys());
    const values = await Promise.all(results.map((r) => r.get({ timeout: 5 })));
    assert.deepEqual(values, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(t.started, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "started in fetch order");
    assert.equal(t.peak, 2, "concurrency is never exceeded");
    await waitFor(() => h.broker.unackedCount === 0);
  } finally {
    await h.close();
  }
});

Deno.test("prefetch: the default (1) reserves nothing beyond the free slots", async () => {
  const h = await harness("w-prefetch-default");
  try {
    const t = gatedTask(h);
    for (let i = 0; i < 5; i++) await t.task.delay(i);
    const worker = h.worker({ concurrency: 2 });
    assert.equal(worker.prefetchCount, 2);
    await worker.start();
    await waitFor(() => t.running === 2, { message: "2 running" });
    // Give the consumer a chance to over-fetch if it would.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(worker.held.length, 0);
    assert.equal(h.broker.unackedCount, 2);
    assert.equal(await h.broker.queueSize("celery"), 3);
    await t.release([0, 1, 2, 3, 4]);
    await waitFor(() => h.broker.unackedCount === 0 && worker.pool.active === 0);
  } finally {
    await h.close();
  }
});

Deno.test("prefetch: a revoked prefetched task is REVOKED and never runs", async () => {
  const h = await harness("w-prefetch-revoke");
  try {
    const t = gatedTask(h);
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await t.task.delay(i));
    const worker = h.worker({ concurrency: 1, prefetchMultiplier: 4 });
    await worker.start();
    await waitFor(() => t.running === 1 && worker.held.length === 3);

    worker.revoke([results[2].id]);
    assert.equal(await results[2].state, "REVOKED");
    assert.deepEqual(worker.held.map((r) => r.id), [results[1].id, results[3].id]);

    await t.release([0, 1, 3]);
    assert.deepEqual(await results[3].get({ timeout: 5 }), 3);
    assert.deepEqual(t.started, [0, 1, 3]);
    await waitFor(() => h.broker.unackedCount === 0, { message: "all acked, the revoked one too" });
  } finally {
    await h.close();
  }
});

Deno.test("prefetch: a warm stop gives prefetched messages back to the front, in order", async () => {
  const h = await harness("w-prefetch-stop");
  try {
    const t = gatedTask(h);
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await t.task.delay(i));
    const worker = h.worker({ concurrency: 2, prefetchMultiplier: 2 });
    await worker.start();
    await waitFor(() => t.running === 2 && worker.held.length === 2);

    const stopped = worker.stop();
    // The running ones finish; the prefetched ones never start.
    await t.release([0, 1]);
    await stopped;
    assert.deepEqual(t.started, [0, 1]);
    assert.equal(h.broker.unackedCount, 0);
    assert.ok(h.logs.some((l) => l.includes("Restored 2 reserved message(s)")));

    // Queue order is the original one: 2, 3 (given back) before 4, 5 (never fetched).
    const again = await h.broker.fetch(["celery"], { max: 4, timeoutMs: 0 });
    assert.deepEqual(
      again.map((d) => d.message!.headers.id),
      results.slice(2).map((r) => r.id),
    );
    for (const d of again) await d.ack();
  } finally {
    await h.close();
  }
});

/** A memory backend whose stores wait until `open()` (then go through). */
class GatedBackend extends MemoryBackend {
  #gate = gate();
  waiting = 0;
  override async store(meta: ResultMeta): Promise<void> {
    this.waiting++;
    await this.#gate.promise;
    this.waiting--;
    return super.store(meta);
  }
  open(): void {
    this.#gate.resolve();
  }
}

Deno.test("prefetch: a finished task frees its slot while its result is stored; unacked until then", async () => {
  const backend = new GatedBackend();
  const h = await harness("w-settle", { backend });
  try {
    const started: number[] = [];
    const task = h.app.task("tasks.quick", (i: number) => {
      started.push(i);
      return i;
    });
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await task.delay(i));
    const worker = h.worker({ concurrency: 1, prefetchMultiplier: 3 });
    await worker.start();

    // Each store hangs, yet the next prefetched task runs: the slot is not held by the
    // store. The window (3) counts the settling tasks, so no more than 3 are taken.
    await waitFor(() => backend.waiting === 3, { message: "3 stores waiting" });
    assert.deepEqual(started, [0, 1, 2]);
    assert.equal(worker.pool.active, 0);
    assert.equal(worker.settlingCount, 3);
    assert.equal(h.broker.unackedCount, 3, "acked only after the store");
    assert.equal(await h.broker.queueSize("celery"), 2);

    // A warm stop waits for the stores, then acks; the rest stays queued.
    const stopped = worker.stop();
    backend.open();
    await stopped;
    assert.equal(worker.settlingCount, 0);
    assert.equal(h.broker.unackedCount, 0);
    for (const r of results.slice(0, 3)) assert.equal(await r.state, "SUCCESS");
    assert.equal(await h.broker.queueSize("celery"), 2);
  } finally {
    await h.close();
  }
});

Deno.test("prefetch: option and --prefetch-multiplier are checked", () => {
  assert.equal(
    parseWorkerArgs(["--app", "x.ts", "--prefetch-multiplier", "4"]).worker.prefetchMultiplier,
    4,
  );
  assert.equal(parseWorkerArgs(["--app", "x.ts"]).worker.prefetchMultiplier, undefined);
  for (const bad of ["0", "1.5", "x"]) {
    assert.throws(
      () => parseWorkerArgs(["--app", "x.ts", "--prefetch-multiplier", bad]),
      (e: unknown) => e instanceof ConfigError && /--prefetch-multiplier/.test(e.message),
    );
  }
});

Deno.test("prefetch: prefetchMultiplier below 1 is a RangeError", async () => {
  const h = await harness("w-prefetch-bad");
  try {
    assert.throws(() => h.worker({ prefetchMultiplier: 0 }), RangeError);
  } finally {
    await h.close();
  }
});

/**
 * A memory broker whose acks are held until `openAcks()`, and which claims `acksBeforeFetch`
 * or not: it shows when the worker lets a finished task's message out of its window.
 */
class HeldAckBroker extends MemoryBroker {
  readonly acksBeforeFetch: boolean;
  /** Acks issued so far (each held until `openAcks`). */
  issued = 0;
  /** `max` of each fetch, in order. */
  asked: number[] = [];
  #open = gate();
  constructor(acksBeforeFetch: boolean) {
    super(uniqueName("held-acks"));
    this.acksBeforeFetch = acksBeforeFetch;
  }
  openAcks(): void {
    this.#open.resolve();
  }
  override async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    this.asked.push(options.max);
    const got = await super.fetch(queues, options);
    return got.map((d) => ({
      ...d,
      ack: async () => {
        this.issued++;
        await this.#open.promise;
        await d.ack();
      },
    }));
  }
}

async function heldAckHarness(acksBeforeFetch: boolean) {
  const broker = new HeldAckBroker(acksBeforeFetch);
  const h = await harness("w-held-acks", { broker, backend: new MemoryBackend() });
  const noop = h.app.task("tasks.noop", () => null);
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await noop.delay());
  return { broker, h, results, worker: h.worker({ concurrency: 2 }) };
}

Deno.test("prefetch: with acksBeforeFetch, a task's message leaves the window once its ack is issued", async () => {
  const { broker, h, results, worker } = await heldAckHarness(true);
  try {
    await worker.start();
    await waitFor(() => worker.counters.processed === 6, {
      message: "all 6 ran at concurrency 2 while every ack is held",
    });
    assert.equal(broker.issued, 6);
    assert.equal(broker.unackedCount, 6, "no ack confirmed yet");
    assert.equal(worker.settlingCount, 6, "still settling: the shutdown waits for them");

    let stopped = false;
    const stopping = worker.stop().then(() => stopped = true);
    await nextMacrotask(30);
    assert.equal(stopped, false, "the warm shutdown waits for the held acks");
    broker.openAcks();
    await stopping;
    assert.equal(broker.unackedCount, 0);
    assert.equal(worker.settlingCount, 0);
    assert.deepEqual(await Promise.all(results.map((r) => r.get({ timeout: 1 }))), [
      null,
      null,
      null,
      null,
      null,
      null,
    ]);
  } finally {
    await h.close();
  }
});

Deno.test("prefetch: without acksBeforeFetch, the window stays taken until acks are confirmed", async () => {
  const { broker, h, worker } = await heldAckHarness(false);
  try {
    await worker.start();
    await waitFor(() => broker.issued === 2, { message: "the first 2 acks issued" });
    await nextMacrotask(150); // three fetch timeouts of the harness's worker
    assert.equal(worker.counters.processed, 2, "nothing more was fetched");
    assert.equal(await broker.queueSize("celery"), 4);
    broker.openAcks();
    await waitFor(() => worker.counters.processed === 6 && broker.unackedCount === 0, {
      message: "the rest ran once the acks were confirmed",
    });
  } finally {
    await h.close();
  }
});

for (const acksBeforeFetch of [true, false]) {
  Deno.test(
    `prefetch: a fetch asks for ${
      acksBeforeFetch ? "half the window (two waves) with" : "the whole free window without"
    } acksBeforeFetch`,
    async () => {
      const broker = new HeldAckBroker(acksBeforeFetch);
      broker.openAcks();
      const h = await harness("w-waves", { broker, backend: new MemoryBackend() });
      try {
        const t = gatedTask(h);
        for (let i = 0; i < 8; i++) await t.task.delay(i);
        const worker = h.worker({ concurrency: 4, prefetchMultiplier: 2 });
        await worker.start();
        await waitFor(() => t.running === 4 && worker.held.length === 4, {
          message: "4 running, 4 prefetched",
        });
        // Window 8: two fetches of 4, or one of 8.
        assert.deepEqual(
          broker.asked.slice(0, acksBeforeFetch ? 2 : 1),
          acksBeforeFetch ? [4, 4] : [8],
        );
        assert.equal(broker.unackedCount, 8, "the window is full either way");
        await t.release([0, 1, 2, 3, 4, 5, 6, 7]);
        await waitFor(() => worker.counters.processed === 8 && broker.unackedCount === 0);
      } finally {
        await h.close();
      }
    },
  );
}

/** A memory broker that claims `acksBeforeFetch` and logs each fetch into a shared log. */
class LoggingBroker extends MemoryBroker {
  readonly acksBeforeFetch = true;
  constructor(readonly log: string[]) {
    super(uniqueName("logging"));
  }
  override fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    this.log.push(`fetch ${options.max}`);
    return super.fetch(queues, options);
  }
}

/**
 * A {@linkcode LoggingBroker} that calls `onTaken` as the Redis broker does: once it has
 * taken the messages, before the fetch resolves ("taken" and "resolved" in the log).
 */
class TakingBroker extends LoggingBroker {
  override async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    const got = await super.fetch(queues, { ...options, onTaken: undefined });
    if (got.length && options.onTaken) {
      this.log.push(`taken ${got.length}`);
      options.onTaken(got.length);
      await nextMacrotask(); // as decoding would: the fetch resolves a while later
      this.log.push(`resolved ${got.length}`);
    }
    return got;
  }
}

for (const Broker of [LoggingBroker, TakingBroker]) {
  Deno.test(`prefetch: the next fetch goes out before the batch in hand runs, within the window (${Broker.name})`, async () => {
    const log: string[] = [];
    const broker = new Broker(log);
    const h = await harness(`w-ahead-${Broker.name}`, { broker, backend: new MemoryBackend() });
    try {
      const t = gatedTask(h);
      const logged = h.app.task("tasks.logged", async (i: number) => {
        log.push(`run ${i}`);
        return await t.task.fn(i);
      });
      for (let i = 0; i < 8; i++) await logged.delay(i);
      const worker = h.worker({ concurrency: 4 }); // window 4, fetched in waves of 2
      await worker.start();
      await waitFor(() => t.running === 4, { message: "4 running" });
      await nextMacrotask(30);
      assert.deepEqual(
        log.filter((l) => l.startsWith("fetch") || l.startsWith("run")),
        ["fetch 2", "fetch 2", "run 0", "run 1", "run 2", "run 3"],
      );
      if (Broker === TakingBroker) {
        // Sent as the first fetch's messages were taken, before that fetch resolved.
        assert.deepEqual(log.slice(0, 3), ["fetch 2", "taken 2", "fetch 2"]);
      }
      assert.equal(broker.unackedCount, 4, "never more reserved than the window");
      assert.equal(await broker.queueSize("celery"), 4);
      await t.release([0, 1, 2, 3, 4, 5, 6, 7]);
      await waitFor(() => worker.counters.processed === 8 && broker.unackedCount === 0);
    } finally {
      await h.close();
    }
  });
}

for (const Broker of [LoggingBroker, TakingBroker]) {
  Deno.test(`prefetch: a fetch sent ahead when the stop began gives its messages back, in order (${Broker.name})`, async () => {
    const log: string[] = [];
    const broker = new Broker(log);
    const h = await harness(`w-ahead-stop-${Broker.name}`, {
      broker,
      backend: new MemoryBackend(),
    });
    try {
      let stopping: Promise<void> | undefined;
      const worker = h.worker({ concurrency: 4 });
      const ran: number[] = [];
      let first = true;
      const task = h.app.task("tasks.stops", (i: number) => {
        ran.push(i);
        if (first && i === 0) stopping = worker.stop(); // while its batch is dispatched
        return i;
      });
      for (let i = 0; i < 8; i++) await task.delay(i);
      await worker.start();
      await waitFor(() => stopping !== undefined, { message: "the first task stopped the worker" });
      await stopping;
      assert.deepEqual(
        log.filter((l) => l.startsWith("fetch")),
        ["fetch 2", "fetch 2"],
        "the second fetch was sent ahead",
      );
      assert.deepEqual(ran, [0, 1]);
      assert.equal(broker.unackedCount, 0, "nothing stays reserved");
      assert.equal(await broker.queueSize("celery"), 6);

      first = false;
      const next = h.worker({ concurrency: 1 });
      await next.start();
      await waitFor(() => ran.length === 8, { message: "the 6 others ran" });
      assert.deepEqual(ran, [0, 1, 2, 3, 4, 5, 6, 7]);
      await next.stop();
    } finally {
      await h.close();
    }
  });
}
