/**
 * Cluster state built from events, as Celery 5.2's `celery.events.state.State` (what flower
 * and `celery events` keep): workers with their heartbeats (alive iff
 * `now < last heartbeat received + freq × 2`; `worker-offline` clears its heartbeats), tasks
 * with their state, timings, result or exception. Bounded: the least recently updated tasks and workers are dropped first.
 *
 * @module
 */

import { type CeleryEvent, taskStateOf } from "./event.ts";

/**
 * Celery's window, in percent: a worker is alive for `freq × 200 %` after its last heartbeat.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HEARTBEAT_EXPIRE_WINDOW } from "./state.ts";
 * assert.equal(2 * HEARTBEAT_EXPIRE_WINDOW / 100, 4); // freq 2 s ⇒ gone after 4 s of silence
 * ```
 */
export const HEARTBEAT_EXPIRE_WINDOW = 200;

/**
 * Heartbeats kept per worker.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HEARTBEAT_MAX } from "./state.ts";
 * assert.equal(HEARTBEAT_MAX, 4);
 * ```
 */
export const HEARTBEAT_MAX = 4;

/**
 * Task states in which a task is finished.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { READY_STATES } from "./state.ts";
 * assert.ok(READY_STATES.has("SUCCESS") && !READY_STATES.has("STARTED"));
 * ```
 */
export const READY_STATES: ReadonlySet<string> = new Set(["SUCCESS", "FAILURE", "REVOKED"]);

// Celery's precedence: lower index wins; unknown states sit where `null` is.
const PRECEDENCE = [
  "SUCCESS",
  "FAILURE",
  null,
  "REVOKED",
  "STARTED",
  "RECEIVED",
  "REJECTED",
  "RETRY",
  "PENDING",
];

function precedence(state: string): number {
  const i = PRECEDENCE.indexOf(state);
  return i < 0 ? PRECEDENCE.indexOf(null) : i;
}

/** Fields a `task-received` keeps even when it arrives after a later state. */
const RECEIVED_MERGE = new Set([
  "name",
  "args",
  "kwargs",
  "parent_id",
  "root_id",
  "retries",
  "eta",
  "expires",
]);

const ENVELOPE = new Set([
  "type",
  "hostname",
  "utcoffset",
  "pid",
  "clock",
  "timestamp",
  "local_received",
  "uuid",
]);

const num = (v: unknown): number | null => typeof v === "number" && Number.isFinite(v) ? v : null;
const str = (v: unknown): string | null => typeof v === "string" ? v : null;

/**
 * A worker as the events tell it (kept by {@linkcode State}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WorkerState } from "./state.ts";
 * let now = 10;
 * const w = new WorkerState("w1@h", () => now);
 * w.update({ type: "worker-heartbeat", freq: 2, processed: 3 });
 * w.heartbeat(10);
 * assert.deepEqual([w.alive, w.processed, w.heartbeatExpires], [true, 3, 14]);
 * now = 14;
 * assert.equal(w.status, "OFFLINE");
 * ```
 */
export class WorkerState {
  /** Node name. */
  readonly hostname: string;
  /** Process id. */
  pid: number | null = null;
  /** Heartbeat interval in seconds (Celery assumes 60 until told). */
  freq = 60;
  /** Last heartbeats, receiver's clock (unix seconds), oldest first, at most 4. */
  heartbeats: number[] = [];
  /** Its Lamport clock at its last event. */
  clock = 0;
  /** Tasks running at its last heartbeat. */
  active: number | null = null;
  /** Tasks it finished, at its last heartbeat. */
  processed: number | null = null;
  /** Load average `[1m, 5m, 15m]`. */
  loadavg: number[] | null = null;
  /** `py-celery`, `celeriac`, … */
  swIdent: string | null = null;
  /** Software version. */
  swVer: string | null = null;
  /** Operating system. */
  swSys: string | null = null;
  #now: () => number;

  /** Use {@linkcode State}. */
  constructor(hostname: string, now: () => number) {
    this.hostname = hostname;
    this.#now = now;
  }

