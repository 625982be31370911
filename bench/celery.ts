/**
 * `deno task bench --vs celery`: the same cases run by Python Celery 5.2 (Debian's
 * `python3-celery`, `/usr/bin/python3`) on the same brokers, in the same run.
 *
 * - Workers: `celery -A celery_bench worker` (`bench/celery_bench.py`, the same task names
 *   as `bench/tasks.ts`) through `tests/helpers/python_celery.ts`, mingle and gossip off,
 *   Celery's defaults otherwise (early ack, prefetch multiplier 4).
 * - Drains (`celery/worker/…`): the queue is filled beforehand by celeriac's producer (the
 *   messages are Celery protocol 2, byte for byte what a Python client sends, and filling
 *   it with Python would cost more time than the drain), then the worker starts; timed by
 *   the marks (`bench/process.ts`), exactly as celeriac's own `worker/…` cases.
 * - `celery/sleep/…`: 100 ms `time.sleep` tasks on the threads pool, from the first start
 *   to the last `date_done`.
 * - `celery/enqueue/…` and `celery/latency/…`: a Python client (`enqueue()`, `latency()` in
 *   `bench/celery_bench.py`), sequential as Celery's client is.
 * - `celery/coldstart/redis`: spawn of `celery worker` (prefork, `-c 2`) to its first task's
 *   `date_done`, with the task queued before the spawn.
 *
 * @module
 */

import type { App } from "../src/app.ts";
import { runPythonJson, startPythonWorker } from "../tests/helpers/python_celery.ts";
import { freshQueue } from "./cases.ts";
import { parseDateDone, processDrain, queueMarked, type WorkerProcessHandle } from "./process.ts";
import { type CaseResult, percentile, withTimeout } from "./stats.ts";

const BENCH_DIR = decodeURIComponent(new URL("./", import.meta.url).pathname).replace(/\/$/, "");

/** Where the Celery cases run. */
export interface CeleryTarget {
  /** `redis` or `rabbitmq`. */
  broker: "redis" | "rabbitmq";
  /** Broker URL (kombu's form: `redis://…/0`, `amqp://guest:guest@…//`). */
  brokerUrl: string;
  /** Result backend URL (`redis://…/1`). */
  backendUrl: string;
}

/** A Celery worker pool and its concurrency. */
export interface CeleryPool {
  /** `prefork` or `threads`. */
  pool: "prefork" | "threads";
  /** `-c`. */
  concurrency: number;
}

function poolId(p: CeleryPool): string {
  return `${p.pool}-c${p.concurrency}`;
}

async function startWorker(
  t: CeleryTarget,
  queue: string,
  p: CeleryPool,
  results = true,
): Promise<WorkerProcessHandle> {
  const worker = await startPythonWorker({
    broker: t.brokerUrl,
    backend: t.backendUrl,
    app: "celery_bench",
    pythonPath: [BENCH_DIR],
    queues: [queue],
    pool: p.pool,
    concurrency: p.concurrency,
    name: `bench-${p.pool}@celery`,
    readyTimeoutMs: 60_000,
    env: { BENCH_RESULTS: results ? "on" : "off" },
  });
  return { child: worker.child, stop: () => worker.stop(15_000) };
}

function python<T>(t: CeleryTarget, call: string, timeoutMs: number): Promise<T> {
  return runPythonJson<T>(
    `import sys\nsys.path.insert(0, ${
      JSON.stringify(BENCH_DIR)
    })\nimport celery_bench\ncelery_bench.${call}`,
    { broker: t.brokerUrl, backend: t.backendUrl, timeoutMs },
  );
}

/** `n` sequential `send_task` calls from a Python client (fire and forget). */
export async function celeryEnqueueCase(
  t: CeleryTarget,
  n: number,
  timeoutMs: number,
): Promise<CaseResult> {
  const queue = freshQueue(`celery.enqueue.${t.broker}`);
  const out = await python<{ seconds: number; cpu: number }>(
    t,
    `enqueue(${n}, ${JSON.stringify(queue)})`,
    timeoutMs,
  );
  return {
    id: `celery/enqueue/${t.broker}`,
    case: "enqueue",
    runtime: "celery",
    pool: "client",
    broker: t.broker,
    results: null,
    concurrency: null,
    tasks: n,
    seconds: out.seconds,
    perSecond: n / out.seconds,
    peakRssMb: NaN,
    cpuUsPerTask: out.cpu * 1e6 / n,
    note: "sequential sends",
  };
}

/** A Celery worker drains `tasks` no-op messages (marks included) queued beforehand. */
export async function celeryWorkerCase(
  producer: App,
  t: CeleryTarget,
  p: CeleryPool,
  options: { tasks: number; results: boolean; timeoutMs: number; sendBatch: number },
): Promise<CaseResult> {
  const id = `celery/worker/${t.broker}/${poolId(p)}/results-${options.results ? "on" : "off"}`;
  const queue = freshQueue(id);
  const queued = await withTimeout(
    queueMarked(producer, queue, {
      tasks: options.tasks,
      name: "bench.noop",
      results: options.results,
      batch: options.sendBatch,
    }),
    options.timeoutMs,
    `${id}: enqueue`,
  );
  const run = await processDrain(
    producer,
    queued,
    () => startWorker(t, queue, p, options.results),
    { timeoutMs: options.timeoutMs, what: id },
  );
  const left = await (await producer.broker()).queueSize(queue);
  if (left !== 0) throw new Error(`${id}: ${left} messages left in the queue`);
  if (options.results) {
    const state = await producer.asyncResult(queued.ids.at(-2)!).state;
    if (state !== "SUCCESS") throw new Error(`${id}: the last no-op's state is ${state}`);
  }
  return {
    id,
    case: "worker",
    runtime: "celery",
    pool: p.pool,
    broker: t.broker,
    results: options.results,
    concurrency: p.concurrency,
    tasks: options.tasks,
    seconds: run.seconds,
    perSecond: options.tasks / run.seconds,
    peakRssMb: run.peakRssMb,
    peakPssMb: run.peakPssMb,
    peakAnonMb: run.peakAnonMb,
    rssOf: run.processes > 1 ? `worker process tree (${run.processes})` : "worker process",
    cpuUsPerTask: run.cpuSeconds * 1e6 / options.tasks,
  };
}

