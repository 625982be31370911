/**
 * `deno task bench`: throughput, latency, memory and start-up of celeriac on the memory
 * broker, on a Redis server and (when available) a RabbitMQ node it starts itself (free
 * loopback ports, stopped at the end), optionally side by side with Python Celery 5.2.
 *
 * Cases (every one bounded in count and time):
 * 1. `enqueue/<broker>`: `sendTask` no-op messages, issued concurrently in batches (and
 *    `enqueue/<broker>/sequential`: one after the other, as Celery's client does);
 * 2. `drain/<broker>/c<N>/results-<on|off>`: one worker in this process drains
 *    already-queued no-op tasks at concurrency 50 and 200, with results on (Redis db 1 /
 *    memory backend) and off (no backend); tasks/s from `worker.start()` until every task
 *    is processed, its result stored and its message acked;
 * 3. `sleep/<broker>/c200/results-on`: 2,000 tasks that each await 100 ms at concurrency
 *    200 (wall time vs. the ideal 1.0 s);
 * 4. `latency/<broker>`: `delay().get()` round trips of 1,000 sequential tasks, p50/p99;
 * 5. `worker/<broker>/c50/results-<on|off>`: a separate `worker.ts` process drains the
 *    queue; its peak RSS (`/proc/<pid>/status` VmHWM) and CPU, timed by marks
 *    (`bench/process.ts`);
 * 6. `coldstart/redis`: spawn of `worker.ts` to its first task done (`bench/coldstart.ts`);
 * 7. with `--vs celery`, `celery/…`: the same cases run by Python Celery 5.2 workers and
 *    clients on the same servers (`bench/celery.ts`), and the ratios celeriac ÷ Celery.
 *
 * Next to each case the table prints the issue's target with PASS/MISS (`bench/compare.ts`).
 *
 * Usage: `deno task bench [--quick] [--json] [--vs celery] [--only=drain/redis,latency]
 * [--tasks=N] [--repeat=N] [--redis-url=redis://127.0.0.1:6379] [--no-rabbitmq]
 * [--worker-v8-flags=…] [--trace] [--cpu-prof[=DIR]]`.
 *
 * - `--quick`: a smoke run (500 tasks per case; 5–20 s, most of it RabbitMQ's start).
 * - `--only`: run the cases whose id contains one of the comma-separated words.
 * - `--vs celery`: also run the Celery cases (5,000-task drains: 2–3 minutes in all on 2
 *   cores; `--quick`: 300, about a minute, most of it starting 15 Python workers).
 * - `--repeat=N`: run each case N times and report the median run (a shared machine is
 *   noisy); `runsPerSecond` (or, for the cold starts, `runsP50Ms`) in the JSON lists
 *   every run.
 * - `--redis-url`: use a running server instead of starting one (its db 0 and 1 are used).
 * - `--no-rabbitmq`: skip the RabbitMQ cases (they also skip, with the reason printed,
 *   when `tests/helpers/rabbitmq_server.ts` or `amqp://` support is missing, or the node
 *   does not start).
 * - `--worker-v8-flags=…`: V8 flags for the `worker/…` processes, e.g.
 *   `--worker-v8-flags=--optimize-for-size` (their memory depends on them). By default they
 *   get those of `deno task worker` (deno.json); `--worker-v8-flags=none` runs them without.
 * - `--trace`: count and time broker/backend calls (fetch, ack, store, …) per case, and
 *   report the redis-server's CPU time and command stats over the measured part.
 * - `--cpu-prof`: write a V8 CPU profile of each case's measured part to DIR (default
 *   `bench/profiles/`) and print its self time by source and by function.
 *
 * @module
 */

import type { App } from "../src/app.ts";
import {
  drainCase,
  enqueueCase,
  freshQueue,
  latencyCase,
  type Limits,
  type MeasureHooks,
  memoryTarget,
  rabbitmqTarget,
  redisTarget,
  type Target,
  type TargetKind,
} from "./cases.ts";
import {
  celeryColdstartCase,
  celeryEnqueueCase,
  celeryLatencyCase,
  type CeleryPool,
  celerySleepCase,
  type CeleryTarget,
  celeryWorkerCase,
} from "./celery.ts";
import { measureColdStart, percentile as coldPercentile } from "./coldstart.ts";
import {
  comparisons,
  formatComparisons,
  formatTargets,
  rowExtras,
  type TargetResult,
  targets,
} from "./compare.ts";
import { type RedisCli, redisCpuSeconds, RedisServerStats, TraceStats } from "./instrument.ts";
import { celeriacWorkerCase, workerTaskV8Flags } from "./process.ts";
import { formatSummary, Profiler } from "./profile.ts";
import { type CaseResult, formatTable } from "./stats.ts";