  /** When it will count as gone without another heartbeat (unix seconds), or null. */
  get heartbeatExpires(): number | null {
    const last = this.heartbeats.at(-1);
    return last === undefined ? null : last + this.freq * (HEARTBEAT_EXPIRE_WINDOW / 100);
  }

  /** Whether it sent a heartbeat recently enough. */
  get alive(): boolean {
    const expires = this.heartbeatExpires;
    return expires !== null && this.#now() < expires;
  }

  /** `ONLINE` or `OFFLINE`. */
  get status(): "ONLINE" | "OFFLINE" {
    return this.alive ? "ONLINE" : "OFFLINE";
  }

  /** Records a heartbeat received at `localReceived`. */
  heartbeat(localReceived: number): void {
    if (this.heartbeats.length > HEARTBEAT_MAX - 1) this.heartbeats.shift();
    const hb = this.heartbeats;
    if (!hb.length || localReceived > hb[hb.length - 1]) hb.push(localReceived);
    else {
      let i = hb.length;
      while (i > 0 && hb[i - 1] > localReceived) i--;
      hb.splice(i, 0, localReceived);
    }
  }

  /** Applies the fields of a worker event. */
  update(event: CeleryEvent): void {
    this.pid = num(event.pid) ?? this.pid;
    this.freq = num(event.freq) ?? this.freq;
    this.clock = num(event.clock) ?? this.clock;
    this.active = num(event.active) ?? this.active;
    this.processed = num(event.processed) ?? this.processed;
    if (Array.isArray(event.loadavg)) this.loadavg = event.loadavg.map(Number);
    this.swIdent = str(event.sw_ident) ?? this.swIdent;
    this.swVer = str(event.sw_ver) ?? this.swVer;
    this.swSys = str(event.sw_sys) ?? this.swSys;
  }

  /** A plain object (for JSON). */
  toJSON(): Record<string, unknown> {
    return {
      hostname: this.hostname,
      pid: this.pid,
      freq: this.freq,
      heartbeats: this.heartbeats,
      clock: this.clock,
      active: this.active,
      processed: this.processed,
      loadavg: this.loadavg,
      sw_ident: this.swIdent,
      sw_ver: this.swVer,
      sw_sys: this.swSys,
      alive: this.alive,
    };
  }
}

/**
 * A task as the events tell it (kept by {@linkcode State}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskState } from "./state.ts";
 * const t = new TaskState("a");
 * t.apply({ type: "task-succeeded", uuid: "a", result: "5", runtime: 0.1, timestamp: 2 });
 * t.apply({ type: "task-received", uuid: "a", name: "tasks.add", timestamp: 1 }); // late
 * assert.deepEqual([t.state, t.name, t.result, t.ready], ["SUCCESS", "tasks.add", "5", true]);
 * ```
 */
export class TaskState {
  /** Task id. */
  readonly uuid: string;
  /** Task name (from `task-received` or `task-sent`). */
  name: string | null = null;
  /** State: PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED, … */
  state = "PENDING";
  /** Timestamp (unix seconds, sender's clock re-based) of each event type seen. */
  sent: number | null = null;
  /** @see sent */
  received: number | null = null;
  /** @see sent */
  started: number | null = null;
  /** @see sent */
  succeeded: number | null = null;
  /** @see sent */
  failed: number | null = null;
  /** @see sent */
  retried: number | null = null;
  /** @see sent */
  revoked: number | null = null;
  /** @see sent */
  rejected: number | null = null;
  /** Timestamp of the event that set the state. */
  timestamp: number | null = null;
  /** Repr of the positional arguments. */
  args: string | null = null;
  /** Repr of the keyword arguments. */
  kwargs: string | null = null;
  /** ISO `eta`, or null. */
  eta: string | null = null;
  /** ISO `expires`, or null. */
  expires: string | null = null;
  /** Retry count. */
  retries: number | null = null;
  /** Repr of the result (`task-succeeded`). */
  result: string | null = null;
  /** Repr of the exception (`task-failed`, `task-retried`). */
  exception: string | null = null;
  /** Traceback text. */
  traceback: string | null = null;
  /** Seconds it ran (`task-succeeded`). */
  runtime: number | null = null;
  /** Node that ran it. */
  worker: string | null = null;
  /** Producer node (`task-sent`). */
  client: string | null = null;
  /** Workflow root. */
  rootId: string | null = null;
  /** Parent task. */
  parentId: string | null = null;
  /** Queue, exchange and routing key (`task-sent`). */
  queue: string | null = null;
  /** @see queue */
  exchange: string | null = null;
  /** @see queue */
  routingKey: string | null = null;
  /** Lamport clock of its latest event. */
  clock = 0;
  /** Other fields of its events (custom events, `terminated`, `signum`, `expired`, …). */
  extra: Record<string, unknown> = {};

