/**
 * Beat: sends each entry's task when its schedule says so, as ordinary Celery messages
 * (`app.sendTask`), so any worker (celeriac or Python) runs them.
 *
 * Duties, one tick at a time:
 * 1. leadership: with a highly available store, acquire or renew the lease every
 *    `leaseTtlMs / 3`; a beat without the lease only keeps trying (a follower). A new leader
 *    reloads every entry's state first;
 * 2. for each entry, ask the pure {@linkcode isDue} (last run's scheduled time, now);
 * 3. for a due entry, **commit first, then send**: the store atomically checks the lease and
 *    that the entry's state is still the one this beat read (compare-and-set), and records
 *    the slot as the new `lastRunAt`. Only then is the message published;
 * 4. sleep until the earliest next run, the next lease renewal, or `maxIntervalMs`.
 *
 * Delivery guarantee: **at most once per (entry, slot)**, as Celery's beat (which advances
 * `last_run_at` before sending). Two beats, a takeover at the boundary, or a restart cannot
 * send a slot twice, because the second commit of the same transition fails. A crash between
 * the commit and the publish, or a failed publish, loses that one run (logged when the
 * process lives to tell); the next slot is sent as usual.
 *
 * Catch-up: runs missed while no beat was running are sent **once**, at start, for the
 * latest missed slot (Celery's policy), never once per missed slot.
 *
 * @module
 */

import type { App } from "../app.ts";
import { hostName } from "../host.ts";
import { abortableSleep } from "../worker/timers.ts";
import { Logger, type LogLevel } from "../log.ts";
import { type BeatEntry, type BeatScheduleInput, normalizeBeatSchedule } from "./entry.ts";
import { checkTimeZone, describeSchedule, isDue } from "./schedule.ts";
import { type BeatStore, createBeatStore, type EntryState, type StoredState } from "./store.ts";

/** Options of a {@linkcode Beat}. */
export interface BeatOptions {
  /** The entries (Celery's `beat_schedule` form or a list). @default [] */
  schedule?: BeatScheduleInput;
  /**
   * Where state lives. @default a Redis store on the app's broker when it is Redis, an
   * in-process store for `memory://`, else the JSON file `celerybeat-schedule.json` in the
   * working directory
   */
  store?: BeatStore;
  /** IANA time zone for crontabs that name none (Celery's `timezone`). @default "UTC" */
  timezone?: string;
  /** Longest sleep between ticks, ms (Celery's `beat_max_loop_interval`). @default 300000 */
  maxIntervalMs?: number;
  /**
   * Lease time to live, ms (highly available stores). A dead leader is replaced within
   * `leaseTtlMs` plus one follower poll (`leaseTtlMs / 3`). @default 30000
   */
  leaseTtlMs?: number;
  /** Wait after a store error before trying again, ms. @default 1000 */
  retryMs?: number;
  /** Name in logs. @default `beat@<host>` */
  name?: string;
  /** Log level. @default "info" */
  logLevel?: LogLevel;
  /** Logger (overrides `logLevel`). */
  logger?: Logger;
  /** Stop on SIGINT/SIGTERM. @default false */
  handleSignals?: boolean;
}

/** Counters for stats and tests. */
export interface BeatCounters {
  /** Messages sent. */
  sent: number;
  /** Sends that failed after their slot was committed (those runs are lost). */
  sendErrors: number;
  /** Commits refused because another beat had moved the entry's state. */
  conflicts: number;
  /** Store errors (connection, file). */
  storeErrors: number;
}

/** Header names beat adds to each message it sends. */
export const BEAT_HEADERS = {
  /** The entry name. */
  entry: "celeriac_beat_entry",
  /** The scheduled time of the run (ISO 8601, UTC): with the entry, the run's identity. */
  slot: "celeriac_beat_slot",
} as const;

