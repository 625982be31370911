/**
 * The bench cases. Each case builds its own producer and worker apps on a fresh queue (and,
 * on memory, fresh broker/backend instances), is bounded in count and time, and always
 * stops its worker and closes its apps.
 *
 * @module
 */

import { type App, createApp } from "../src/app.ts";
import type { ResultBackend } from "../src/backends/backend.ts";
import { MemoryBackend } from "../src/backends/memory.ts";
import { createBackend } from "../src/backends/mod.ts";
import type { Broker } from "../src/brokers/broker.ts";
import { MemoryBroker } from "../src/brokers/memory.ts";
import { createBroker } from "../src/brokers/mod.ts";
import { Worker } from "../src/worker/worker.ts";
import { TimedBackend, TimedBroker, type TraceStats } from "./instrument.ts";
import { type CaseResult, Meter, percentile, waitUntil, withTimeout } from "./stats.ts";

/** A broker the bench runs on. */
export type TargetKind = "memory" | "redis" | "rabbitmq";

/** Where a case runs. */
export interface Target {
  /** `memory`, `redis` or `rabbitmq`. */
  kind: TargetKind;
  /**
   * Builds a producer app and a worker app on one broker and backend (the same instances on
   * memory, separate connections on Redis). With `trace`, their calls are counted and timed.
   */
  apps(
    queue: string,
    results: boolean,
    trace?: TraceStats,
  ): Promise<{ producer: App; worker: App }>;
  /** CPU seconds the server has used so far (Redis: main thread, from `INFO cpu`). */
  serverCpuSeconds?: () => Promise<number>;
}

function timed<T extends Broker | ResultBackend | null>(x: T, trace?: TraceStats): T {
  if (!trace || x === null) return x;
  return ("publish" in x ? new TimedBroker(x, trace) : new TimedBackend(x, trace)) as unknown as T;
}

/** A memory target: fresh broker and backend instances per case. */
export function memoryTarget(): Target {
  return {
    kind: "memory",
    apps(queue, results, trace) {
      const broker = timed(new MemoryBroker("bench"), trace);
      const backend = timed(results ? new MemoryBackend() : null, trace);
      return Promise.resolve({
        producer: createApp({ broker, backend, defaultQueue: queue }),
        worker: createApp({ broker, backend, defaultQueue: queue }),
      });
    },
  };
}

/**
 * A Redis target: broker on db 0, results on db 1; `serverCpuSeconds` reads the server's
 * CPU time (e.g. through `redis-cli INFO cpu`).
 */
export function redisTarget(
  url: (db?: number) => string,
  serverCpuSeconds?: () => Promise<number>,
): Target {
  return {
    kind: "redis",
    serverCpuSeconds,
    async apps(queue, results, trace) {
      const app = async () => {
        if (!trace) {
          return createApp({
            broker: url(0),
            backend: results ? url(1) : null,
            defaultQueue: queue,
          });
        }
        const broker = timed(await createBroker(url(0)), trace);
        const backend = timed(results ? await createBackend(url(1)) : null, trace);
        return createApp({ broker, backend, defaultQueue: queue });
      };
      return { producer: await app(), worker: await app() };
    },
  };
}

/**
 * A RabbitMQ target: broker `amqpUrl` (kombu's entities), results on the Redis server's db 1
 * (as a Celery deployment on RabbitMQ with a Redis result backend).
 */
export function rabbitmqTarget(amqpUrl: string, redisUrl: (db?: number) => string): Target {
  return {
    kind: "rabbitmq",
    async apps(queue, results, trace) {
      const app = async () => {
        const broker = timed(await createBroker(amqpUrl), trace);
        const backend = timed(results ? await createBackend(redisUrl(1)) : null, trace);
        return createApp({ broker, backend, defaultQueue: queue });
      };
      return { producer: await app(), worker: await app() };
    },
  };
}

/** Called around the measured part of each case (`--cpu-prof`, `--trace`). */
export interface MeasureHooks {
  /** Counters the case's broker and backend report to, if any. */
  trace?: TraceStats;
  /** Right before the measured part. */
  begin(id: string): Promise<void>;
  /** Right after it; `tasks` is how many tasks (or messages) it measured. */
  end(id: string, wallMs: number, tasks: number): Promise<void>;
}

