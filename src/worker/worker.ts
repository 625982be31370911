/**
 * The worker: consumer → scheduler (ETA) → pool → reporter, wired in plain code.
 *
 * Duties:
 * 1. fetch from the queues only as many messages as there are free pool slots;
 * 2. triage each (run, hold until its ETA, revoke if expired, dead-letter if it cannot run);
 * 3. run tasks on the async pool and report results (store, then ack: at-least-once);
 * 4. shut down warm (stop fetching, finish running tasks up to a timeout, requeue what was
 *    reserved but not started) or cold (abort running tasks and requeue their messages).
 *
 * @module
 */

import type { App } from "../app.ts";
import { Bag } from "../bag.ts";
import type { Broker, Delivery } from "../brokers/broker.ts";
import { Mailbox } from "../control/mailbox.ts";
import { TaskNotRegisteredError } from "../errors.ts";
import { hostName } from "../host.ts";
import { Logger, type LogLevel } from "../log.ts";
import type { SerializedException } from "../protocol/exception.ts";
import type { DeliveryInfo } from "../protocol/message.ts";
import { buildContext, executeWithLimits, type Outcome } from "./executor.ts";
import { Hooks, type TaskHook, type TaskHookMap } from "./hooks.ts";
import { WorkerEvents } from "../events/worker_events.ts";
import { AsyncPool } from "./pool.ts";
import { parseRateLimit, TokenBucket } from "./rate_limit.ts";
import { planRetry } from "./retry.ts";
import { ThreadPool, type ThreadSpec, threadSpecOf } from "./thread_pool.ts";
import { RevokedSet } from "./revoked.ts";
import { Reporter } from "./reporter.ts";
import { runInTaskScope } from "../canvas/current.ts";
import { Workflow } from "../canvas/worker_side.ts";
import { type Request, triage } from "./request.ts";
import { abortableSleep, type LongTimer, setLongTimeout } from "./timers.ts";

/** Options of a {@linkcode Worker}. */
export interface WorkerOptions {
  /** Queues to consume. @default [app.defaultQueue] */
  queues?: string[];
  /** Tasks run at once. @default 10 */
  concurrency?: number;
  /** Node name `name@host`. @default `celeriac@<host>` */
  name?: string;
  /** Ack after the task finished (at-least-once); `false` is Celery's early ack. @default true */
  acksLate?: boolean;
  /** Log level. @default "info" */
  logLevel?: LogLevel;
  /** Logger (overrides `logLevel`). */
  logger?: Logger;
  /** Seconds a warm shutdown waits for running tasks before going cold. @default 60 */
  shutdownTimeout?: number;
  /** Milliseconds one fetch waits for a message. @default 1000 */
  fetchTimeoutMs?: number;
  /**
   * Celery's `worker_prefetch_multiplier`: the worker keeps up to `concurrency × multiplier`
   * messages reserved (running plus waiting for a slot), so the next task is at hand when a
   * slot frees. `1` fetches only for free slots. Reserved messages stay unacked in the broker
   * (they come back if the worker dies) and go back to the front of their queue on shutdown.
   * @default 1
   */
  prefetchMultiplier?: number;
  /** Stop once the queues are empty and nothing runs (burst mode). @default false */
  burst?: boolean;
  /** Warm shutdown on SIGINT/SIGTERM, cold on a second signal. @default false */
  handleSignals?: boolean;
  /** Default soft time limit in seconds for every task. @default none */
  softTimeLimit?: number;
  /** Default hard time limit in seconds for every task. @default none */
  timeLimit?: number;
  /**
   * Messages held outside the pool at most (ETA tasks waiting for their time, rate-limited
   * tasks waiting for a token); beyond it the worker stops fetching and they stay in the
   * broker. @default 1000
   */
  maxHeld?: number;
  /** JSON file where revoked ids persist across restarts (Celery's `--statedb`). @default none */
  stateFile?: string;
  /** Milliseconds between visibility refreshes of held ETA messages. @default 60000 */
  heldTouchIntervalMs?: number;
  /** Random source for retry jitter (tests inject one). @default Math.random */
  random?: () => number;
  /** Web Worker threads for tasks declared with `threadTask` (CPU-bound work). @default 2 */
  threads?: number;
  /**
   * Send task events (`-E`). Worker events (online, heartbeat, offline) are always sent when
   * the broker has fanout, as Celery does. @default false
   */
  sendEvents?: boolean;
  /** Seconds between `worker-heartbeat` events. @default 2 */
  heartbeatInterval?: number;
  /**
   * Remote control (Celery's pidbox, `docs/control.md`): `true` serves every command,
   * `{ allow: [...] }` only the listed ones (others get an error reply), `false` none.
   * Needs a broker with fanout (Redis, RabbitMQ, the embedded store, memory). @default true
   */
  remoteControl?: boolean | { allow: string[] };
}

/** A message the worker holds or runs, as remote control's `inspect` shows it. */
export interface RequestSnapshot {
  /** Task id. */
  id: string;
  /** The decoded message. */
  message: Request["message"];
  /** Queue it was fetched from. */
  queue: string;
  /** Exchange and routing key it was published with, when the broker says. */
  deliveryInfo: DeliveryInfo | undefined;
  /** Whether the broker delivered it before. */
  redelivered: boolean;
}

