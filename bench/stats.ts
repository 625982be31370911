/**
 * Small measuring helpers for the bench: percentiles, a peak-RSS and CPU meter, bounded
 * polling and the result table.
 *
 * @module
 */

import process from "node:process";

/** One measured case, as printed and as written by `--json`. */
export interface CaseResult {
  /** Stable id, e.g. `drain/redis/c200/results-on`. */
  id: string;
  /** Case family: `enqueue`, `drain`, `sleep`, `latency`, `worker`, `coldstart`. */
  case: string;
  /** Who ran it: `celeriac` (default) or `celery` (Python Celery 5.2, `--vs celery`). */
  runtime?: "celeriac" | "celery";
  /** Worker pool: `async` (celeriac), `prefork`, `threads` (Celery). */
  pool?: string;
  /** `memory`, `redis` or `rabbitmq`. */
  broker: string;
  /** Whether results were stored; `null` where it does not apply (enqueue). */
  results: boolean | null;
  /** Worker concurrency; `null` where no worker runs. */
  concurrency: number | null;
  /** Tasks (or messages) in the case. */
  tasks: number;
  /** Measured wall time in seconds. */
  seconds: number;
  /** `tasks / seconds`. */
  perSecond: number;
  /** Peak RSS while the case ran, MiB: of this process unless `rssOf` says otherwise. */
  peakRssMb: number;
  /**
   * Whose memory `peakRssMb` is: unset for this (bench) process, which also holds the
   * producer and every result; `worker process` (its `VmHWM`) or `worker process tree`
   * (the largest sampled sum of `VmRSS` over a Celery prefork parent and its children).
   */
  rssOf?: string;
  /** Peak summed PSS of the worker process (tree), MiB (worker-process cases). */
  peakPssMb?: number;
  /**
   * Peak summed anonymous resident memory (`RssAnon`) of the worker process (tree), MiB
   * (worker-process cases): RSS less the pages of the executable and libraries, which no
   * change in the worker's code can remove (`bench/process.ts`).
   */
  peakAnonMb?: number;
  /**
   * CPU time (all threads, user + system) per task, microseconds, of this process or, for
   * the `worker` cases, of the worker process (tree) within the drain. Far less sensitive
   * to other load on the machine than wall time. `NaN` (`null` in JSON) when not measured.
   */
  cpuUsPerTask: number;
  /** CPU time of the redis-server main thread per task, microseconds (Redis cases). */
  redisCpuUsPerTask?: number;
  /** Ideal wall time (sleep case). */
  idealSeconds?: number;
  /** Latency percentiles (latency case), ms. */
  p50Ms?: number;
  /** 90th percentile, ms (coldstart). */
  p90Ms?: number;
  /** 99th percentile, ms. */
  p99Ms?: number;
  /** Mean, ms. */
  meanMs?: number;
  /** Slowest, ms. */
  maxMs?: number;
  /** `perSecond` of every run with `--repeat` (this result is the median run). */
  runsPerSecond?: number[];
  /** `p50Ms` of every run with `--repeat`, for the cases without a rate (cold start). */
  runsP50Ms?: number[];
  /** Free-form remark printed in the note column (e.g. the ready time of a cold start). */
  note?: string;
}