/** Limits shared by every case. */
export interface Limits {
  /** Milliseconds one case may take (enqueue, run, checks) before it fails. */
  caseTimeoutMs: number;
  /** Concurrent sends per batch when enqueuing. */
  sendBatch: number;
  /** Measurement hooks. */
  hooks?: MeasureHooks;
}

const NOOP = "bench.noop";
const SLEEP = "bench.sleep";
let queueCounter = 0;

/** A queue name no earlier case used: `bench.<label>.<pid>.<n>`. */
export function freshQueue(label: string): string {
  return `bench.${label.replaceAll("/", ".")}.${Deno.pid}.${++queueCounter}`;
}

function register(app: App, sleepMs: number): void {
  app.task(NOOP, () => null);
  app.task(SLEEP, () => new Promise((r) => setTimeout(() => r(null), sleepMs)));
}

/** Sends `n` tasks in concurrent batches of `batch`; returns the last task id. */
export async function sendMany(
  app: App,
  name: string,
  n: number,
  batch: number,
): Promise<string> {
  let last = "";
  for (let i = 0; i < n; i += batch) {
    const k = Math.min(batch, n - i);
    const sent = await Promise.all(Array.from({ length: k }, () => app.sendTask(name)));
    last = sent[sent.length - 1]!.id;
  }
  return last;
}

async function closeAll(apps: App[], workers: Worker[]): Promise<void> {
  await Promise.allSettled(workers.map((w) => w.terminate()));
  await Promise.allSettled(apps.map((a) => a.close()));
}

/**
 * (1) Publish throughput: `n` no-op `sendTask` calls, `sendBatch` at a time (`sendBatch: 1`:
 * one after the other, as Python Celery's synchronous client sends; id suffix `suffix`).
 */
export async function enqueueCase(
  target: Target,
  n: number,
  limits: Limits,
  suffix = "",
): Promise<CaseResult> {
  const id = `enqueue/${target.kind}${suffix}`;
  const queue = freshQueue(id);
  const { producer, worker } = await target.apps(queue, false, limits.hooks?.trace);
  try {
    return await withTimeout(
      (async () => {
        const broker = await producer.broker();
        // Connect and declare outside the measurement.
        await broker.declareQueue(queue);
        await limits.hooks?.begin(id);
        const meter = await Meter.start(target.serverCpuSeconds);
        const t0 = performance.now();
        await sendMany(producer, NOOP, n, limits.sendBatch);
        const seconds = (performance.now() - t0) / 1000;
        const metered = await meter.stop(n);
        await limits.hooks?.end(id, seconds * 1000, n);
        const size = await broker.queueSize(queue);
        if (size !== n) throw new Error(`${id}: expected ${n} queued messages, found ${size}`);
        await broker.purge(queue);
        return {
          id,
          case: "enqueue",
          broker: target.kind,
          results: null,
          concurrency: null,
          tasks: n,
          seconds,
          perSecond: n / seconds,
          ...metered,
          ...(limits.sendBatch === 1 ? { note: "sequential sends" } : {}),
        };
      })(),
      limits.caseTimeoutMs,
      id,
    );
  } finally {
    await closeAll([producer, worker], []);
  }
}

/** Options of {@linkcode drainCase}. */
export interface DrainOptions {
  /** Tasks queued before the worker starts. */
  tasks: number;
  /** Worker concurrency. */
  concurrency: number;
  /** Store results. */
  results: boolean;
  /** Task: `noop` (returns null) or `sleep` (awaits `sleepMs`). */
  task: "noop" | "sleep";
  /** Sleep of the `sleep` task, ms. @default 100 */
  sleepMs?: number;
  /** Case family name in the output. @default "drain" */
  label?: string;
  /** The worker's `prefetchMultiplier` (ids get a `/p<N>` suffix above 1). @default 1 */
  prefetch?: number;
}

/**
 * (2)(3)(4)(6) Queue `tasks` tasks, then time one worker from `start()` until every task was
 * processed and settled (result stored, message acked): `counters.processed === tasks` and
 * the pool is idle. Samples peak RSS meanwhile.
 */