interface Running {
  request: Request;
  controller: AbortController;
  abandoned: boolean;
  /** Revoked with terminate while running: reported REVOKED whatever it returns. */
  terminated: boolean;
  /** Unix seconds when it started. */
  startedAt: number;
  /** Acked already (early ack). */
  acknowledged: boolean;
}

/** A message held outside the pool: an ETA task, or a rate-limited one waiting for a token. */
interface Held {
  request: Request;
  timer: LongTimer;
  /** When it is due (ETA tasks), or null when it waits for a rate-limit token. */
  eta: Date | null;
  touch?: ReturnType<typeof setInterval>;
}

/** Counters for stats and tests. */
export interface WorkerCounters {
  /** Tasks finished (success or failure). */
  processed: number;
  /** Finished tasks by name. */
  total: Record<string, number>;
  /** Messages dead-lettered. */
  rejected: number;
}

/**
 * A worker.
 *
 * @example Run tasks in-process, then drain and stop
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://worker-doc" });
 * const double = app.task("tasks.double", (x: number) => 2 * x);
 * const result = await double.delay(21);
 * const worker = new Worker(app, { burst: true, logLevel: "critical" });
 * await worker.start();
 * await worker.done;
 * assert.equal(await result.get({ timeout: 1 }), 42);
 * await app.close();
 * ```
 */
export class Worker {
  /** Node name. */
  readonly name: string;
  /** Queues consumed. */
  readonly queues: string[];
  /** Counters. */
  readonly counters: WorkerCounters = { processed: 0, total: {}, rejected: 0 };
  /** Resolves when the worker has fully stopped. */
  readonly done: Promise<void>;
  /** Task lifecycle hooks (events, remote control and metrics listen here). */
  readonly hooks: Hooks = new Hooks();
  /** Revoked task ids (Celery's revoked set). */
  readonly revoked: RevokedSet;
  #app: App;
  #options: WorkerOptions;
  #log: Logger;
  #pool: AsyncPool;
  #broker?: Broker;
  #reporter?: Reporter;
  /** Running tasks (a bag, not a map: see `src/bag.ts`; two deliveries may share an id). */
  #running = new Bag<Running>();
  #held = new Map<string, Held>();
  /**
   * Results being stored and messages being acked, of tasks that finished: a count and the
   * waiters for it to reach 0 (not a set of promises: see `src/bag.ts`).
   */
  #settling = 0;
  #settledWaiters: (() => void)[] = [];
  /**
   * Of those, how many still count in the prefetch window: all of them, except those whose
   * ack is issued to a broker that applies it before any later fetch (`acksBeforeFetch`).
   */
  #settlingInWindow = 0;
  /** Prefetched requests waiting for a free slot, oldest first. */
  #ready: Request[] = [];
  #prefetchMultiplier: number;
  #buckets = new Map<string, TokenBucket | null>();
  #timeLimits = new Map<string, { soft: number | null; hard: number | null }>();
  #maxHeld: number;
  /** Milliseconds one fetch waits for a message (`fetchTimeoutMs`). */
  #fetchTimeoutMs: number;
  #threadPool?: ThreadPool;
  #stopFetch = new AbortController();
  #storeBackoffMs = 0;
  #stopping = false;
  #cold = new AbortController();
  #coldRequeues: Promise<void> = Promise.resolve();
  #shutdownPromise?: Promise<void>;
  #loop?: Promise<void>;
  #resolveDone!: () => void;
  #signalHandlers: [Deno.Signal, () => void][] = [];
  #startedAt = 0;
  #events?: WorkerEvents;
  #mailbox?: Mailbox;