/** The `q`-quantile (0..1) of `values` (nearest rank); `NaN` when empty. */
export function percentile(values: readonly number[], q: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** Samples `Deno.memoryUsage().rss` on an interval and keeps the peak. */
export class RssSampler {
  #peak = 0;
  #timer?: ReturnType<typeof setInterval>;

  /** Takes one sample now and then every `intervalMs`. */
  start(intervalMs = 20): this {
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    return this;
  }

  /** Takes one sample. */
  sample(): void {
    const rss = Deno.memoryUsage().rss;
    if (rss > this.#peak) this.#peak = rss;
  }

  /** Stops sampling; returns the peak in MiB. */
  stop(): number {
    clearInterval(this.#timer);
    this.sample();
    return this.#peak / (1024 * 1024);
  }
}

/** What a {@linkcode Meter} measured. */
export interface Metered {
  /** Peak RSS, MiB. */
  peakRssMb: number;
  /** This process's CPU per task, µs. */
  cpuUsPerTask: number;
  /** The server's CPU per task, µs, when known. */
  redisCpuUsPerTask?: number;
}

/** Peak RSS plus CPU time of this process and, optionally, of the Redis server. */
export class Meter {
  #rss = new RssSampler();
  #cpu = process.cpuUsage();
  #serverCpu?: () => Promise<number>;
  #server0 = 0;

  private constructor(serverCpu?: () => Promise<number>) {
    this.#serverCpu = serverCpu;
  }

  /**
   * Starts measuring; `serverCpu` returns the server's CPU seconds so far (read before the
   * measured part starts and after it ends).
   */
  static async start(serverCpu?: () => Promise<number>): Promise<Meter> {
    const meter = new Meter(serverCpu);
    if (serverCpu) meter.#server0 = await serverCpu();
    meter.#rss.start();
    meter.#cpu = process.cpuUsage();
    return meter;
  }

  /** Stops; per-task figures for `tasks` tasks. */
  async stop(tasks: number): Promise<Metered> {
    const cpu = process.cpuUsage(this.#cpu);
    const peakRssMb = this.#rss.stop();
    const out: Metered = { peakRssMb, cpuUsPerTask: (cpu.user + cpu.system) / tasks };
    if (this.#serverCpu) {
      out.redisCpuUsPerTask = (await this.#serverCpu() - this.#server0) * 1e6 / tasks;
    }
    return out;
  }
}

/**
 * Polls `cond` every `intervalMs` until it is true.
 *
 * @throws {Error} When `deadline` (a `performance.now()` time) passes first; the message
 *   holds `describe()`.
 */
export async function waitUntil(
  cond: () => boolean,
  deadline: number,
  describe: () => string,
  intervalMs = 1,
): Promise<void> {
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`Timed out: ${describe()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Races `promise` against a timer.
 *
 * @throws {Error} When `ms` passes first.
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function fixed(value: number | undefined | null, digits: number): string {
  return value === undefined || value === null || !Number.isFinite(value)
    ? ""
    : value.toFixed(digits);
}

/** Who ran a case, for the table: `celeriac`, `celeriac process`, `Celery prefork`, … */
export function runtimeLabel(r: CaseResult): string {
  if (r.runtime === "celery") return `Celery ${r.pool ?? ""}`.trim();
  return r.case === "worker" || r.case === "coldstart" ? "celeriac process" : "celeriac";
}

/** Per-case cells added by `--vs celery` and the targets (see `bench/compare.ts`). */
export interface RowExtras {
  /** The target and PASS/MISS. */
  target?: string;
  /** celeriac ÷ Celery, on Celery rows. */
  ratio?: string;
}

/** Formats results as a Markdown table. */
export function formatTable(
  results: readonly CaseResult[],
  extras: ReadonlyMap<string, RowExtras> = new Map(),
): string {
  const header = [
    "case",
    "runtime",
    "broker",
    "results",
    "conc",
    "tasks",
    "seconds",
    "tasks/s",
    "p50 ms",
    "p99 ms",
    "peak RSS MiB",
    "cpu us/task",
    "redis cpu us/task",
    "target",
    "celeriac / Celery",
    "note",
  ];
  const rows = results.map((r) => [
    r.case === "sleep" ? "sleep (100 ms)" : r.case,
    runtimeLabel(r),
    r.broker,
    r.results === null ? "" : r.results ? "on" : "off",
    r.concurrency === null ? "" : String(r.concurrency),
    String(r.tasks),
    fixed(r.seconds, 3),
    Number.isFinite(r.perSecond) ? Math.round(r.perSecond).toLocaleString("en-US") : "",
    fixed(r.p50Ms, 2),
    fixed(r.p99Ms, 2),
    fixed(r.peakRssMb, 0),
    fixed(r.cpuUsPerTask, 1),
    fixed(r.redisCpuUsPerTask, 1),
    extras.get(r.id)?.target ?? "",
    extras.get(r.id)?.ratio ?? "",
    [
      r.idealSeconds !== undefined ? `ideal ${r.idealSeconds.toFixed(2)} s` : "",
      r.rssOf ? `RSS of the ${r.rssOf}` : "",
      r.peakPssMb !== undefined ? `PSS ${r.peakPssMb.toFixed(0)} MiB` : "",
      r.peakAnonMb !== undefined ? `anon ${r.peakAnonMb.toFixed(0)} MiB` : "",
      r.p90Ms !== undefined ? `p90 ${r.p90Ms.toFixed(0)} ms` : "",
      r.note ?? "",
      r.runsPerSecond
        ? `runs ${r.runsPerSecond.map((x) => Math.round(x / 100) / 10 + "k").join(" ")}`
        : "",
      r.runsP50Ms ? `runs ${r.runsP50Ms.map((x) => Math.round(x)).join(" ")} ms` : "",
    ].filter(Boolean).join("; "),
  ]);
  const numeric = new Set([4, 5, 6, 7, 8, 9, 10, 11, 12]);
  // Drop the columns no row fills (e.g. no target without --vs celery on a partial run).
  const keep = header.map((_, i) => i < 3 || rows.some((row) => row[i] !== ""));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))
        .filter((_, i) => keep[i]).join(" | ")
    } |`;
  return [
    line(header),
    `|${
      widths.map((w, i) => numeric.has(i) ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))
        .filter((_, i) => keep[i]).join("|")
    }|`,
    ...rows.map(line),
  ].join("\n");
}