/** Parsed command line. */
export interface BenchArgs {
  /** Small smoke run. */
  quick: boolean;
  /** Print JSON instead of a table. */
  json: boolean;
  /** Run only cases whose id contains one of these. */
  only: string[];
  /** Overrides the task count of enqueue/drain. */
  tasks?: number;
  /** Use this Redis server (no db suffix) instead of starting one. */
  redisUrl?: string;
  /** Count and time broker/backend calls. */
  trace: boolean;
  /** Directory for CPU profiles of the measured parts. */
  cpuProf?: string;
  /** Runs per case; the median run is reported. */
  repeat: number;
  /** Also run the cases with Python Celery (`--vs celery`). */
  vsCelery: boolean;
  /** Skip the RabbitMQ cases. */
  noRabbitmq: boolean;
  /** `--v8-flags=…` for the `worker/…` processes (e.g. `--max-semi-space-size=1`). */
  workerV8Flags?: string;
}

/**
 * Parses the bench's flags.
 *
 * @throws {TypeError} For an unknown flag or a bad value.
 */
export function parseBenchArgs(args: readonly string[]): BenchArgs {
  const out: BenchArgs = {
    quick: false,
    json: false,
    only: [],
    trace: false,
    repeat: 1,
    vsCelery: false,
    noRabbitmq: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    let [flag, value] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    if (flag === "--vs" && value === undefined) value = args[++i];
    switch (flag) {
      case "--quick":
        out.quick = true;
        break;
      case "--json":
        out.json = true;
        break;
      case "--only":
        out.only.push(...(value ?? "").split(",").filter(Boolean));
        break;
      case "--vs":
        if (value !== "celery") {
          throw new TypeError(`Cannot run bench: --vs takes "celery", not "${value ?? ""}"`);
        }
        out.vsCelery = true;
        break;
      case "--no-rabbitmq":
        out.noRabbitmq = true;
        break;
      case "--worker-v8-flags":
        if (!value) throw new TypeError("Cannot run bench: --worker-v8-flags needs flags");
        out.workerV8Flags = value;
        break;
      case "--tasks": {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 3) {
          throw new TypeError(`Cannot run bench: --tasks must be an integer of at least 3`);
        }
        out.tasks = n;
        break;
      }
      case "--repeat": {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1) {
          throw new TypeError(`Cannot run bench: --repeat must be a positive integer`);
        }
        out.repeat = n;
        break;
      }
      case "--trace":
        out.trace = true;
        break;
      case "--cpu-prof":
        out.cpuProf = value || new URL("./profiles/", import.meta.url).pathname;
        break;
      case "--redis-url":
        if (!value) throw new TypeError("Cannot run bench: --redis-url needs a URL");
        out.redisUrl = value.replace(/\/\d*$/, "");
        break;
      default:
        throw new TypeError(
          `Cannot run bench: unknown argument "${arg}" (use --quick, --json, --vs celery, --only=…, --tasks=N, --redis-url=…, --no-rabbitmq, --worker-v8-flags=…, --repeat=N, --trace, --cpu-prof[=DIR])`,
        );
    }
  }
  return out;
}

/** What the cases run on (servers started by {@linkcode main}). */
interface Env {
  targets: Partial<Record<TargetKind, Target>>;
  /** Redis URLs (db 0: broker, db 1: results). */
  redisUrl?: (db?: number) => string;
  /** RabbitMQ URL (kombu's `amqp://guest:guest@127.0.0.1:<port>//`). */
  amqpUrl?: string;
  limits: Limits;
  measured: Limits;
}

