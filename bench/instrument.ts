/**
 * Timing counters for `--trace`: wrappers around a broker and a result backend that count
 * calls and time each one in flight (fetch, publish, ack, requeue, store, waitFor), plus
 * the fetch batch sizes. Summed in-flight time exceeds wall time when calls overlap.
 *
 * @module
 */

import type { ResultBackend, ResultWrite, WaitOptions } from "../src/backends/backend.ts";
import type { Broker, DeadLetter, Delivery, FetchOptions, Route } from "../src/brokers/broker.ts";
import type { TransportMessage } from "../src/protocol/message.ts";
import type { ResultMeta } from "../src/protocol/result.ts";

/** Counters of one operation. */
export interface OpStats {
  /** Calls. */
  calls: number;
  /** Summed in-flight milliseconds. */
  totalMs: number;
  /** Slowest call, ms. */
  maxMs: number;
}

/** Everything counted while a case ran. */
export class TraceStats {
  /** Per operation. */
  readonly ops = new Map<string, OpStats>();
  /** Messages returned by fetch calls. */
  fetched = 0;
  /** Sum of `max` asked by fetch calls. */
  asked = 0;
  /** Fetch calls that returned nothing. */
  emptyFetches = 0;

  /** Times `fn` as operation `op`. */
  async time<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      const ms = performance.now() - start;
      let s = this.ops.get(op);
      if (!s) this.ops.set(op, s = { calls: 0, totalMs: 0, maxMs: 0 });
      s.calls++;
      s.totalMs += ms;
      if (ms > s.maxMs) s.maxMs = ms;
    }
  }

  /** Forgets everything counted so far. */
  reset(): void {
    this.ops.clear();
    this.fetched = this.asked = this.emptyFetches = 0;
  }

  /** A few lines for stderr. */
  format(label: string, wallMs: number): string {
    const lines = [`trace ${label} (wall ${wallMs.toFixed(0)} ms):`];
    for (const [op, s] of this.ops) {
      lines.push(
        `  ${op.padEnd(14)} calls ${String(s.calls).padStart(7)}  in-flight ${
          s.totalMs.toFixed(0).padStart(7)
        } ms  mean ${(s.totalMs / s.calls).toFixed(3).padStart(8)} ms  max ${
          s.maxMs.toFixed(1).padStart(7)
        } ms`,
      );
    }
    const fetches = this.ops.get("fetch")?.calls ?? 0;
    if (fetches) {
      lines.push(
        `  fetch batches: ${(this.fetched / fetches).toFixed(2)} messages/call (asked ${
          (this.asked / fetches).toFixed(2)
        }), ${this.emptyFetches} empty`,
      );
    }
    return lines.join("\n");
  }
}

function timedDelivery(d: Delivery, stats: TraceStats): Delivery {
  return {
    get message() {
      return d.message;
    },
    get decodeError() {
      return d.decodeError;
    },
    queue: d.queue,
    raw: d.raw,
    redelivered: d.redelivered,
    ack: () => stats.time("ack", () => d.ack()),
    ackWith: d.ackWith && ((write) => {
      const both = d.ackWith!(write);
      return both && stats.time("store+ack", () => both);
    }),
    requeue: (position) => stats.time("requeue", () => d.requeue(position)),
    deadLetter: (reason) => stats.time("deadLetter", () => d.deadLetter(reason)),
  };
}

/** A broker that counts and times the calls it forwards. */
export class TimedBroker implements Broker {
  #inner: Broker;
  #stats: TraceStats;