  /** Use {@linkcode State}. */
  constructor(uuid: string) {
    this.uuid = uuid;
  }

  /** Whether it finished (SUCCESS, FAILURE or REVOKED). */
  get ready(): boolean {
    return READY_STATES.has(this.state);
  }

  /**
   * Applies a task event with Celery's merge rule: an event whose state logically comes
   * before the current one (a late `task-received` after `task-succeeded`) does not change
   * the state; a late `task-received` only fills in name, args and the like.
   */
  apply(event: CeleryEvent): void {
    const type = event.type;
    const state = taskStateOf(type);
    const timestamp = num(event.timestamp);
    const subject = type.slice(type.indexOf("-") + 1);
    if (
      ["sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected"]
        .includes(subject)
    ) {
      (this as unknown as Record<string, unknown>)[subject] = timestamp;
    }
    let fields: [string, unknown][] = Object.entries(event).filter(([k]) => !ENVELOPE.has(k));
    if (state !== "RETRY" && this.state !== "RETRY" && precedence(state) > precedence(this.state)) {
      // Happened before the current state: merge, do not move the state back.
      if (state === "RECEIVED") fields = fields.filter(([k]) => RECEIVED_MERGE.has(k));
    } else {
      this.state = state;
      this.timestamp = timestamp;
    }
    const clock = num(event.clock);
    if (clock !== null) this.clock = clock;
    for (const [key, value] of fields) this.#set(key, value);
  }

  #set(key: string, value: unknown): void {
    switch (key) {
      case "name":
        this.name = str(value);
        return;
      case "args":
      case "kwargs":
      case "eta":
      case "expires":
      case "result":
      case "exception":
      case "traceback":
      case "queue":
      case "exchange":
        this[key] = value === null || value === undefined ? null : String(value);
        return;
      case "retries":
      case "runtime":
        this[key] = num(value);
        return;
      case "root_id":
        this.rootId = str(value);
        return;
      case "parent_id":
        this.parentId = str(value);
        return;
      case "routing_key":
        this.routingKey = str(value);
        return;
      default:
        this.extra[key] = value;
    }
  }

  /** A plain object (for JSON). */
  toJSON(): Record<string, unknown> {
    return {
      uuid: this.uuid,
      name: this.name,
      state: this.state,
      sent: this.sent,
      received: this.received,
      started: this.started,
      succeeded: this.succeeded,
      failed: this.failed,
      retried: this.retried,
      revoked: this.revoked,
      rejected: this.rejected,
      timestamp: this.timestamp,
      args: this.args,
      kwargs: this.kwargs,
      eta: this.eta,
      expires: this.expires,
      retries: this.retries,
      result: this.result,
      exception: this.exception,
      traceback: this.traceback,
      runtime: this.runtime,
      worker: this.worker,
      client: this.client,
      root_id: this.rootId,
      parent_id: this.parentId,
      queue: this.queue,
      exchange: this.exchange,
      routing_key: this.routingKey,
      clock: this.clock,
      ...this.extra,
    };
  }
}

/** Options of a {@linkcode State}. */
export interface StateOptions {
  /** Tasks kept (least recently updated dropped first). @default 10000 */
  maxTasks?: number;
  /** Workers kept. @default 5000 */
  maxWorkers?: number;
  /** Seconds of finished tasks kept for {@linkcode State.throughput}. @default 60 */
  throughputWindow?: number;
  /** The current time in unix seconds (for liveness). @default Date.now() / 1000 */
  now?: () => number;
}