interface Plan {
  id: string;
  /** Servers it needs. */
  needs: ("redis" | "rabbitmq")[];
  /** In-process cases warm the JIT on this target first. */
  warm?: TargetKind;
  run: (env: Env) => Promise<CaseResult>;
}

/** Task counts of a run (printed with the results). */
export interface Counts {
  /** Enqueue, drain and worker-process cases. */
  tasks: number;
  /** Sleep cases. */
  sleepTasks: number;
  /** Latency round trips. */
  latency: number;
  /** Cold-start runs of each runtime. */
  coldstartRuns: number;
  /** Celery drains (marks included). */
  celeryTasks: number;
  /** Celery enqueue. */
  celeryEnqueue: number;
  /** Celery latency round trips. */
  celeryLatency: number;
  /** Celery cold-start runs. */
  celeryColdstartRuns: number;
}

function counts(args: BenchArgs): Counts {
  const n = args.tasks ?? (args.quick ? 500 : 10_000);
  return {
    tasks: n,
    sleepTasks: args.quick ? 400 : 2_000,
    latency: args.quick ? 100 : 1_000,
    coldstartRuns: args.quick ? 1 : 10,
    celeryTasks: args.quick ? 300 : Math.min(n, 5_000),
    celeryEnqueue: args.quick ? 300 : Math.min(n, 5_000), // also celeriac's sequential enqueue
    celeryLatency: args.quick ? 50 : 1_000,
    celeryColdstartRuns: args.quick ? 1 : 5,
  };
}

/** The cases `args` select, in run order (celeriac first, then Celery). */
export function plan(args: BenchArgs): { cases: Plan[]; limits: Limits; warmup: number } {
  const k = counts(args);
  const limits: Limits = {
    caseTimeoutMs: args.quick ? 15_000 : 180_000,
    sendBatch: 500,
  };
  const kinds = ["memory", "redis", "rabbitmq"] as const;
  const needs = (kind: TargetKind): ("redis" | "rabbitmq")[] =>
    kind === "memory" ? [] : kind === "redis" ? ["redis"] : ["redis", "rabbitmq"];
  const cases: Plan[] = [];
  for (const kind of kinds) {
    cases.push({
      id: `enqueue/${kind}`,
      needs: needs(kind),
      run: (e) => enqueueCase(e.targets[kind]!, k.tasks, e.measured),
    });
    cases.push({
      id: `enqueue/${kind}/sequential`,
      needs: needs(kind),
      run: (e) =>
        enqueueCase(
          e.targets[kind]!,
          k.celeryEnqueue,
          { ...e.measured, sendBatch: 1 },
          "/sequential",
        ),
    });
  }
  for (const kind of kinds) {
    for (const concurrency of [50, 200]) {
      for (const results of [true, false]) {
        cases.push({
          id: `drain/${kind}/c${concurrency}/results-${results ? "on" : "off"}`,
          needs: needs(kind),
          warm: kind,
          run: (e) =>
            drainCase(
              e.targets[kind]!,
              { tasks: k.tasks, concurrency, results, task: "noop" },
              e.measured,
            ),
        });
      }
    }
  }
  // The prefetch window (`--prefetch-multiplier 4`, Celery's default): the next messages are
  // at hand when a slot frees, instead of one fetch round trip per freed slot.
  for (const kind of kinds) {
    for (const concurrency of [50, 200]) {
      cases.push({
        id: `drain/${kind}/c${concurrency}/results-on/p4`,
        needs: needs(kind),
        warm: kind,
        run: (e) =>
          drainCase(
            e.targets[kind]!,
            { tasks: k.tasks, concurrency, results: true, task: "noop", prefetch: 4 },
            e.measured,
          ),
      });
    }
  }
  for (const kind of kinds) {
    for (const prefetch of [1, 2]) {
      cases.push({
        id: `sleep/${kind}/c200/results-on${prefetch > 1 ? `/p${prefetch}` : ""}`,
        needs: needs(kind),
        warm: kind,
        run: (e) =>
          drainCase(e.targets[kind]!, {
            tasks: k.sleepTasks,
            concurrency: 200,
            results: true,
            task: "sleep",
            sleepMs: 100,
            label: "sleep",
            prefetch,
          }, e.measured),
      });
    }
  }
  for (const kind of kinds) {
    cases.push({
      id: `latency/${kind}`,
      needs: needs(kind),
      warm: kind,
      run: (e) => latencyCase(e.targets[kind]!, k.latency, args.quick ? 10 : 50, e.measured),
    });
  }
  for (const kind of ["redis", "rabbitmq"] as const) {
    for (const [results, prefetch] of [[true, 1], [false, 1], [true, 4]] as const) {
      const id = `worker/${kind}/c50/results-${results ? "on" : "off"}${
        prefetch > 1 ? `/p${prefetch}` : ""
      }`;
      cases.push({
        id,
        needs: needs(kind),
        run: async (e) => {
          const queue = freshQueue(id);
          const { producer, worker } = await e.targets[kind]!.apps(queue, true);
          try {
            return await celeriacWorkerCase(producer, queue, {
              id,
              broker: kind,
              brokerUrl: kind === "redis" ? e.redisUrl!(0) : e.amqpUrl!,
              backendUrl: e.redisUrl!(1),
              tasks: k.tasks,
              concurrency: 50,
              results,
              timeoutMs: e.limits.caseTimeoutMs,
              sendBatch: e.limits.sendBatch,
              v8Flags: args.workerV8Flags === "none"
                ? undefined
                : args.workerV8Flags ?? workerTaskV8Flags(),
              prefetch,
            });
          } finally {
            await Promise.allSettled([producer.close(), worker.close()]);
          }
        },
      });
    }
  }
  cases.push({
    id: "coldstart/redis",
    needs: [],
    run: () => coldstartCase(k.coldstartRuns),
  });
  if (args.vsCelery) cases.push(...celeryPlan(k, args.quick));
  const selected = args.only.length
    ? cases.filter((c) => args.only.some((o) => c.id.includes(o)))
    : cases;
  return { cases: selected, limits, warmup: args.quick ? 200 : 2_000 };
}