  /**
   * @throws {RangeError} For a bad concurrency or timeout.
   */
  constructor(app: App, options: WorkerOptions = {}) {
    this.#app = app;
    this.#options = options;
    this.name = options.name ?? `celeriac@${hostName()}`;
    this.queues = options.queues?.length ? [...options.queues] : [app.defaultQueue];
    this.#log = options.logger ?? new Logger(options.logLevel ?? "info");
    this.hooks.onError = (error, hook) =>
      this.#log.error(`A '${hook}' hook listener failed: ${(error as Error)?.message ?? error}`);
    this.#pool = new AsyncPool(options.concurrency ?? 10);
    this.#pool.onSlotFree = () => this.#startReady();
    this.#prefetchMultiplier = options.prefetchMultiplier ?? 1;
    if (!Number.isInteger(this.#prefetchMultiplier) || this.#prefetchMultiplier < 1) {
      throw new RangeError(
        `Cannot create worker: prefetchMultiplier must be an integer >= 1, got ${options.prefetchMultiplier}`,
      );
    }
    this.#maxHeld = options.maxHeld ?? 1000;
    this.#fetchTimeoutMs = options.fetchTimeoutMs ?? 1000;
    if (!(this.#maxHeld >= 1)) {
      throw new RangeError(`Cannot create worker: maxHeld must be >= 1, got ${options.maxHeld}`);
    }
    this.revoked = new RevokedSet({ stateFile: options.stateFile });
    for (const task of app.tasks.values()) {
      if (task.options.rateLimit !== undefined) {
        this.setRateLimit(task.name, task.options.rateLimit);
      }
    }
    const shutdown = options.shutdownTimeout ?? 60;
    if (!(shutdown >= 0)) {
      throw new RangeError(`Cannot create worker: shutdownTimeout must be >= 0, got ${shutdown}`);
    }
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
  }

  /**
   * Listens to a task lifecycle hook; returns a function that stops listening.
   *
   * @example
   * ```ts ignore
   * worker.on("failed", ({ message, error }) => alert(message.task, error));
   * ```
   */
  on<K extends TaskHook>(hook: K, listener: (payload: TaskHookMap[K]) => void): () => void {
    return this.hooks.on(hook, listener);
  }

  /** The pool (size, active, free). */
  get pool(): AsyncPool {
    return this.#pool;
  }

  /** Ids of tasks running now. */
  get activeIds(): string[] {
    return this.#running.inOrder().map((r) => r.request.message.id);
  }

  /** Ids of ETA tasks held until their time. */
  get scheduledIds(): string[] {
    return [...this.#held].filter(([, h]) => h.eta).map(([id]) => id);
  }

  /**
   * Held messages: ETA tasks (`eta` set), rate-limited ones waiting for a token and
   * prefetched ones waiting for a slot (`eta` null).
   */
  get held(): (RequestSnapshot & { eta: Date | null })[] {
    return [
      ...[...this.#held].map(([id, h]) => ({ ...snapshot(id, h.request), eta: h.eta })),
      ...this.#ready.map((r) => ({ ...snapshot(r.message.id, r), eta: null })),
    ];
  }

  /** Messages the worker may keep reserved at once: `concurrency × prefetchMultiplier`. */
  get prefetchCount(): number {
    return this.#pool.size * this.#prefetchMultiplier;
  }

  /**
   * Most messages one fetch asks for. On a broker with `acksBeforeFetch` (Redis) it is half
   * the window, rounded up: the window then fills in two waves, and while the broker settles
   * one wave and fetches its successors, the worker runs the other (docs/architecture.md,
   * "Two waves"). Elsewhere the whole window (RabbitMQ already pushes ahead of the worker).
   */
  get #wave(): number {
    const window = this.prefetchCount;
    return this.#broker?.acksBeforeFetch ? Math.ceil(window / 2) : window;
  }

  /** Requests running now (for inspect), with their start time (unix seconds). */
  get active(): (RequestSnapshot & { timeStart: number; acknowledged: boolean })[] {
    return this.#running.inOrder().map((r) => ({
      ...snapshot(r.request.message.id, r.request),
      timeStart: r.startedAt,
      acknowledged: r.acknowledged,
    }));
  }

  /** The worker-wide default time limits in seconds (`null`: none). */
  get defaultTimeLimits(): { soft: number | null; hard: number | null } {
    return { soft: this.#options.softTimeLimit ?? null, hard: this.#options.timeLimit ?? null };
  }

  /** The remote-control mailbox once started (`undefined` when off or unsupported). */
  get mailbox(): Mailbox | undefined {
    return this.#mailbox;
  }

  /**
   * Starts consuming from one more queue (remote control's `add_consumer`): declares it,
   * binds it to `exchange` with `routingKey` when a named exchange is given and the broker
   * can bind. Returns false when the queue is consumed already.
   */
  async addQueue(
    queue: string,
    binding: { exchange?: string; routingKey?: string } = {},
  ): Promise<boolean> {
    if (this.queues.includes(queue)) return false;
    const broker = this.#broker ?? await this.#app.broker();
    await broker.declareQueue(queue);
    if (binding.exchange && binding.exchange !== queue && broker.bindQueue) {
      await broker.bindQueue(queue, binding.exchange, binding.routingKey ?? queue);
    }
    if (this.queues.includes(queue)) return false;
    this.queues.push(queue);
    this.#log.info(`consumer: Started consuming from queue '${queue}'`);
    return true;
  }

  /**
   * Stops consuming from a queue (remote control's `cancel_consumer`); what was fetched
   * from it still runs. Returns false when the queue was not consumed.
   */
  cancelQueue(queue: string): boolean {
    const i = this.queues.indexOf(queue);
    if (i < 0) return false;
    this.queues.splice(i, 1);
    this.#log.info(`consumer: Stopped consuming from queue '${queue}'`);
    return true;
  }

  /**
   * Sets (or with a falsy limit removes) the rate limit of a task type on this worker.
   *
   * @throws {RangeError} For a limit that is not a Celery rate (`"10/s"`, `"100/m"`, …).
   */
  setRateLimit(taskName: string, limit: string | number | null | undefined): void {
    const rate = parseRateLimit(limit);
    this.#buckets.set(taskName, rate === null ? null : new TokenBucket(rate));
  }

  /** Sets the soft and hard time limits (seconds, `null` = none) of a task type on this worker. */
  setTimeLimit(taskName: string, soft: number | null, hard: number | null): void {
    this.#timeLimits.set(taskName, { soft, hard });
  }

  /**
   * Revokes task ids: a message with one of them is acked and marked REVOKED instead of
   * run; held ones are released now. With `terminate`, running ones have their signal
   * aborted and are reported REVOKED ("terminated"). Returns the ids that were running.
   */
  revoke(ids: readonly string[], options: { terminate?: boolean } = {}): string[] {
    this.revoked.add(ids);
    const terminated: string[] = [];
    for (const id of ids) {
      const held = this.#held.get(id);
      if (held) {
        this.#release(id, held);
        this.#reportRevoked(held.request, "revoked", true);
      }
      const ready = this.#ready.findIndex((r) => r.message.id === id);
      if (ready >= 0) this.#reportRevoked(this.#ready.splice(ready, 1)[0], "revoked", true);
      if (!options.terminate) continue;
      let found = false;
      for (const running of this.#running.values()) {
        if (running.request.message.id !== id) continue;
        running.terminated = true;
        running.controller.abort(new Error(`Task ${id} revoked with terminate`));
        found = true;
      }
      if (found) terminated.push(id);
    }
    return terminated;
  }

  #reportRevoked(
    request: Request,
    reason: "revoked" | "expired" | "terminated",
    ack: boolean,
  ): void {
    this.hooks.emit("revoked", {
      message: request.message,
      expired: reason === "expired",
      terminated: reason === "terminated",
      signum: reason === "terminated" ? 15 : null,
    });
    void this.#reporter!.revoked(request.message, request.delivery, reason, ack);
  }