/**
 * A beat. Build it on an app, `start()` it, `stop()` it.
 *
 * @example Send a task every second on the memory broker (fake clock in tests)
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "../app.ts";
 * import { Beat } from "./beat.ts";
 * import { MemoryBeatStore } from "./store.ts";
 * const app = createApp({ broker: "memory://beat-doc" });
 * const beat = new Beat(app, {
 *   schedule: { tick: { task: "tasks.tick", schedule: 0.05 } },
 *   store: new MemoryBeatStore(),
 *   logLevel: "critical",
 * });
 * await beat.start();
 * const broker = await app.broker();
 * const deadline = Date.now() + 5000;
 * while ((await broker.queueSize("celery")) < 2 && Date.now() < deadline) {
 *   await new Promise((r) => setTimeout(r, 10));
 * }
 * await beat.stop();
 * assert.ok((await broker.queueSize("celery")) >= 2);
 * await app.close();
 * ```
 */
export class Beat {
  /** The validated entries. */
  readonly entries: readonly BeatEntry[];
  /** Zone for crontabs that name none. */
  readonly timezone: string;
  /** Name in logs. */
  readonly name: string;
  /** Counters. */
  readonly counters: BeatCounters = { sent: 0, sendErrors: 0, conflicts: 0, storeErrors: 0 };
  /** Resolves when the beat has stopped. */
  readonly done: Promise<void>;
  #app: App;
  #options: BeatOptions;
  #log: Logger;
  #store?: BeatStore;
  #state = new Map<string, StoredState>();
  #leader = false;
  #leaseCheckAt = 0;
  #maxIntervalMs: number;
  #leaseTtlMs: number;
  #retryMs: number;
  #loop?: Promise<void>;
  #stopping = false;
  #busy = false;
  #wake = new AbortController();
  #resolveDone!: () => void;
  #stopPromise?: Promise<void>;
  #signalHandlers: [Deno.Signal, () => void][] = [];

  /**
   * Validates the schedule and options; connects nothing yet.
   *
   * @throws {TypeError} For a bad entry (see `normalizeBeatSchedule`).
   * @throws {RangeError} For a bad option value or time zone.
   */
  constructor(app: App, options: BeatOptions = {}) {
    this.#app = app;
    this.#options = options;
    this.entries = Object.freeze(normalizeBeatSchedule(options.schedule));
    this.timezone = checkTimeZone(options.timezone ?? "UTC");
    this.#maxIntervalMs = positive("maxIntervalMs", options.maxIntervalMs ?? 300_000);
    this.#leaseTtlMs = positive("leaseTtlMs", options.leaseTtlMs ?? 30_000);
    this.#retryMs = positive("retryMs", options.retryMs ?? 1000);
    this.name = options.name ?? `beat@${hostName()}`;
    this.#log = options.logger ?? new Logger(options.logLevel ?? "info");
    this.#store = options.store;
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
  }

  /** The store (after `start()`, or when given). */
  get store(): BeatStore | undefined {
    return this.#store;
  }

  /** Whether this beat may send now (always true for stores that are not highly available). */
  get isLeader(): boolean {
    return this.#leader;
  }

  /** False while a tick (store calls, sends) is in flight; true between ticks and when stopped. */
  get idle(): boolean {
    return !this.#busy;
  }

  /** The last known state of an entry (for tests and inspection). */
  stateOf(name: string): EntryState | null {
    return this.#state.get(name)?.state ?? null;
  }