function celeryPlan(k: Counts, quick: boolean): Plan[] {
  const out: Plan[] = [];
  const target = (e: Env, kind: "redis" | "rabbitmq"): CeleryTarget => ({
    broker: kind,
    brokerUrl: kind === "redis" ? e.redisUrl!(0) : e.amqpUrl!,
    backendUrl: e.redisUrl!(1),
  });
  /** Runs `fn` with a celeriac producer on `kind` (it fills the queues Celery drains). */
  const withProducer = async <T>(
    e: Env,
    kind: "redis" | "rabbitmq",
    fn: (producer: App) => Promise<T>,
  ): Promise<T> => {
    const { producer, worker } = await e.targets[kind]!.apps(freshQueue("celery"), true);
    try {
      return await fn(producer);
    } finally {
      await Promise.allSettled([producer.close(), worker.close()]);
    }
  };
  const pools: CeleryPool[] = [
    { pool: "prefork", concurrency: 2 },
    { pool: "threads", concurrency: 50 },
  ];
  for (const kind of ["redis", "rabbitmq"] as const) {
    const needs: ("redis" | "rabbitmq")[] = kind === "redis" ? ["redis"] : ["redis", "rabbitmq"];
    out.push({
      id: `celery/enqueue/${kind}`,
      needs,
      run: (e) => celeryEnqueueCase(target(e, kind), k.celeryEnqueue, e.limits.caseTimeoutMs),
    });
    for (const p of pools) {
      for (const results of [true, false]) {
        out.push({
          id: `celery/worker/${kind}/${p.pool}-c${p.concurrency}/results-${results ? "on" : "off"}`,
          needs,
          run: (e) =>
            withProducer(e, kind, (producer) =>
              celeryWorkerCase(producer, target(e, kind), p, {
                tasks: k.celeryTasks,
                results,
                timeoutMs: e.limits.caseTimeoutMs,
                sendBatch: e.limits.sendBatch,
              })),
        });
      }
    }
    out.push({
      id: `celery/sleep/${kind}/threads-c200`,
      needs,
      run: (e) =>
        withProducer(e, kind, (producer) =>
          celerySleepCase(producer, target(e, kind), {
            tasks: quick ? 400 : 2_000,
            concurrency: 200,
            sleepMs: 100,
            timeoutMs: e.limits.caseTimeoutMs,
            sendBatch: e.limits.sendBatch,
          })),
    });
    for (
      const p of [{ pool: "prefork", concurrency: 2 }, {
        pool: "threads",
        concurrency: 10,
      }] as CeleryPool[]
    ) {
      out.push({
        id: `celery/latency/${kind}/${p.pool}-c${p.concurrency}`,
        needs,
        run: (e) =>
          celeryLatencyCase(target(e, kind), p, {
            n: k.celeryLatency,
            warmup: quick ? 5 : 50,
            timeoutMs: e.limits.caseTimeoutMs,
          }),
      });
    }
  }
  out.push({
    id: "celery/coldstart/redis",
    needs: ["redis"],
    run: (e) =>
      withProducer(
        e,
        "redis",
        (producer) => celeryColdstartCase(producer, target(e, "redis"), k.celeryColdstartRuns),
      ),
  });
  return out;
}