export async function drainCase(
  target: Target,
  options: DrainOptions,
  limits: Limits,
): Promise<CaseResult> {
  const label = options.label ?? "drain";
  const prefetch = options.prefetch ?? 1;
  const id = `${label}/${target.kind}/c${options.concurrency}/results-${
    options.results ? "on" : "off"
  }${prefetch > 1 ? `/p${prefetch}` : ""}`;
  const queue = freshQueue(id);
  const sleepMs = options.sleepMs ?? 100;
  const { producer, worker: workerApp } = await target.apps(
    queue,
    options.results,
    limits.hooks?.trace,
  );
  register(producer, sleepMs);
  register(workerApp, sleepMs);
  const worker = new Worker(workerApp, {
    concurrency: options.concurrency,
    prefetchMultiplier: prefetch,
    logLevel: "critical",
    fetchTimeoutMs: 200,
    shutdownTimeout: 5,
  });
  const deadline = performance.now() + limits.caseTimeoutMs;
  try {
    const lastId = await withTimeout(
      sendMany(producer, options.task === "noop" ? NOOP : SLEEP, options.tasks, limits.sendBatch),
      limits.caseTimeoutMs,
      `${id}: enqueue`,
    );
    // Connect the worker's broker and backend outside the measurement.
    await workerApp.broker();
    await workerApp.backend();
    await limits.hooks?.begin(id);
    const meter = await Meter.start(target.serverCpuSeconds);
    const t0 = performance.now();
    await worker.start();
    await waitUntil(
      () =>
        worker.counters.processed >= options.tasks && worker.pool.active === 0 &&
        worker.settlingCount === 0,
      deadline,
      () => `${id}: ${worker.counters.processed}/${options.tasks} processed`,
    );
    const seconds = (performance.now() - t0) / 1000;
    const metered = await meter.stop(options.tasks);
    await limits.hooks?.end(id, seconds * 1000, options.tasks);
    await withTimeout(worker.stop(), 10_000, `${id}: worker stop`);
    const broker = await producer.broker();
    const left = await broker.queueSize(queue);
    if (left !== 0) throw new Error(`${id}: ${left} messages left in the queue`);
    if (worker.counters.processed !== options.tasks) {
      throw new Error(`${id}: processed ${worker.counters.processed}, expected ${options.tasks}`);
    }
    if (options.results) {
      const status = await producer.asyncResult(lastId).state;
      if (status !== "SUCCESS") throw new Error(`${id}: last result is ${status}, not SUCCESS`);
    }
    const result: CaseResult = {
      id,
      case: label,
      broker: target.kind,
      results: options.results,
      concurrency: options.concurrency,
      tasks: options.tasks,
      seconds,
      ...(prefetch > 1 ? { note: `prefetch multiplier ${prefetch}` } : {}),
      perSecond: options.tasks / seconds,
      ...metered,
    };
    if (options.task === "sleep") {
      result.idealSeconds = Math.ceil(options.tasks / options.concurrency) * sleepMs / 1000;
    }
    return result;
  } finally {
    await closeAll([producer, workerApp], [worker]);
  }
}

/** (5) Round trip of `delay().get()` for `n` sequential tasks (after `warmup` unmeasured). */
export async function latencyCase(
  target: Target,
  n: number,
  warmup: number,
  limits: Limits,
): Promise<CaseResult> {
  const id = `latency/${target.kind}`;
  const queue = freshQueue(id);
  const { producer, worker: workerApp } = await target.apps(queue, true, limits.hooks?.trace);
  register(workerApp, 0);
  const noop = producer.task(NOOP, () => null);
  const worker = new Worker(workerApp, {
    concurrency: 10,
    logLevel: "critical",
    fetchTimeoutMs: 1000,
    shutdownTimeout: 5,
  });
  try {
    return await withTimeout(
      (async () => {
        await worker.start();
        for (let i = 0; i < warmup; i++) await (await noop.delay()).get({ timeout: 10 });
        await limits.hooks?.begin(id);
        const meter = await Meter.start(target.serverCpuSeconds);
        const samples: number[] = [];
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          const start = performance.now();
          await (await noop.delay()).get({ timeout: 10 });
          samples.push(performance.now() - start);
        }
        const seconds = (performance.now() - t0) / 1000;
        const metered = await meter.stop(n);
        await limits.hooks?.end(id, seconds * 1000, n);
        return {
          id,
          case: "latency",
          broker: target.kind,
          results: true,
          concurrency: 10,
          tasks: n,
          seconds,
          perSecond: n / seconds,
          ...metered,
          p50Ms: percentile(samples, 0.5),
          p99Ms: percentile(samples, 0.99),
          meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
          maxMs: Math.max(...samples),
        };
      })(),
      limits.caseTimeoutMs,
      id,
    );
  } finally {
    await closeAll([producer, workerApp], [worker]);
  }
}
