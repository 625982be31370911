/**
 * Worker-process cases: a worker runs as its own process (celeriac's `worker.ts` CLI here,
 * Celery's `celery worker` in `bench/celery.ts`), draining a queue that the bench filled
 * before starting it, so the measured memory is the worker's alone (not the bench process,
 * which also holds the producer and every result it waits for).
 *
 * Timing by marks: the queue gets a `bench.mark` first and last; each mark stores when it
 * ran. The drain takes from the first mark's start to the last mark's `date_done` (both
 * written by the worker with the machine's clock), so neither the worker's start-up nor
 * the bench's polling is counted, and the same measure applies to both runtimes.
 *
 * Memory: `/proc/<pid>/status` of the worker and its descendants every 20 ms. A single
 * process reports `VmHWM` (the kernel's exact peak); a process tree (Celery prefork) the
 * largest sampled sum of `VmRSS` (copy-on-write pages shared with the parent are counted
 * once per process). Also the largest sum of `Pss` (`/proc/<pid>/smaps_rollup`, shared
 * pages split between their processes; sampled every 100 ms), the fairer figure for a
 * tree. PSS also splits the pages of the runtime's executable with every other process that
 * runs it: a celeriac worker shares `deno`'s code with the bench process, so its PSS is lower
 * than a worker alone on a machine would show. And the largest sum of `RssAnon` (anonymous
 * resident memory: the heaps, stacks and buffers of the process itself, no executable or
 * library pages, nothing another process shares), the part of the memory the worker's own
 * code decides. CPU: `utime + stime` of `/proc/<pid>/stat`, summed over the tree.
 *
 * @module
 */

import type { App } from "../src/app.ts";
import type { ResultMeta } from "../src/protocol/result.ts";
import { type Child, spawnChild } from "../tests/helpers/process.ts";
import { type CaseResult, withTimeout } from "./stats.ts";

const REPO = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/**
 * The V8 flags of `deno task worker` (the `--v8-flags=…` of deno.json's `worker` task), so
 * the worker-process cases run the worker the way users are told to; `undefined` if the task
 * sets none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { workerTaskV8Flags } from "./process.ts";
 * assert.equal(workerTaskV8Flags('{"tasks":{"worker":"deno run -A --v8-flags=--a,--b worker.ts"}}'), "--a,--b");
 * assert.equal(workerTaskV8Flags('{"tasks":{"worker":"deno run -A worker.ts"}}'), undefined);
 * ```
 */
export function workerTaskV8Flags(
  denoJson: string = Deno.readTextFileSync(`${REPO}/deno.json`),
): string | undefined {
  return v8FlagsIn(String(JSON.parse(denoJson).tasks?.worker ?? ""));
}

/**
 * The value of `--v8-flags=…` in a shell command line, or `undefined` if it has none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { v8FlagsIn } from "./process.ts";
 * assert.equal(v8FlagsIn("deno compile --v8-flags=--a -o x main.ts"), "--a");
 * assert.equal(v8FlagsIn("deno run --no-v8-flags=--a main.ts"), undefined);
 * ```
 */
export function v8FlagsIn(command: string): string | undefined {
  return /(?:^|\s)--v8-flags=(\S+)/.exec(command)?.[1];
}

/** What {@linkcode ProcMemory} measured. */
export interface ProcPeak {
  /** Peak resident memory, MiB (see the module doc). */
  peakRssMb: number;
  /** Peak of the summed proportional set size (`Pss`, shared pages split), MiB. */
  peakPssMb: number;
  /** Peak of the summed anonymous resident memory (`RssAnon`), MiB. */
  peakAnonMb: number;
  /** Processes seen (the worker plus its children). */
  processes: number;
}

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux). */
const CLK_TCK = 100;

function statusKb(pid: number): { rss: number; hwm: number; anon: number } | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1]);
    return { rss: field("VmRSS") || 0, hwm: field("VmHWM") || 0, anon: field("RssAnon") || 0 };
  } catch {
    return null; // exited
  }
}

function pssKb(pid: number): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1]) || 0;
  } catch {
    return null;
  }
}

/** User + system CPU seconds of one process so far, from `/proc/<pid>/stat`. */
export function cpuSeconds(pid: number): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** The process and its descendants (through `/proc/<pid>/task/<tid>/children`). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const task of Deno.readDirSync(`/proc/${out[i]}/task`)) {
        const children = Deno.readTextFileSync(`/proc/${out[i]}/task/${task.name}/children`);
        for (const child of children.split(/\s+/).filter(Boolean)) out.push(Number(child));
      }
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/**
 * Samples the memory and CPU time of a process tree from `/proc` (Linux). CPU samples are
 * kept with their wall-clock time so the CPU spent within a span of the run (the drain
 * between the marks) can be read afterwards with {@linkcode ProcMemory.cpuBetween}.
 */