/** `bench/coldstart.ts` on Redis as a case: spawn of `worker.ts` → first task done. */
async function coldstartCase(runs: number): Promise<CaseResult> {
  const [r] = await measureColdStart(runs, ["redis"]);
  const first = r!.firstTaskMs;
  return {
    id: "coldstart/redis",
    case: "coldstart",
    runtime: "celeriac",
    pool: "async",
    broker: "redis",
    results: true,
    concurrency: 10,
    tasks: runs,
    seconds: coldPercentile(first, 50) / 1000,
    perSecond: NaN,
    peakRssMb: NaN,
    cpuUsPerTask: NaN,
    p50Ms: coldPercentile(first, 50),
    p90Ms: coldPercentile(first, 90),
    maxMs: Math.max(...first),
    note: `ready p50 ${Math.round(coldPercentile(r!.readyMs, 50))} ms`,
  };
}

function measureHooks(
  args: BenchArgs,
  progress: (line: string) => void,
  redisCli: RedisCli | undefined,
): MeasureHooks | undefined {
  if (!args.trace && !args.cpuProf) return undefined;
  const trace = args.trace ? new TraceStats() : undefined;
  const server = args.trace && redisCli ? new RedisServerStats(redisCli) : undefined;
  let profiler: Profiler | undefined;
  return {
    trace,
    async begin(id) {
      trace?.reset();
      if (server && id.includes("/redis")) await server.begin();
      if (args.cpuProf) {
        await profiler?.stop().catch(() => {}); // left running by a failed case
        profiler = new Profiler();
        await profiler.start();
      }
    },
    async end(id, wallMs, tasks) {
      if (trace) progress(trace.format(id, wallMs));
      if (server && id.includes("/redis")) progress(await server.format(id, wallMs, tasks));
      if (profiler) {
        const profile = await profiler.stop();
        profiler = undefined;
        await Deno.mkdir(args.cpuProf!, { recursive: true });
        const file = `${args.cpuProf!.replace(/\/$/, "")}/${id.replaceAll("/", "_")}.cpuprofile`;
        await Deno.writeTextFile(file, JSON.stringify(profile));
        progress(`${formatSummary(id, profile, tasks)}\n  written to ${file}`);
      }
    },
  };
}