/** Options of {@linkcode State.tasks}. */
export interface TaskQuery {
  /** Only tasks in this state. */
  state?: string;
  /** Only tasks of this name. */
  name?: string;
  /** Only tasks run by this worker. */
  worker?: string;
  /** At most this many. */
  limit?: number;
}

/**
 * The cluster as seen through events. Feed it every received event (`state.event(e)`, e.g.
 * as the receiver's `"*"` handler), then query it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { State } from "./state.ts";
 * const now = 1_000;
 * const state = new State({ now: () => now });
 * const base = { hostname: "w1@h", timestamp: now, local_received: now, utcoffset: 0, pid: 1 };
 * state.event({ ...base, type: "worker-online", freq: 2, clock: 1 });
 * state.event({ ...base, type: "task-received", uuid: "a", name: "tasks.add", args: "(2, 3)", clock: 2 });
 * state.event({ ...base, type: "task-succeeded", uuid: "a", result: "5", runtime: 0.01, clock: 3 });
 * assert.equal(state.task("a")?.state, "SUCCESS");
 * assert.equal(state.task("a")?.result, "5");
 * assert.deepEqual(state.aliveWorkers().map((w) => w.hostname), ["w1@h"]);
 * assert.deepEqual(state.counts(), { SUCCESS: 1 });
 * ```
 */
export class State {
  /** Events applied. */
  eventCount = 0;
  /** `task-received` events applied. */
  taskCount = 0;
  readonly #workers = new Map<string, WorkerState>();
  readonly #tasks = new Map<string, TaskState>();
  readonly #maxTasks: number;
  readonly #maxWorkers: number;
  readonly #window: number;
  readonly #now: () => number;
  #finished: number[] = [];