  /** Wraps `inner`. */
  constructor(inner: Broker, stats: TraceStats) {
    this.#inner = inner;
    this.#stats = stats;
  }
  /** The inner kind. */
  get kind(): string {
    return this.#inner.kind;
  }
  /** The inner URL. */
  get displayUrl(): string {
    return this.#inner.displayUrl;
  }
  /** The inner broker's. */
  get acksBeforeFetch(): boolean | undefined {
    return this.#inner.acksBeforeFetch;
  }
  /** Forwards. */
  connect(): Promise<void> {
    return this.#inner.connect();
  }
  /** Forwards. */
  declareQueue(queue: string): Promise<void> {
    return this.#inner.declareQueue(queue);
  }
  /** Forwards, timed. */
  publish(message: TransportMessage, route: Route): Promise<void> {
    return this.#stats.time("publish", () => this.#inner.publish(message, route));
  }
  /** Forwards, timed; wraps each delivery so its settlement is timed too. */
  async fetch(queues: readonly string[], options: FetchOptions): Promise<Delivery[]> {
    const got = await this.#stats.time("fetch", () => this.#inner.fetch(queues, options));
    this.#stats.fetched += got.length;
    this.#stats.asked += options.max;
    if (!got.length) this.#stats.emptyFetches++;
    return got.map((d) => timedDelivery(d, this.#stats));
  }
  /** Forwards. */
  queueSize(queue: string): Promise<number> {
    return this.#inner.queueSize(queue);
  }
  /** Forwards. */
  purge(queue: string): Promise<number> {
    return this.#inner.purge(queue);
  }
  /** Forwards. */
  deadLetters(limit?: number): Promise<DeadLetter[]> {
    return this.#inner.deadLetters(limit);
  }
  /** Forwards. */
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** A result backend that counts and times the calls it forwards. */
export class TimedBackend implements ResultBackend {
  #inner: ResultBackend;
  #stats: TraceStats;

  /** Wraps `inner`. */
  constructor(inner: ResultBackend, stats: TraceStats) {
    this.#inner = inner;
    this.#stats = stats;
  }
  /** The inner kind. */
  get kind(): string {
    return this.#inner.kind;
  }
  /** The inner URL. */
  get displayUrl(): string {
    return this.#inner.displayUrl;
  }
  /** Forwards. */
  connect(): Promise<void> {
    return this.#inner.connect();
  }
  /** Forwards, timed. */
  store(meta: ResultMeta): Promise<void> {
    return this.#stats.time("store", () => this.#inner.store(meta));
  }
  /** Forwards (the write is timed where a delivery applies it: `store+ack`). */
  get resultWrite(): ((meta: ResultMeta) => ResultWrite) | undefined {
    return this.#inner.resultWrite?.bind(this.#inner);
  }
  /** Forwards. */
  get(taskId: string): Promise<ResultMeta | null> {
    return this.#inner.get(taskId);
  }
  /** Forwards, timed. */
  waitFor(taskId: string, options?: WaitOptions): Promise<ResultMeta> {
    return this.#stats.time("waitFor", () => this.#inner.waitFor(taskId, options));
  }
  /** Forwards. */
  forget(taskId: string): Promise<void> {
    return this.#inner.forget(taskId);
  }
  /** Forwards. */
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Runs a `redis-cli` command against the bench's server and returns its stdout. */
export type RedisCli = (...args: string[]) => Promise<string>;

function infoFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/** Main-thread CPU seconds (user + system) from `INFO cpu` text. */
export function redisCpuSeconds(infoText: string): number {
  return mainThreadCpuSeconds(infoFields(infoText));
}

function mainThreadCpuSeconds(info: Map<string, string>): number {
  const user = Number(info.get("used_cpu_user_main_thread") ?? info.get("used_cpu_user") ?? 0);
  const sys = Number(info.get("used_cpu_sys_main_thread") ?? info.get("used_cpu_sys") ?? 0);
  return user + sys;
}

/**
 * Server-side counters of the bench's redis-server over the measured part: main-thread CPU
 * time and `INFO commandstats` (reset at `begin`).
 */
export class RedisServerStats {
  #cli: RedisCli;
  #cpuAtBegin = 0;

  /** Uses `cli` to talk to the server. */
  constructor(cli: RedisCli) {
    this.#cli = cli;
  }

  /** Resets the command stats and notes the CPU time. */
  async begin(): Promise<void> {
    await this.#cli("CONFIG", "RESETSTAT");
    this.#cpuAtBegin = mainThreadCpuSeconds(infoFields(await this.#cli("INFO", "cpu")));
  }

  /** Lines for stderr: CPU time and per-command time, with microseconds per task. */
  async format(label: string, wallMs: number, tasks: number): Promise<string> {
    const cpuMs = (mainThreadCpuSeconds(infoFields(await this.#cli("INFO", "cpu"))) -
      this.#cpuAtBegin) * 1000;
    const stats = infoFields(await this.#cli("INFO", "commandstats"));
    const rows: [string, number, number][] = [];
    for (const [key, value] of stats) {
      const m = /calls=(\d+),usec=(\d+)/.exec(value);
      if (key.startsWith("cmdstat_") && m) rows.push([key.slice(8), Number(m[1]), Number(m[2])]);
    }
    rows.sort((a, b) => b[2] - a[2]);
    const lines = [
      `redis-server ${label}: main thread CPU ${cpuMs.toFixed(0)} ms of ${
        wallMs.toFixed(0)
      } ms wall (${(100 * cpuMs / wallMs).toFixed(0)}%), ${
        (1000 * cpuMs / tasks).toFixed(1)
      } us/task; commands (script totals include the commands they call):`,
    ];
    for (const [cmd, calls, usec] of rows) {
      if (cmd === "info" || cmd.startsWith("config")) continue;
      lines.push(
        `  ${cmd.padEnd(12)} calls ${String(calls).padStart(7)}  ${
          (usec / 1000).toFixed(1).padStart(7)
        } ms  ${(usec / calls).toFixed(2).padStart(7)} us/call  ${
          (usec / tasks).toFixed(2).padStart(6)
        } us/task`,
      );
    }
    return lines.join("\n");
  }
}