async function redisVersion(): Promise<string | null> {
  try {
    const out = await new Deno.Command("redis-server", { args: ["--version"], stdout: "piped" })
      .output();
    return /v=(\S+)/.exec(new TextDecoder().decode(out.stdout))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** A running RabbitMQ (the subset of `tests/helpers/rabbitmq_server.ts` the bench uses). */
interface Rabbit {
  url(vhost?: string): string;
  readonly startupMs: number;
  stop(): Promise<void>;
}

/**
 * Starts a throwaway RabbitMQ through `tests/helpers/rabbitmq_server.ts`, or says why the
 * RabbitMQ cases cannot run in this checkout.
 */
async function startRabbitIfAvailable(): Promise<{ rabbit: Rabbit } | { reason: string }> {
  const helper = new URL("../tests/helpers/rabbitmq_server.ts", import.meta.url);
  try {
    await Deno.stat(helper);
  } catch {
    return { reason: "tests/helpers/rabbitmq_server.ts is not in this checkout" };
  }
  try {
    const { createBroker } = await import("../src/brokers/mod.ts");
    await (await createBroker("amqp://guest:guest@127.0.0.1:1//")).close();
  } catch (err) {
    return {
      reason: `this checkout's createBroker() cannot open amqp:// (src/brokers/amqp/): ${
        String((err as Error)?.message ?? err).split("\n")[0]
      }`,
    };
  }
  try {
    // A variable specifier: the helper may be missing from a checkout (see above).
    const href = helper.href;
    const mod = await import(href) as { startRabbit(): Promise<Rabbit> };
    return { rabbit: await mod.startRabbit() };
  } catch (err) {
    return {
      reason: `cannot start rabbitmq-server: ${
        String((err as Error)?.message ?? err).split("\n")[0]
      }`,
    };
  }
}

/** Runs the bench; returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseBenchArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const planned = plan(args);
  const { limits, warmup } = planned;
  let cases = planned.cases;
  const k = counts(args);
  const progress = (line: string) => console.error(line);
  const skipped: { what: string; reason: string }[] = [];
  const started = performance.now();

  let rabbit: Rabbit | undefined;
  if (cases.some((c) => c.needs.includes("rabbitmq"))) {
    const reason = args.noRabbitmq ? "--no-rabbitmq" : undefined;
    const got = reason ? { reason } : await startRabbitIfAvailable();
    if ("rabbit" in got) {
      rabbit = got.rabbit;
      progress(`bench: rabbitmq started in ${rabbit.startupMs} ms at ${rabbit.url()}`);
    } else {
      const ids = cases.filter((c) => c.needs.includes("rabbitmq")).map((c) => c.id);
      skipped.push({ what: `RabbitMQ cases (${ids.length})`, reason: got.reason });
      progress(`bench: skipping the RabbitMQ cases: ${got.reason}`);
      cases = cases.filter((c) => !c.needs.includes("rabbitmq"));
    }
  }
  const needRedis = cases.some((c) => c.needs.includes("redis"));

  let stopRedis: (() => Promise<void> | void) | undefined;
  let redisUrl: ((db?: number) => string) | undefined;
  let redisCli: RedisCli | undefined;
  const results: CaseResult[] = [];
  const errors: { id: string; message: string }[] = [];
  try {
    if (needRedis) {
      if (args.redisUrl) {
        const base = args.redisUrl;
        redisUrl = (db = 0) => `${base}/${db}`;
        redisCli = async (...cliArgs) => {
          const out = await new Deno.Command("redis-cli", {
            args: ["-u", `${base}/0`, ...cliArgs],
            stdout: "piped",
            stderr: "null",
          }).output();
          return new TextDecoder().decode(out.stdout);
        };
      } else {
        const { startRedis } = await import("../tests/helpers/redis_server.ts");
        const server = await startRedis();
        redisUrl = (db?: number) => server.url(db);
        redisCli = (...cliArgs) => server.cli(...cliArgs);
        stopRedis = () => server.stop();
      }
    }
    const measured: Limits = { ...limits, hooks: measureHooks(args, progress, redisCli) };
    const cli = redisCli;
    const env: Env = {
      targets: {
        memory: memoryTarget(),
        redis: redisUrl
          ? redisTarget(redisUrl, cli && (() => cli("INFO", "cpu").then(redisCpuSeconds)))
          : undefined,
        rabbitmq: rabbit && redisUrl ? rabbitmqTarget(rabbit.url(), redisUrl) : undefined,
      },
      redisUrl,
      amqpUrl: rabbit?.url(),
      limits,
      measured,
    };
    // Warm the JIT on the code paths of the selected brokers (not reported).
    for (const kind of new Set(cases.flatMap((c) => c.warm ? [c.warm] : []))) {
      try {
        await drainCase(
          env.targets[kind]!,
          { tasks: warmup, concurrency: 50, results: true, task: "noop", label: "warmup" },
          limits,
        );
      } catch (err) {
        errors.push({ id: `warmup/${kind}`, message: (err as Error)?.stack ?? String(err) });
      }
    }
    for (const c of cases) {
      progress(`bench: ${c.id} …`);
      try {
        const runs: CaseResult[] = [];
        for (let i = 0; i < args.repeat; i++) {
          const run = await c.run(env);
          runs.push(run);
          progress(
            `bench: ${c.id}: ${run.seconds.toFixed(3)} s${
              Number.isFinite(run.perSecond) ? `, ${Math.round(run.perSecond)}/s` : ""
            }${run.p50Ms !== undefined ? `, p50 ${run.p50Ms.toFixed(2)} ms` : ""}${
              run.rssOf ? `, ${run.peakRssMb.toFixed(0)} MiB` : ""
            }`,
          );
        }
        const key = (r: CaseResult) => Number.isFinite(r.perSecond) ? r.perSecond : -r.seconds;
        const sorted = [...runs].sort((a, b) => key(a) - key(b));
        const result = sorted[Math.floor((sorted.length - 1) / 2)]!;
        if (runs.length > 1 && Number.isFinite(result.perSecond)) {
          result.runsPerSecond = runs.map((r) => r.perSecond);
        } else if (runs.length > 1) result.runsP50Ms = runs.map((r) => r.p50Ms ?? NaN);
        results.push(result);
      } catch (err) {
        errors.push({ id: c.id, message: (err as Error)?.stack ?? String(err) });
        progress(`bench: ${c.id} failed: ${(err as Error)?.message ?? err}`);
      }
    }
  } finally {
    await stopRedis?.();
    await rabbit?.stop();
  }

  const machine = {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    os: `${Deno.build.os}-${Deno.build.arch}`,
    cpus: navigator.hardwareConcurrency,
    redis: needRedis && !args.redisUrl ? await redisVersion() : null,
    rabbitmq: rabbit ? "3.10.8" : null,
    loadavg: Deno.loadavg(),
  };
  const tgts: TargetResult[] = targets(results, args.vsCelery);
  const cmps = comparisons(results);
  const notes = [
    `celeriac: ${k.tasks.toLocaleString("en-US")} tasks per enqueue/drain/worker case, ` +
    `${k.sleepTasks.toLocaleString("en-US")} sleep tasks, ${k.latency} round trips, ` +
    `${k.coldstartRuns} cold starts.`,
  ];
  if (args.vsCelery) {
    notes.push(
      `Celery 5.2.6: ${k.celeryTasks.toLocaleString("en-US")} tasks per drain and ` +
        `${k.celeryEnqueue.toLocaleString("en-US")} sends (fewer than celeriac's, to keep ` +
        `--vs celery within about 5 minutes; rates are per second either way), ` +
        `${k.celeryLatency} round trips, ${k.celeryColdstartRuns} cold starts.`,
    );
  }
  if (args.json) {
    console.log(JSON.stringify(
      {
        machine,
        quick: args.quick,
        vs: args.vsCelery ? "celery" : null,
        counts: k,
        totalSeconds: (performance.now() - started) / 1000,
        cases: results,
        targets: tgts,
        comparisons: cmps,
        skipped,
        notes,
        errors,
      },
      null,
      2,
    ));
  } else {
    console.log(
      `celeriac bench (${args.quick ? "quick" : "full"}${
        args.vsCelery ? ", vs Celery 5.2.6" : ""
      }): deno ${machine.deno}, ${machine.os}, ` +
        `${machine.cpus} cpus${machine.redis ? `, redis ${machine.redis}` : ""}${
          machine.rabbitmq ? `, rabbitmq ${machine.rabbitmq}` : ""
        }, load ${machine.loadavg.map((l) => l.toFixed(2)).join(" ")}${
          args.repeat > 1 ? `, median of ${args.repeat} runs` : ""
        }, ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
    );
    console.log(formatTable(results, rowExtras(tgts, cmps)));
    if (tgts.length) console.log(`\nTargets (issue #8):\n\n${formatTargets(tgts)}`);
    if (cmps.length) {
      console.log(
        `\nceleriac vs Celery 5.2.6 (ratio = celeriac ÷ Celery):\n\n${formatComparisons(cmps)}`,
      );
    }
    console.log("");
    for (const n of notes) console.log(n);
    for (const s of skipped) console.log(`Skipped ${s.what}: ${s.reason}`);
    for (const e of errors) console.log(`\nFAILED ${e.id}: ${e.message}`);
  }
  return errors.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