export class ProcMemory {
  #pid: number;
  #timer?: ReturnType<typeof setInterval>;
  #hwmKb = 0;
  #sumKb = 0;
  #seen = new Set<number>();
  #cpu: { at: number; seconds: number }[] = [];
  #pssKb = 0;
  #anonKb = 0;
  #samples = 0;

  /** Samples `pid` and its descendants. */
  constructor(pid: number) {
    this.#pid = pid;
  }

  /** Takes one sample now and then every `intervalMs`. */
  start(intervalMs = 20): this {
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    return this;
  }

  /** Takes one sample. */
  sample(): void {
    let sum = 0;
    let cpu = 0;
    let pss = 0;
    let anon = 0;
    // smaps_rollup walks the page tables: every 5th sample only (100 ms).
    const withPss = this.#samples++ % 5 === 0;
    for (const pid of processTree(this.#pid)) {
      const kb = statusKb(pid);
      if (!kb) continue;
      this.#seen.add(pid);
      sum += kb.rss;
      anon += kb.anon;
      cpu += cpuSeconds(pid) ?? 0;
      if (withPss) pss += pssKb(pid) ?? 0;
      if (pid === this.#pid) this.#hwmKb = Math.max(this.#hwmKb, kb.hwm);
    }
    this.#sumKb = Math.max(this.#sumKb, sum);
    this.#pssKb = Math.max(this.#pssKb, pss);
    this.#anonKb = Math.max(this.#anonKb, anon);
    if (this.#seen.size) this.#cpu.push({ at: Date.now() / 1000, seconds: cpu });
  }

  /**
   * CPU seconds the tree used between two unix times (seconds), from the last sample at or
   * before `from` to the first at or after `to` (so slightly more than the span).
   */
  cpuBetween(from: number, to: number): number {
    const before = this.#cpu.findLast((s) => s.at <= from) ?? this.#cpu[0];
    const after = this.#cpu.find((s) => s.at >= to) ?? this.#cpu.at(-1);
    return before && after ? Math.max(0, after.seconds - before.seconds) : NaN;
  }

  /** Stops sampling (after a last sample, so call it before the process exits). */
  stop(): ProcPeak {
    clearInterval(this.#timer);
    this.#samples = 0; // the last sample reads PSS too
    this.sample();
    const kb = this.#seen.size > 1 ? this.#sumKb : Math.max(this.#hwmKb, this.#sumKb);
    return {
      peakRssMb: kb / 1024,
      peakPssMb: this.#pssKb / 1024,
      peakAnonMb: this.#anonKb / 1024,
      processes: this.#seen.size,
    };
  }
}

/** Python's naive UTC `isoformat()` (result `date_done`) → unix seconds. */
export function parseDateDone(text: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) throw new Error(`Cannot parse date_done "${text}"`);
  return Date.parse(`${m[1]}Z`) / 1000 + Number(`0.${m[2] ?? "0"}`);
}

/** Ids of a marked queue (see the module doc). */
export interface MarkedQueue {
  /** The first message, a `bench.mark`. */
  first: string;
  /** The last message, a `bench.mark`. */
  last: string;
  /** Every message's id, in order (marks included). */
  ids: string[];
  /** Messages queued, marks included. */
  tasks: number;
}

/**
 * Queues `bench.mark`, then `tasks - 2` × `name(args)` (`batch` concurrent sends at a time,
 * each asking for its result or not), then `bench.mark`, on `queue`. With `marks: false`,
 * `tasks` × `name(args)` and no mark.
 */
export async function queueMarked(
  producer: App,
  queue: string,
  options: {
    tasks: number;
    name: string;
    args?: unknown[];
    results: boolean;
    batch: number;
    marks?: boolean;
  },
): Promise<MarkedQueue> {
  const marks = options.marks ?? true;
  const ids: string[] = [];
  if (marks) ids.push((await producer.sendTask("bench.mark", [], {}, { queue })).id);
  const middle = options.tasks - (marks ? 2 : 0);
  for (let i = 0; i < middle; i += options.batch) {
    const k = Math.min(options.batch, middle - i);
    const sent = await Promise.all(
      Array.from({ length: k }, () =>
        producer.sendTask(options.name, options.args ?? [], {}, {
          queue,
          ignoreResult: !options.results,
        })),
    );
    for (const s of sent) ids.push(s.id);
  }
  if (marks) ids.push((await producer.sendTask("bench.mark", [], {}, { queue })).id);
  return { first: ids[0]!, last: ids.at(-1)!, ids, tasks: options.tasks };
}

async function metaOf(producer: App, id: string): Promise<ResultMeta> {
  const meta = await producer.asyncResult(id).meta();
  if (!meta || meta.status !== "SUCCESS" || !meta.date_done) {
    throw new Error(`Task ${id} has no SUCCESS result: ${JSON.stringify(meta)}`);
  }
  return meta;
}

/** A measured span, unix seconds. */
export interface Span {
  /** When the first task started. */
  start: number;
  /** When the last result was stored. */
  end: number;
}

/**
 * Waits until the last mark's result is stored, then returns the span from the first
 * mark's start (its result) to the last mark's `date_done`.
 */
export async function markSpan(
  producer: App,
  queued: MarkedQueue,
  timeoutMs: number,
): Promise<Span> {
  await producer.asyncResult(queued.last).get({ timeout: timeoutMs / 1000 });
  const first = await metaOf(producer, queued.first);
  const last = await metaOf(producer, queued.last);
  return { start: first.result as number, end: parseDateDone(last.date_done!) };
}

/**
 * Waits until every task in `ids` has a stored result (each task returns when it started),
 * then returns the span from the earliest start to the latest `date_done`.
 */
export async function resultSpan(
  producer: App,
  ids: readonly string[],
  timeoutMs: number,
): Promise<Span> {
  const deadline = performance.now() + timeoutMs;
  await producer.asyncResult(ids.at(-1)!).get({ timeout: timeoutMs / 1000 });
  let start = Infinity;
  let end = -Infinity;
  let pending = [...ids];
  while (pending.length) {
    const missing: string[] = [];
    for (let i = 0; i < pending.length; i += 500) {
      const chunk = pending.slice(i, i + 500);
      const metas = await Promise.all(chunk.map((id) => producer.asyncResult(id).meta()));
      metas.forEach((meta, j) => {
        if (!meta || !meta.date_done) return void missing.push(chunk[j]!);
        start = Math.min(start, meta.result as number);
        end = Math.max(end, parseDateDone(meta.date_done));
      });
    }
    pending = missing;
    if (pending.length) {
      if (performance.now() > deadline) {
        throw new Error(`Timed out: ${pending.length} of ${ids.length} results missing`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return { start, end };
}

/** A worker process to measure: how to start it, and how to stop it. */
export interface WorkerProcessHandle {
  /** The process (its output, its pid). */
  child: Child;
  /** Warm shutdown; resolves with the exit. */
  stop(): Promise<{ code: number; killed: boolean }>;
}

/** What {@linkcode processDrain} measured. */
export interface ProcessDrain {
  /** The drain's span (see {@linkcode markSpan}, {@linkcode resultSpan}), seconds. */
  seconds: number;
  /** Peak memory of the worker (process tree), MiB. */
  peakRssMb: number;
  /** Peak summed PSS of the worker (process tree), MiB. */
  peakPssMb: number;
  /** Peak summed anonymous resident memory of the worker (process tree), MiB. */
  peakAnonMb: number;
  /** Processes in the worker's tree. */
  processes: number;
  /** CPU time of the worker's tree within the span, seconds. */
  cpuSeconds: number;
  /** The worker's exit code after its warm shutdown. */
  exitCode: number;
}

/**
 * Runs one worker-process drain: the queue must already hold `queued`; `start()` spawns the
 * worker (it may wait for the worker's "ready." line: the marks time the drain). Samples
 * the worker's memory and CPU from then until the last result is stored, then stops it.
 */
export async function processDrain(
  producer: App,
  queued: MarkedQueue,
  start: () => Promise<WorkerProcessHandle>,
  options: { timeoutMs: number; span?: "marks" | "all"; what: string },
): Promise<ProcessDrain> {
  let memory: ProcMemory | undefined;
  let worker: WorkerProcessHandle | undefined;
  try {
    worker = await withTimeout(start(), 60_000, `${options.what}: worker start`);
    memory = new ProcMemory(worker.child.pid).start();
    const span = await withTimeout(
      options.span === "all"
        ? resultSpan(producer, queued.ids, options.timeoutMs)
        : markSpan(producer, queued, options.timeoutMs),
      options.timeoutMs + 1000,
      options.what,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${worker?.child.output.slice(-4000)}`);
    });
    await new Promise((r) => setTimeout(r, 25)); // one CPU sample after the span
    const peak = memory.stop();
    const cpu = memory.cpuBetween(span.start, span.end);
    memory = undefined;
    const exit = await worker.stop();
    return { seconds: span.end - span.start, ...peak, cpuSeconds: cpu, exitCode: exit.code };
  } finally {
    memory?.stop();
    await worker?.stop();
  }
}

/** Options of {@linkcode celeriacWorkerCase}. */
export interface CeleriacWorkerCase {
  /** Case id, e.g. `worker/redis/c50/results-on`. */
  id: string;
  /** `redis` or `rabbitmq`. */
  broker: string;
  /** Broker URL for the worker. */
  brokerUrl: string;
  /** Result backend URL for the worker. */
  backendUrl: string;
  /** Messages, marks included. */
  tasks: number;
  /** Worker concurrency (`-c`). */
  concurrency: number;
  /** Store the no-op tasks' results. */
  results: boolean;
  /** Time limit of the drain, ms. */
  timeoutMs: number;
  /** Concurrent sends when filling the queue. */
  sendBatch: number;
  /** V8 flags for the worker (`deno run --v8-flags=…`). */
  v8Flags?: string;
  /** `--prefetch-multiplier` of the worker. @default 1 */
  prefetch?: number;
}

/**
 * A celeriac worker process (`deno run worker.ts --app bench/tasks.ts --loglevel warning`,
 * network and read permissions only) drains `tasks` no-op messages queued beforehand.
 */
export async function celeriacWorkerCase(
  producer: App,
  queue: string,
  c: CeleriacWorkerCase,
): Promise<CaseResult> {
  const queued = await withTimeout(
    queueMarked(producer, queue, {
      tasks: c.tasks,
      name: "bench.noop",
      results: c.results,
      batch: c.sendBatch,
    }),
    c.timeoutMs,
    `${c.id}: enqueue`,
  );
  const hosts = new Set([c.brokerUrl, c.backendUrl].map((u) => new URL(u).host));
  const args = [
    "run",
    `--allow-net=${[...hosts].join(",")}`,
    `--allow-read=${REPO}`,
    ...(c.v8Flags ? [`--v8-flags=${c.v8Flags}`] : []),
    `${REPO}/worker.ts`,
    "--app",
    `${REPO}/bench/tasks.ts`,
    "--broker",
    c.brokerUrl,
    "--backend",
    c.backendUrl,
    "-Q",
    queue,
    "-c",
    String(c.concurrency),
    "-n",
    "bench@celeriac",
    "--loglevel",
    "warning",
    ...(c.prefetch && c.prefetch > 1 ? ["--prefetch-multiplier", String(c.prefetch)] : []),
  ];
  const run = await processDrain(producer, queued, () => {
    const child = spawnChild(Deno.execPath(), {
      args,
      cwd: REPO,
      env: { NO_COLOR: "1" },
      label: "celeriac bench worker",
    });
    return Promise.resolve({
      child,
      stop: () => child.stop({ graceMs: 10_000 }),
    });
  }, { timeoutMs: c.timeoutMs, what: c.id });
  const broker = await producer.broker();
  const left = await broker.queueSize(queue);
  if (left !== 0) throw new Error(`${c.id}: ${left} messages left in the queue`);
  if (c.results) {
    const state = await producer.asyncResult(queued.ids.at(-2)!).state;
    if (state !== "SUCCESS") throw new Error(`${c.id}: the last no-op's state is ${state}`);
  }
  return {
    id: c.id,
    case: "worker",
    runtime: "celeriac",
    pool: "async",
    broker: c.broker,
    results: c.results,
    concurrency: c.concurrency,
    tasks: c.tasks,
    seconds: run.seconds,
    perSecond: c.tasks / run.seconds,
    peakRssMb: run.peakRssMb,
    peakPssMb: run.peakPssMb,
    peakAnonMb: run.peakAnonMb,
    rssOf: "worker process",
    cpuUsPerTask: run.cpuSeconds * 1e6 / c.tasks,
    ...(c.v8Flags || (c.prefetch ?? 1) > 1
      ? {
        note: [
          c.v8Flags ? `--v8-flags=${c.v8Flags}` : "",
          (c.prefetch ?? 1) > 1 ? `--prefetch-multiplier ${c.prefetch}` : "",
        ].filter(Boolean).join(" "),
      }
      : {}),
  };
}