  /**
   * Opens the store and starts the loop.
   *
   * @throws {TypeError} When already started.
   * @throws {ConfigError} When the store cannot be used (e.g. a foreign state file).
   */
  async start(): Promise<void> {
    if (this.#loop) throw new TypeError("Cannot start beat: it is already started");
    this.#store ??= await defaultStore(this.#app);
    await this.#store.open();
    this.#state = await this.#store.load();
    this.#leader = !this.#store.highlyAvailable;
    if (this.#options.handleSignals) this.#installSignals();
    this.#log.info(
      `beat: Starting ${this.name} (${this.entries.length} entr${
        this.entries.length === 1 ? "y" : "ies"
      }, state: ${this.#store.description}${this.#store.highlyAvailable ? ", leased" : ""})`,
    );
    for (const e of this.entries) {
      this.#log.debug(
        `beat: ${e.name} -> ${e.task} ${describeSchedule(e.schedule, this.timezone)}`,
      );
    }
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let waitMs: number;
      this.#busy = true;
      try {
        waitMs = await this.tick();
      } catch (err) {
        this.counters.storeErrors++;
        this.#log.error(
          `beat: ${(err as Error)?.message ?? err}; trying again in ${this.#retryMs} ms`,
        );
        waitMs = this.#retryMs;
      } finally {
        this.#busy = false;
      }
      if (this.#stopping) break;
      await this.#sleep(waitMs);
    }
  }

  #sleep(ms: number): Promise<void> {
    return abortableSleep(Math.max(0, Math.min(ms, this.#maxIntervalMs)), this.#wake.signal);
  }

  /**
   * One pass: leadership, then every due entry. Returns the milliseconds until the next pass
   * is needed. `start()` calls it in a loop; tests and embedders may call it directly (after
   * `start()`, or with a `store` given and opened).
   *
   * @throws {Error} When the store fails (the loop logs it and tries again after `retryMs`).
   */
  async tick(now: number = Date.now()): Promise<number> {
    const store = this.#store;
    if (!store) throw new TypeError("Cannot tick beat: it has no store (call start() first)");
    let waitMs = this.#maxIntervalMs;
    if (store.highlyAvailable) {
      if (now >= this.#leaseCheckAt) {
        const was = this.#leader;
        this.#leader = false; // until the store says otherwise (it may throw)
        this.#leader = await store.acquire(this.#leaseTtlMs);
        this.#leaseCheckAt = now + Math.max(1, Math.floor(this.#leaseTtlMs / 3));
        if (this.#leader && !was) {
          this.#log.info(`beat: ${this.name} holds the lease: sending from now on`);
          this.#state = await store.load();
        } else if (!this.#leader && was) {
          this.#log.warning(`beat: ${this.name} lost the lease: another beat sends now`);
        }
      }
      waitMs = Math.min(waitMs, this.#leaseCheckAt - now);
      if (!this.#leader) return Math.max(0, waitMs);
    }
    for (const entry of this.entries) {
      if (this.#stopping) break;
      const next = await this.#tickEntry(store, entry, now);
      if (next === "not-leader") {
        this.#leader = false;
        this.#leaseCheckAt = 0;
        this.#log.warning(`beat: ${this.name} lost the lease: another beat sends now`);
        return 0;
      }
      waitMs = Math.min(waitMs, next);
    }
    return Math.max(0, waitMs);
  }

  /** Handles one entry; returns ms until it needs a look again, or "not-leader". */
  async #tickEntry(
    store: BeatStore,
    entry: BeatEntry,
    now: number,
  ): Promise<number | "not-leader"> {
    let stored = this.#state.get(entry.name) ?? null;
    let state = stored?.state ?? null;
    if (stored && !state) {
      this.#log.warning(
        `beat: ${entry.name}: stored state ${stored.raw} is unreadable: starting afresh`,
      );
    }
    if (state === null && entry.schedule.kind !== "at") {
      // First sight: start the entry's clock now (Celery's default last_run_at).
      const anchor: EntryState = { lastRunAt: now, totalRunCount: 0, lastSentAt: null };
      const result = await store.commit(entry.name, stored?.raw ?? null, anchor, this.#leaseTtlMs);
      if (result.status === "not-leader") return "not-leader";
      if (result.status === "conflict") return this.#conflict(entry, result.current);
      this.#state.set(entry.name, stored = result.stored);
      state = anchor;
    }
    const due = isDue(entry, state?.lastRunAt ?? null, now, this.timezone);
    if (!due.due) return due.nextInMs;
    const slot = due.slot!.getTime();
    const next: EntryState = {
      lastRunAt: slot,
      totalRunCount: (state?.totalRunCount ?? 0) + 1,
      lastSentAt: now,
    };
    const result = await store.commit(entry.name, stored?.raw ?? null, next, this.#leaseTtlMs);
    if (result.status === "not-leader") return "not-leader";
    if (result.status === "conflict") return this.#conflict(entry, result.current);
    this.#state.set(entry.name, result.stored);
    await this.#send(entry, slot);
    return due.nextInMs;
  }

  #conflict(entry: BeatEntry, current: StoredState | null): number {
    // Another beat (or an earlier leadership of ours) moved this entry: adopt its state and
    // look again at once; the slot it sent is not sent again.
    this.counters.conflicts++;
    this.#log.debug(`beat: ${entry.name}: state moved by another beat; reloaded`);
    if (current) this.#state.set(entry.name, current);
    else this.#state.delete(entry.name);
    return 0;
  }

  async #send(entry: BeatEntry, slot: number): Promise<void> {
    const slotIso = new Date(slot).toISOString();
    this.#log.info(`Scheduler: Sending due task ${entry.name} (${entry.task})`);
    try {
      const result = await this.#app.sendTask(entry.task, [...entry.args], { ...entry.kwargs }, {
        ...entry.options,
        headers: {
          ...entry.options.headers,
          [BEAT_HEADERS.entry]: entry.name,
          [BEAT_HEADERS.slot]: slotIso,
        },
      });
      this.counters.sent++;
      this.#log.debug(`beat: ${entry.name} slot ${slotIso} sent as ${result.id}`);
    } catch (err) {
      // At most once: the slot is committed, so it is not retried (as in Celery).
      this.counters.sendErrors++;
      this.#log.error(
        `beat: Cannot send ${entry.name} (${entry.task}) for ${slotIso}: ${
          (err as Error)?.message ?? err
        }; this run is lost, the next one is sent as usual`,
      );
    }
  }

  #installSignals(): void {
    const onSignal = () => {
      this.#log.warning("beat: Shutting down");
      this.stop().catch(() => {});
    };
    for (const sig of ["SIGINT", "SIGTERM"] as Deno.Signal[]) {
      try {
        Deno.addSignalListener(sig, onSignal);
        this.#signalHandlers.push([sig, onSignal]);
      } catch {
        // Signal not supported on this platform.
      }
    }
  }

  /**
   * Stops the loop (a send in progress finishes), releases the lease so another beat takes
   * over at once, and closes the store. The app is not closed.
   */
  stop(): Promise<void> {
    return this.#stopPromise ??= (async () => {
      this.#stopping = true;
      this.#wake.abort();
      try {
        await this.#loop;
        if (this.#loop && this.#store) {
          await this.#store.release().catch((err) =>
            this.#log.warning(`beat: Cannot release the lease: ${(err as Error)?.message ?? err}`)
          );
        }
        await this.#store?.close().catch(() => {});
      } finally {
        for (const [sig, handler] of this.#signalHandlers) Deno.removeSignalListener(sig, handler);
        this.#signalHandlers = [];
        this.#leader = false;
        if (this.#loop) this.#log.info(`beat: ${this.name} stopped.`);
        this.#resolveDone();
      }
    })();
  }
}

function positive(name: string, value: number): number {
  if (!(typeof value === "number" && Number.isFinite(value) && value > 0)) {
    throw new RangeError(`Cannot create beat: ${name} must be a number > 0, got ${value}`);
  }
  return value;
}

/**
 * The default store for an app: Redis on the broker's URL when the broker is Redis, in-process
 * for `memory://`, else the JSON file `celerybeat-schedule.json` in the working directory.
 */
export async function defaultStore(app: App): Promise<BeatStore> {
  const spec = app.brokerSpec;
  const kind = typeof spec === "string"
    ? spec.slice(0, spec.indexOf("://")).toLowerCase()
    : spec.kind;
  if (kind === "redis" || kind === "rediss") {
    if (typeof spec !== "string") {
      throw new TypeError("Cannot pick a beat store: give `store` when the broker is an instance");
    }
    return await createBeatStore(spec);
  }
  if (kind === "memory") return await createBeatStore("memory://");
  return await createBeatStore("celerybeat-schedule.json");
}