/** `tasks` × `bench.sleep(sleepMs)` on the threads pool at `concurrency`. */
export async function celerySleepCase(
  producer: App,
  t: CeleryTarget,
  options: {
    tasks: number;
    concurrency: number;
    sleepMs: number;
    timeoutMs: number;
    sendBatch: number;
  },
): Promise<CaseResult> {
  const p: CeleryPool = { pool: "threads", concurrency: options.concurrency };
  const id = `celery/sleep/${t.broker}/${poolId(p)}`;
  const queue = freshQueue(id);
  const queued = await queueMarked(producer, queue, {
    tasks: options.tasks,
    name: "bench.sleep",
    args: [options.sleepMs],
    results: true,
    batch: options.sendBatch,
    marks: false,
  });
  const run = await processDrain(producer, queued, () => startWorker(t, queue, p), {
    timeoutMs: options.timeoutMs,
    span: "all",
    what: id,
  });
  return {
    id,
    case: "sleep",
    runtime: "celery",
    pool: p.pool,
    broker: t.broker,
    results: true,
    concurrency: p.concurrency,
    tasks: options.tasks,
    seconds: run.seconds,
    perSecond: options.tasks / run.seconds,
    peakRssMb: run.peakRssMb,
    peakPssMb: run.peakPssMb,
    peakAnonMb: run.peakAnonMb,
    rssOf: "worker process",
    cpuUsPerTask: run.cpuSeconds * 1e6 / options.tasks,
    idealSeconds: Math.ceil(options.tasks / options.concurrency) * options.sleepMs / 1000,
  };
}

/** `n` sequential `noop.apply_async().get()` round trips from a Python client. */
export async function celeryLatencyCase(
  t: CeleryTarget,
  p: CeleryPool,
  options: { n: number; warmup: number; timeoutMs: number },
): Promise<CaseResult> {
  const id = `celery/latency/${t.broker}/${poolId(p)}`;
  const queue = freshQueue(id);
  const worker = await startWorker(t, queue, p);
  try {
    const out = await python<{ seconds: number; cpu: number; samples: number[] }>(
      t,
      `latency(${options.n}, ${options.warmup}, ${JSON.stringify(queue)})`,
      options.timeoutMs,
    );
    const samples = out.samples;
    return {
      id,
      case: "latency",
      runtime: "celery",
      pool: p.pool,
      broker: t.broker,
      results: true,
      concurrency: p.concurrency,
      tasks: options.n,
      seconds: out.seconds,
      perSecond: options.n / out.seconds,
      peakRssMb: NaN,
      cpuUsPerTask: NaN,
      p50Ms: percentile(samples, 0.5),
      p99Ms: percentile(samples, 0.99),
      meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
      maxMs: Math.max(...samples),
    };
  } finally {
    await worker.stop();
  }
}

/**
 * Spawn of `celery worker` (prefork, `-c 2`: Celery's default pool and concurrency on this
 * 2-core machine) to its first task's `date_done`, `runs` times (after one unmeasured run
 * that warms the OS page cache, as celeriac's cold start warms Deno's module cache).
 */
export async function celeryColdstartCase(
  producer: App,
  t: CeleryTarget,
  runs: number,
): Promise<CaseResult> {
  const id = `celery/coldstart/${t.broker}`;
  const p: CeleryPool = { pool: "prefork", concurrency: 2 };
  const first: number[] = [];
  const ready: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const queue = freshQueue(id);
    const sent = await producer.sendTask("bench.mark", [], {}, { queue });
    const spawned = Date.now() / 1000;
    const worker = await startWorker(t, queue, p);
    try {
      const readyAt = Date.now() / 1000;
      await sent.get({ timeout: 30 });
      const meta = await producer.asyncResult(sent.id).meta();
      if (i === 0) continue;
      first.push((parseDateDone(meta!.date_done!) - spawned) * 1000);
      ready.push((readyAt - spawned) * 1000);
    } finally {
      await worker.stop();
    }
  }
  return {
    id,
    case: "coldstart",
    runtime: "celery",
    pool: p.pool,
    broker: t.broker,
    results: true,
    concurrency: p.concurrency,
    tasks: runs,
    seconds: percentile(first, 0.5) / 1000,
    perSecond: NaN,
    peakRssMb: NaN,
    cpuUsPerTask: NaN,
    p50Ms: percentile(first, 0.5),
    p90Ms: percentile(first, 0.9),
    maxMs: Math.max(...first),
    note: `ready p50 ${Math.round(percentile(ready, 0.5))} ms`,
  };
}