  #release(id: string, held: Held): void {
    held.timer.cancel();
    clearInterval(held.touch);
    this.#held.delete(id);
  }

  /**
   * The worker's events once started on a broker with fanout (remote control enables and
   * disables task events, and sends heartbeats, here); `undefined` otherwise.
   */
  get events(): WorkerEvents | undefined {
    return this.#events?.supported ? this.#events : undefined;
  }

  /** Milliseconds since start. */
  get uptimeMs(): number {
    return this.#startedAt ? Date.now() - this.#startedAt : 0;
  }

  /**
   * Connects and starts consuming in the background.
   *
   * @throws {BrokerConnectionError} When the broker or backend cannot be reached.
   * @throws {PermissionMissingError} When Deno denies a permission.
   */
  async start(): Promise<void> {
    if (this.#loop) throw new TypeError("Cannot start worker: it is already started");
    const broker = await this.#app.broker();
    const backend = await this.#app.backend();
    for (const q of this.queues) await broker.declareQueue(q, this.#app.router.queueOptions(q));
    this.#broker = broker;
    this.#reporter = new Reporter(backend, this.#log, new Workflow(this.#app, backend, this.#log), {
      acksBeforeFetch: broker.acksBeforeFetch === true,
    });
    this.#startedAt = Date.now();
    if (this.#options.handleSignals) this.#installSignals();
    this.#events = new WorkerEvents(this, broker, {
      taskEvents: this.#options.sendEvents ?? false,
      heartbeatInterval: this.#options.heartbeatInterval,
      onError: (err) => this.#log.warning(`events: ${(err as Error)?.message ?? err}`),
    });
    await this.#events.start();
    await this.#startMailbox(broker);
    this.#log.info(`${this.name} ready.`);
    this.#loop = this.#consume();
    void this.#loop.then(() => this.#shutdown());
  }

  async #startMailbox(broker: Broker): Promise<void> {
    const rc = this.#options.remoteControl ?? true;
    if (rc === false || !broker.subscribe || !broker.broadcast) return;
    const mailbox = new Mailbox(this, this.#app, broker, {
      allow: rc === true ? null : rc.allow,
      clock: this.events?.clock,
      log: this.#log,
    });
    try {
      await mailbox.start();
      this.#mailbox = mailbox;
    } catch (err) {
      this.#log.warning(`remote control: Cannot start: ${(err as Error)?.message ?? err}`);
    }
  }

  #installSignals(): void {
    let count = 0;
    const onSignal = () => {
      count++;
      if (count === 1) {
        this.#log.warning("worker: Warm shutdown (press Ctrl+C again for cold shutdown)");
        this.stop().catch(() => {});
      } else {
        this.#log.warning("worker: Cold shutdown");
        this.terminate().catch(() => {});
      }
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

  async #consume(): Promise<void> {
    const broker = this.#broker!;
    let backoffMs = 0;
    // A fetch sent before the batch in hand was dispatched (see #fetchAhead).
    let ahead: Promise<Delivery[]> | undefined;
    // Whether the fetch awaited now decided its successor as its messages were taken, before
    // they were decoded (a broker that calls FetchOptions.onTaken); else it is decided once
    // the fetch resolves. (A fetch sent ahead whose messages are taken before the loop awaits
    // it leaves the decision to the loop.)
    let decidedOnTake = false;
    const onTaken = (count: number) => {
      if (this.#stopping || ahead) return;
      decidedOnTake = true;
      ahead = this.#fetchAhead(count, onTaken);
    };
    while (!this.#stopping) {
      let fetching = ahead;
      ahead = undefined;
      decidedOnTake = false;
      if (!fetching) {
        if (this.#storeBackoffMs > 0) {
          // The result backend is failing and the messages go back to the queue: fetching
          // at once would re-run them in a tight loop (on the memory broker, a loop of
          // microtasks that starves timers and signals).
          await this.#sleep(this.#storeBackoffMs);
          if (this.#stopping) break;
        }
        const room = this.#room(0);
        if (room <= 0) {
          // stop() and terminate() wake it too. (Not a race with a "stopped" promise: each
          // race would leave a reaction on that promise until the worker stops.)
          await this.#pool.changed();
          continue;
        }
        if (this.queues.length === 0) {
          // Every queue was cancelled (remote control): wait for an add_consumer.
          await this.#sleep(this.#fetchTimeoutMs);
          continue;
        }
        fetching = this.#fetch(room, 0, onTaken);
        if (!fetching) {
          // Enough messages wait outside the pool: leave the rest in the broker for now.
          await this.#sleep(100);
          continue;
        }
      }
      let deliveries: Delivery[];
      try {
        deliveries = await fetching;
        backoffMs = 0;
      } catch (err) {
        if (this.#stopping) break;
        backoffMs = Math.min(Math.max(backoffMs * 2, 100), 5000);
        this.#log.error(
          `consumer: Cannot fetch from ${broker.displayUrl}: ${
            (err as Error)?.message ?? err
          }; trying again in ${backoffMs} ms`,
        );
        await this.#sleep(backoffMs);
        continue;
      }
      if (this.#stopping) {
        // Fetched as the stop began (a fetch already in flight): reserved but not started,
        // so it goes back to the front of its queue, in order.
        await this.#restore(deliveries);
        break;
      }
      if (!decidedOnTake) {
        ahead = this.#fetchAhead(deliveries.length, onTaken);
        // The client writes that fetch in a microtask: let it go before the tasks run.
        if (ahead) await null;
      }
      for (const delivery of deliveries) this.#dispatch(delivery);
      if (
        this.#options.burst && deliveries.length === 0 && this.#pool.active === 0 &&
        this.#held.size === 0 && this.#settling === 0
      ) {
        this.#log.info("worker: Burst mode: queues are empty, stopping");
        this.#stopping = true;
      }
    }
    if (ahead) {
      // Sent just before the stop: whatever it reserved goes back, in order.
      const late = await ahead.catch(() => [] as Delivery[]);
      if (late.length) await this.#restore(late);
    }
  }

  /**
   * Room to reserve: free slots, plus the prefetch window beyond them, less `inHand`
   * messages fetched but not yet dispatched.
   */
  #room(inHand: number): number {
    return this.prefetchCount - this.#pool.active - this.#ready.length -
      this.#settlingInWindow - inHand;
  }

  /**
   * Fetches up to `room` messages, leaving room in `#held` for `inHand` ones too;
   * `undefined`, fetching nothing, when `#held` has no room left.
   */
  #fetch(
    room: number,
    inHand: number,
    onTaken?: (count: number) => void,
  ): Promise<Delivery[]> | undefined {
    const max = Math.min(room, this.#maxHeld - this.#held.size - inHand, this.#wave);
    if (max <= 0) return undefined;
    return this.#broker!.fetch(this.queues, {
      max,
      timeoutMs: this.#fetchTimeoutMs,
      signal: this.#stopFetch.signal,
      onTaken,
    });
  }

  /**
   * With a batch of `inHand` messages just fetched and not yet dispatched (on Redis, just
   * taken and not yet decoded), sends the next fetch at once when the window has room for it
   * beyond the batch, so the broker works on it while the batch is decoded and runs (on Redis
   * a fetch waits a round trip plus the server's script).
   * Only when the batch was not empty (an empty one means the queues are drained: the next
   * fetch may block) and nothing else would hold the consumer back.
   */
  #fetchAhead(
    inHand: number,
    onTaken?: (count: number) => void,
  ): Promise<Delivery[]> | undefined {
    if (inHand === 0 || this.#storeBackoffMs > 0 || this.queues.length === 0) return undefined;
    const room = this.#room(inHand);
    return room > 0 ? this.#fetch(room, inHand, onTaken) : undefined;
  }

  /** Tracks result-store failures: back off on each failure, reset on a success. */
  #noteStore(stored: boolean): void {
    if (stored) {
      this.#storeBackoffMs = 0;
      return;
    }
    this.#storeBackoffMs = Math.min(Math.max(this.#storeBackoffMs * 2, 100), 5000);
    this.#log.warning(
      `consumer: Result backend is failing; fetching again in ${this.#storeBackoffMs} ms`,
    );
  }

  /** Resolves once no finished task is still storing its result or acking its message. */
  async #settled(): Promise<void> {
    while (this.#settling > 0) await new Promise<void>((r) => this.#settledWaiters.push(r));
  }

  /** Finished tasks still storing their result or acking their message. */
  get settlingCount(): number {
    return this.#settling;
  }

  /** Waits `ms`, or less when the consumer is told to stop; leaves no timer behind. */
  #sleep(ms: number): Promise<void> {
    return abortableSleep(ms, this.#stopFetch.signal);
  }

  #dispatch(delivery: Delivery): void {
    const decision = triage(delivery, this.#app.tasks, new Date());
    const reporter = this.#reporter!;
    switch (decision.kind) {
      case "reject": {
        this.counters.rejected++;
        const err = decision.error;
        let exc: SerializedException | null = null;
        let reason: string;
        if (err instanceof TaskNotRegisteredError) {
          reason = `Received unregistered task of type '${err.taskName}' (id ${decision.taskId})`;
          exc = {
            exc_type: "NotRegistered",
            exc_message: [err.taskName],
            exc_module: "celery.exceptions",
          };
        } else {
          reason = `Received invalid message from queue '${delivery.queue}': ${err.message}`;
          exc = {
            exc_type: "InvalidTaskError",
            exc_message: [err.message],
            exc_module: "celery.exceptions",
          };
        }
        this.hooks.emit("rejected", {
          taskId: decision.taskId,
          message: decision.message,
          reason,
          requeue: false,
          error: err,
        });
        void reporter.rejected(delivery, reason, exc, decision.taskId, decision.message);
        return;
      }
      case "expired":
        this.#reportRevoked(decision.request, "expired", true);
        return;
      case "later":
        if (this.revoked.has(decision.request.message.id)) {
          this.#reportRevoked(decision.request, "revoked", true);
          return;
        }
        this.#hold(decision.request, decision.eta);
        return;
      case "run":
        if (this.revoked.has(decision.request.message.id)) {
          this.#reportRevoked(decision.request, "revoked", true);
          return;
        }
        // Guarded: the line and the payload would be built for every message otherwise.
        if (this.#log.enabled("info")) {
          this.#log.info(
            `Task ${decision.request.message.displayName}[${decision.request.message.id}] received`,
          );
        }
        if (this.hooks.has("received")) {
          this.hooks.emit("received", { message: decision.request.message, queue: delivery.queue });
        }
        this.#startOrWait(decision.request, true);
    }
  }

  /** Gives reserved, unstarted deliveries back to the front of their queues, in order. */
  async #restore(deliveries: Delivery[]): Promise<void> {
    for (const d of [...deliveries].reverse()) await d.requeue("front").catch(() => {});
    if (deliveries.length) {
      this.#log.info(`worker: Restored ${deliveries.length} reserved message(s)`);
    }
  }

  #hold(request: Request, eta: Date): void {
    const id = request.message.id;
    this.#log.info(
      `Task ${request.message.displayName}[${id}] received (eta ${eta.toISOString()})`,
    );
    this.hooks.emit("received", { message: request.message, queue: request.delivery.queue });
    this.#wait(request, eta.getTime() - Date.now(), eta);
  }

  /**
   * Runs a request now, or holds it until its task type's rate limit gives a token. With
   * `queueWhenFull`, a request that finds no free slot waits in the prefetch queue instead
   * (a due ETA or rate-limited request runs at once: the slot budget is advisory there).
   */
  #startOrWait(request: Request, queueWhenFull = false): void {
    const bucket = this.#buckets.get(request.message.task);
    const waitMs = bucket ? bucket.take() : 0;
    if (waitMs > 0) this.#wait(request, waitMs, null);
    else if (queueWhenFull && (this.#pool.free === 0 || this.#ready.length > 0)) {
      this.#ready.push(request);
    } else this.#pool.run(() => this.#run(request));
  }

  /** Starts prefetched requests while slots are free (the pool calls it as slots free). */
  #startReady(): void {
    while (this.#ready.length > 0 && this.#pool.free > 0 && !this.#stopping) {
      const request = this.#ready.shift()!;
      if (this.revoked.has(request.message.id)) {
        this.#reportRevoked(request, "revoked", true);
        continue;
      }
      this.#pool.run(() => this.#run(request));
    }
  }

  /** Holds a request outside the pool for `delayMs`, then checks it again. */
  #wait(request: Request, delayMs: number, eta: Date | null): void {
    const id = request.message.id;
    const held: Held = {
      request,
      eta,
      timer: setLongTimeout(() => {
        // Due while shutting down: it stays held, and the shutdown requeues it.
        if (this.#stopping) return;
        this.#release(id, held);
        if (this.revoked.has(id)) return this.#reportRevoked(request, "revoked", true);
        const expires = request.message.expires;
        if (expires && expires.getTime() <= Date.now()) {
          // Expired while held (expires before eta): revoked, as Celery checks at run time.
          return this.#reportRevoked(request, "expired", true);
        }
        // Due: run it, even if the pool is momentarily full (the slot budget is advisory here).
        this.#startOrWait(request);
      }, delayMs),
    };
    const touch = request.delivery.touch;
    if (touch && eta) {
      // Keep the message's visibility fresh while held, so no restore gives it back.
      held.touch = setInterval(() => {
        touch.call(request.delivery).catch(() => {});
      }, this.#options.heldTouchIntervalMs ?? 60_000);
    }
    this.#held.set(id, held);
  }

  async #run(request: Request): Promise<void> {
    const { message, task, delivery } = request;
    const acksLate = task.options.acksLate ?? this.#options.acksLate ?? true;
    if (!acksLate) {
      try {
        await delivery.ack();
      } catch (err) {
        this.#log.error(
          `Cannot ack task ${message.id}: ${(err as Error)?.message ?? err}; not running it now`,
        );
        return;
      }
    }
    const controller = new AbortController();
    const running: Running = {
      request,
      controller,
      abandoned: false,
      terminated: false,
      startedAt: Date.now() / 1000,
      acknowledged: !acksLate,
    };
    const entry = this.#running.add(running);
    let outcome: Outcome;
    try {
      const ctx = buildContext(request, this.#app, this.name, controller.signal);
      let args: unknown[];
      if (this.hooks.has("started")) this.hooks.emit("started", { message });
      try {
        args = task.bindArguments(message.args, message.kwargs, ctx);
        const spec = threadSpecOf(task.fn);
        outcome = spec
          ? await this.#runInThread(
            spec,
            task.options.bind ? args.slice(1) : args,
            this.#limitsFor(request),
          )
          : await runInTaskScope(message, () =>
            executeWithLimits(
              task.fn as (...a: unknown[]) => unknown,
              args,
              ctx,
              controller,
              this.#limitsFor(request),
            ));
      } catch (error) {
        outcome = { ok: false as const, error, runtimeMs: 0 };
      }
    } finally {
      this.#running.remove(entry);
    }
    if (running.abandoned) return; // cold shutdown requeued it
    // The slot frees now; storing the result and acking go on outside the pool (counted
    // in the prefetch window until released, awaited by the shutdown), so a prefetched task
    // starts at once.
    this.#track((release) => this.#settle(request, running, outcome, acksLate, release));
  }

  /**
   * Keeps a settle (result store, ack) in `#settling` until it is done, and in the prefetch
   * window until it calls `release` (an ack issued to an `acksBeforeFetch` broker) or ends.
   */
  #track(settle: (release: () => void) => Promise<void>): void {
    let inWindow = true;
    const release = () => {
      if (!inWindow) return;
      inWindow = false;
      this.#settlingInWindow--;
      this.#pool.notifyChanged();
    };
    this.#settlingInWindow++;
    this.#settling++;
    const done = () => {
      if (--this.#settling === 0) {
        const waiters = this.#settledWaiters;
        this.#settledWaiters = [];
        for (const wake of waiters) wake();
      }
      release(); // wakes the consumer if the message was still in the window
    };
    settle(release).then(done, (err) => {
      this.#log.error(`Cannot settle a task: ${(err as Error)?.message ?? err}`);
      done();
    });
  }

  /** Counts the task, then retries it or stores its result and acks its message. */
  async #settle(
    request: Request,
    running: Running,
    result: Outcome,
    acksLate: boolean,
    release: () => void,
  ): Promise<void> {
    const { message, task, delivery } = request;
    const reporter = this.#reporter!;
    let outcome = result;
    this.counters.processed++;
    this.counters.total[message.task] = (this.counters.total[message.task] ?? 0) + 1;
    const settle = {
      ignoreResult: message.ignoreResult || (task.options.ignoreResult ?? false),
      ack: acksLate,
      release,
    };
    if (running.terminated) {
      this.#reportRevoked(request, "terminated", acksLate);
      return;
    }
    if (!outcome.ok) {
      const plan = planRetry(
        outcome.error,
        message,
        task.options,
        new Date(),
        this.#options.random,
      );
      if (plan.kind === "retry") {
        await this.#retry(request, plan.eta, plan.exc, plan.countdown, acksLate, release);
        return;
      }
      outcome = { ...outcome, error: plan.error };
    }
    if (outcome.ok) {
      if (this.hooks.has("succeeded")) {
        this.hooks.emit("succeeded", {
          message,
          value: outcome.value,
          runtimeMs: outcome.runtimeMs,
        });
      }
    } else {
      this.hooks.emit("failed", { message, error: outcome.error, runtimeMs: outcome.runtimeMs });
    }
    const stored = outcome.ok
      ? await reporter.succeeded(message, delivery, outcome.value, outcome.runtimeMs, settle)
      : await reporter.failed(message, delivery, outcome.error, settle);
    this.#noteStore(stored);
  }

  /**
   * Runs a `threadTask` body in the Web Worker pool. The hard time limit terminates the
   * thread (the soft limit cannot interrupt CPU-bound code in a thread, so it is not applied).
   */
  async #runInThread(
    spec: ThreadSpec,
    args: unknown[],
    limits: { soft: number | null; hard: number | null },
  ): Promise<Outcome> {
    this.#threadPool ??= new ThreadPool(this.#options.threads ?? 2);
    const start = performance.now();
    try {
      const value = await this.#threadPool.run(spec, args, {
        hardMs: limits.hard === null ? null : limits.hard * 1000,
      });
      return {
        ok: true,
        value: value === undefined ? null : value,
        runtimeMs: performance.now() - start,
      };
    } catch (error) {
      return { ok: false, error, runtimeMs: performance.now() - start };
    }
  }

  #limitsFor(request: Request): { soft: number | null; hard: number | null } {
    const [headerHard, headerSoft] = request.message.timelimit;
    const override = this.#timeLimits.get(request.message.task);
    const o = request.task.options;
    return {
      soft: headerSoft ?? override?.soft ?? o.softTimeLimit ?? this.#options.softTimeLimit ?? null,
      hard: headerHard ?? override?.hard ?? o.timeLimit ?? this.#options.timeLimit ?? null,
    };
  }

  /** Sends the retry message (same id, retries + 1), then stores RETRY and acks the original. */
  async #retry(
    request: Request,
    eta: Date,
    exc: unknown,
    countdown: number,
    ack: boolean,
    release: () => void,
  ): Promise<void> {
    const { message, delivery } = request;
    try {
      await this.#app.sendTask(message.task, message.args, message.kwargs, {
        taskId: message.id,
        retries: message.retries + 1,
        eta,
        expires: message.expires ?? undefined,
        parentId: message.id, // Celery's quirk: a retry is sent from inside the task itself
        rootId: message.rootId ?? message.id,
        group: message.group ?? undefined,
        groupIndex: message.groupIndex ?? undefined,
        embed: message.embed,
        priority: message.priority,
        queue: delivery.queue,
        shadow: message.headers.shadow as string | undefined ?? undefined,
        replyTo: message.replyTo ?? undefined,
        timeLimit: message.timelimit,
        ignoreResult: message.ignoreResult,
      });
    } catch (err) {
      this.#log.error(
        `Cannot send retry of ${message.displayName}[${message.id}]: ${
          (err as Error)?.message ?? err
        }; the message goes back to its queue`,
      );
      if (ack) await delivery.requeue("back").catch(() => {});
      return;
    }
    this.hooks.emit("retried", { message, error: exc });
    const stored = await this.#reporter!.retried(message, delivery, exc, countdown, {
      ack,
      release,
    });
    this.#noteStore(stored);
  }

  /**
   * Warm shutdown: stop fetching, give held ETA messages back, wait for running tasks up to
   * `shutdownTimeout`, then go cold for whatever still runs.
   */
  stop(): Promise<void> {
    if (!this.#loop) return Promise.resolve();
    this.#stopConsuming();
    return this.#shutdown();
  }

  /** Cold shutdown: abort running tasks and give their messages back to the queue. */
  terminate(): Promise<void> {
    if (!this.#loop) return Promise.resolve();
    this.#stopConsuming();
    this.#goCold();
    return this.#shutdown();
  }

  /** Tells the consumer to stop: aborts its fetch or sleep and wakes it if it waits for room. */
  #stopConsuming(): void {
    this.#stopping = true;
    this.#stopFetch.abort();
    this.#pool.notifyChanged();
  }

  #goCold(): void {
    if (this.#cold.signal.aborted) return;
    this.#cold.abort();
    const requeues: Promise<void>[] = [];
    for (const running of this.#running.values()) {
      running.abandoned = true;
      running.controller.abort(new Error("Worker cold shutdown"));
      const acksLate = running.request.task.options.acksLate ?? this.#options.acksLate ?? true;
      if (acksLate) requeues.push(running.request.delivery.requeue("front").catch(() => {}));
    }
    if (requeues.length) this.#log.warning(`worker: Requeued ${requeues.length} running task(s)`);
    this.#running.clear();
    this.#coldRequeues = Promise.all(requeues).then(() => {});
  }

  #shutdown(): Promise<void> {
    return this.#shutdownPromise ??= (async () => {
      await this.#loop;
      // Reserved but not started: prefetched and held ETA messages go back to the front of
      // their queue, prefetched ones first, in the order they were fetched.
      const ready = this.#ready.splice(0);
      const held = [...this.#held];
      for (const [id, h] of held) this.#release(id, h);
      await this.#restore([...ready, ...held.map(([, h]) => h.request)].map((r) => r.delivery));
      const timeoutMs = (this.#options.shutdownTimeout ?? 60) * 1000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cold = this.#cold.signal;
      const outcome = await Promise.race([
        this.#pool.whenIdle().then(() => this.#settled()).then(() => "idle"),
        new Promise<string>((r) => timer = setTimeout(() => r("timeout"), timeoutMs)),
        new Promise<string>((r) => {
          if (cold.aborted) r("cold");
          cold.addEventListener("abort", () => r("cold"), { once: true });
        }),
      ]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        this.#log.warning(`worker: Tasks still running after ${timeoutMs / 1000} s: going cold`);
        this.#goCold();
      }
      await this.#coldRequeues;
      if (outcome !== "idle") {
        // Results of tasks that finished before going cold: give their writes a moment.
        const settledOrLate = new AbortController();
        await Promise.race([this.#settled(), abortableSleep(2000, settledOrLate.signal)]);
        settledOrLate.abort();
      }
      this.#threadPool?.close();
      for (const [sig, handler] of this.#signalHandlers) Deno.removeSignalListener(sig, handler);
      this.#signalHandlers = [];
      await this.#mailbox?.stop();
      await this.#events?.stop();
      this.#log.info(`${this.name} stopped.`);
      this.#resolveDone();
    })();
  }
}

function snapshot(id: string, request: Request): RequestSnapshot {
  return {
    id,
    message: request.message,
    queue: request.delivery.queue,
    deliveryInfo: request.delivery.message?.deliveryInfo,
    redelivered: request.delivery.redelivered,
  };
}