  /**
   * @throws {RangeError} When a limit is not a positive integer.
   */
  constructor(options: StateOptions = {}) {
    this.#maxTasks = options.maxTasks ?? 10_000;
    this.#maxWorkers = options.maxWorkers ?? 5_000;
    this.#window = options.throughputWindow ?? 60;
    this.#now = options.now ?? (() => Date.now() / 1000);
    for (const [name, v] of [["maxTasks", this.#maxTasks], ["maxWorkers", this.#maxWorkers]]) {
      if (!Number.isInteger(v) || (v as number) < 1) {
        throw new RangeError(`Cannot create State: ${name} must be a positive integer, got ${v}`);
      }
    }
  }

  /**
   * Applies one event. Worker events without `hostname` or `timestamp`, and task events
   * without `uuid` or `hostname`, are counted but change nothing. Returns the worker or task
   * the event was about, if any.
   */
  event(event: CeleryEvent): WorkerState | TaskState | undefined {
    this.eventCount++;
    const type = String(event.type ?? "");
    const dash = type.indexOf("-");
    const group = dash < 0 ? type : type.slice(0, dash);
    if (group === "worker") return this.#workerEvent(event, type.slice(dash + 1));
    if (group === "task") return this.#taskEvent(event, type.slice(dash + 1));
    return undefined;
  }

  #workerEvent(event: CeleryEvent, subject: string): WorkerState | undefined {
    const hostname = str(event.hostname);
    const timestamp = num(event.timestamp);
    if (!hostname || timestamp === null) return undefined;
    if (subject === "offline") {
      // Kept, but no longer alive (as Celery's State without an on_node_leave callback).
      const worker = this.#workers.get(hostname);
      if (!worker) return new WorkerState(hostname, this.#now);
      worker.update(event);
      worker.heartbeats = [];
      return worker;
    }
    const worker = this.#touchWorker(hostname);
    worker.update(event);
    const localReceived = num(event.local_received);
    if (localReceived !== null) worker.heartbeat(localReceived);
    return worker;
  }

  #touchWorker(hostname: string): WorkerState {
    let worker = this.#workers.get(hostname);
    if (worker) this.#workers.delete(hostname);
    else worker = new WorkerState(hostname, this.#now);
    this.#workers.set(hostname, worker);
    while (this.#workers.size > this.#maxWorkers) {
      this.#workers.delete(this.#workers.keys().next().value!);
    }
    return worker;
  }

  #taskEvent(event: CeleryEvent, subject: string): TaskState | undefined {
    const uuid = str(event.uuid);
    const hostname = str(event.hostname);
    if (!uuid || !hostname) return undefined;
    let task = this.#tasks.get(uuid);
    if (task) this.#tasks.delete(uuid);
    else task = new TaskState(uuid);
    this.#tasks.set(uuid, task);
    while (this.#tasks.size > this.#maxTasks) {
      this.#tasks.delete(this.#tasks.keys().next().value!);
    }
    if (subject === "sent") task.client = hostname;
    else {
      // A task event counts as a sign of life of its worker, as in Celery.
      const worker = this.#touchWorker(hostname);
      task.worker = hostname;
      const localReceived = num(event.local_received);
      if (localReceived !== null) worker.heartbeat(localReceived);
    }
    if (subject === "received") this.taskCount++;
    const wasReady = task.ready;
    task.apply(event);
    if (!wasReady && task.ready) {
      this.#finished.push(num(event.local_received) ?? this.#now());
      this.#trimFinished();
    }
    return task;
  }

  #trimFinished(): void {
    const cutoff = this.#now() - this.#window;
    let drop = 0;
    while (drop < this.#finished.length && this.#finished[drop] < cutoff) drop++;
    if (drop) this.#finished.splice(0, drop);
  }

  /** Every known worker (alive or not), most recently heard from last. */
  workers(): WorkerState[] {
    return [...this.#workers.values()];
  }

  /** Workers whose heartbeat has not expired. */
  aliveWorkers(): WorkerState[] {
    return this.workers().filter((w) => w.alive);
  }

  /** One worker by node name. */
  worker(hostname: string): WorkerState | undefined {
    return this.#workers.get(hostname);
  }

  /** Tasks, most recently updated first, filtered by the query. */
  tasks(query: TaskQuery = {}): TaskState[] {
    const out: TaskState[] = [];
    const all = [...this.#tasks.values()];
    for (let i = all.length - 1; i >= 0; i--) {
      const t = all[i];
      if (query.state !== undefined && t.state !== query.state) continue;
      if (query.name !== undefined && t.name !== query.name) continue;
      if (query.worker !== undefined && t.worker !== query.worker) continue;
      out.push(t);
      if (query.limit !== undefined && out.length >= query.limit) break;
    }
    return out;
  }

  /** One task by id. */
  task(uuid: string): TaskState | undefined {
    return this.#tasks.get(uuid);
  }

  /** Number of known tasks in each state. */
  counts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const t of this.#tasks.values()) counts[t.state] = (counts[t.state] ?? 0) + 1;
    return counts;
  }

  /** Task names seen, sorted. */
  taskTypes(): string[] {
    const names = new Set<string>();
    for (const t of this.#tasks.values()) if (t.name) names.add(t.name);
    return [...names].sort();
  }

  /**
   * Tasks finished per second over the last `seconds` (at most the `throughputWindow`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { State } from "./state.ts";
   * let now = 100;
   * const state = new State({ now: () => now });
   * for (const id of ["a", "b"]) {
   *   state.event({ type: "task-succeeded", uuid: id, hostname: "w", timestamp: now, local_received: now });
   * }
   * assert.equal(state.throughput(10), 0.2);
   * now += 20;
   * assert.equal(state.throughput(10), 0);
   * ```
   */
  throughput(seconds = 10): number {
    this.#trimFinished();
    const span = Math.min(seconds, this.#window);
    const cutoff = this.#now() - span;
    const n = this.#finished.filter((t) => t >= cutoff).length;
    return n / span;
  }

  /** Forgets every worker and task (or only finished tasks with `readyOnly`). */
  clear(readyOnly = false): void {
    if (readyOnly) {
      for (const [id, t] of this.#tasks) if (t.ready) this.#tasks.delete(id);
      return;
    }
    this.#workers.clear();
    this.#tasks.clear();
    this.#finished = [];
    this.eventCount = 0;
    this.taskCount = 0;
  }
}
