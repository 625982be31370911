/**
 * The app: a registry of tasks plus the producer side (send a task, get its result).
 * There is no global app; create one with {@linkcode createApp} and pass it around.
 *
 * @module
 */

import { AsyncResult } from "./async_result.ts";
import type { ResultBackend } from "./backends/backend.ts";
import { createBackend } from "./backends/mod.ts";
import { currentTaskScope } from "./canvas/current.ts";
import { embedWithLinks } from "./canvas/options.ts";
import type { Broker } from "./brokers/broker.ts";
import { createBroker } from "./brokers/mod.ts";
import { Control } from "./control/client.ts";
import { producerName } from "./host.ts";
import { EventDispatcher, taskSentFields } from "./events/dispatcher.ts";
import { encodeTaskMessage, type SignatureDict, type TaskEmbed } from "./protocol/task.ts";
import { createPushHandler, type PushHandler, type PushOptions } from "./push.ts";
import { type QueueDefinition, TaskRouter, type TaskRoutes } from "./routing.ts";
import { Task, type TaskFunction, type TaskOptions } from "./task.ts";

/** Options of {@linkcode createApp}. */
export interface AppOptions {
  /**
   * Broker URL (`memory://`, `redis://host:6379/0`, `sqlite://./.celeriac/celeriac.db`) or a
   * broker instance. The worker CLI replaces an unset broker with the embedded default.
   * @default "memory://"
   */
  broker?: string | Broker;
  /**
   * Result backend URL or instance; `null` disables results.
   * @default the broker's URL for `memory://` and `sqlite://` brokers, otherwise no backend
   */
  backend?: string | ResultBackend | null;
  /** Queue used when a task and a call name none. @default "celery" */
  defaultQueue?: string;
  /** Seconds a stored result lives (Celery's `result_expires`). @default 86400 */
  resultExpires?: number;
  /**
   * Publish a `task-sent` event for each task sent (Celery's `task_send_sent_event`), when
   * the broker has fanout. @default false
   */
  sendSentEvent?: boolean;
  /**
   * Celery's `task_routes`: a map of task names and globs (`"tasks.*"`) to a queue name or
   * `{ queue, exchange?, routingKey? }`, or a function `(name, args, kwargs) => route`, or a
   * list of these tried in order (see `src/routing.ts`). @default none (the default queue)
   */
  taskRoutes?: TaskRoutes;
  /**
   * Celery's `task_queues`: queues with their exchange, exchange type (`direct`, `topic`,
   * `fanout`), binding key and `maxPriority`, declared exactly so on RabbitMQ (by producers
   * and by workers consuming them). Other queues get kombu's defaults. @default none
   */
  queues?: QueueDefinition[];
}

/** A `link`/`linkError` target: a signature (anything with `toJSON()`) or its dict. */
export type LinkTarget = { toJSON(): unknown } | SignatureDict;

/** Options of a single send (`applyAsync`, `sendTask`). */
export interface SendOptions {
  /** Run no sooner than this many seconds from now. */
  countdown?: number;
  /** Run no sooner than this time. */
  eta?: Date;
  /** Seconds from now, or a time, after which the task is revoked instead of run. */
  expires?: number | Date;
  /** Queue to send to. @default the task's queue, else the app's default queue */
  queue?: string;
  /** Exchange to publish to (with `routingKey`; see `taskRoutes`). @default the route's */
  exchange?: string;
  /** Routing key to publish with. @default the route's, else the queue's */
  routingKey?: string;
  /** Priority 0..9 (on Redis, 0 is served first, as in Celery). */
  priority?: number;
  /** Use this task id instead of a new UUID. */
  taskId?: string;
  /** Extra message headers. */
  headers?: Record<string, unknown>;
  /** Do not store the result. */
  ignoreResult?: boolean;
  /**
   * Parent task id. @default the running task's id when sent from inside a task (its body,
   * or its callbacks and next chain step), as Celery does
   */
  parentId?: string;
  /** Workflow root id. @default the running task's root when sent from inside a task */
  rootId?: string;
  /**
   * List the result in the running task's `children` (Celery's `add_to_parent`); groups
   * list their `GroupResult` instead of each member. @default true
   */
  addToParent?: boolean;
  /** Retry count to send (used by retries). */
  retries?: number;
  /** `[hard, soft]` time limits in seconds. */
  timeLimit?: [number | null, number | null];
  /** Workflow links (callbacks, errbacks, chain, chord). */
  embed?: Partial<TaskEmbed>;
  /**
   * Callback(s) sent with this task's result when it succeeds (Celery's `link`): a signature
   * (`task.s(...)`) or its dict, or a list of them.
   */
  link?: LinkTarget | LinkTarget[];
  /** Errback(s) sent with this task's id when it fails (Celery's `link_error`). */
  linkError?: LinkTarget | LinkTarget[];
  /** Reply queue for `rpc://` results. */
  replyTo?: string;
  /** Group id. */
  group?: string;
  /** Position in a chord header. */
  groupIndex?: number;
  /** Display name. */
  shadow?: string;
}

/**
 * A celeriac app.
 *
 * @example Define a task and run it in-process
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../mod.ts";
 * const app = createApp({ broker: "memory://app-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const worker = new Worker(app, { concurrency: 4, logLevel: "critical" });
 * await worker.start();
 * const result = await add.delay(2, 3);
 * assert.equal(await result.get({ timeout: 5 }), 5);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class App {
  /** Registered tasks by name. */
  readonly tasks: Map<string, Task> = new Map();
  /** Queue used when none is named. */
  readonly defaultQueue: string;
  /** Seconds a stored result lives. */
  readonly resultExpires: number;
  /** `origin` of messages sent by this process. */
  readonly origin: string;
  /** Where tasks go: `taskRoutes` and `queues`. */
  readonly router: TaskRouter;
  #brokerSpec: string | Broker;
  #brokerDefaulted: boolean;
  #backendSpec: string | ResultBackend | null;
  /** True while the backend is the default derived from the broker (none was given). */
  #backendDefaulted: boolean;
  #broker?: Promise<Broker>;
  #backend?: Promise<ResultBackend | null>;
  #declared = new Set<string>();
  #sendSentEvent: boolean;
  #sentEvents?: EventDispatcher;
  #control?: Control;

  /** Use {@linkcode createApp}. */
  constructor(options: AppOptions = {}) {
    this.#brokerSpec = options.broker ?? "memory://";
    this.#brokerDefaulted = options.broker === undefined;
    this.#backendDefaulted = options.backend === undefined;
    this.#backendSpec = options.backend !== undefined
      ? options.backend
      : defaultBackend(this.#brokerSpec);
    this.defaultQueue = options.defaultQueue ?? "celery";
    const expires = options.resultExpires ?? 86400;
    if (!(expires > 0)) {
      throw new RangeError(`Cannot create app: resultExpires must be > 0, got ${expires}`);
    }
    this.resultExpires = expires;
    this.origin = producerName();
    this.#sendSentEvent = options.sendSentEvent ?? false;
    this.router = new TaskRouter({
      routes: options.taskRoutes,
      queues: options.queues,
      defaultQueue: this.defaultQueue,
    });
  }

  /**
   * Replaces the broker and/or backend before first use (the worker CLI's `--broker` and
   * `--backend` flags use this). A backend that was never given follows the broker, as in
   * the constructor: a new memory broker brings its memory backend, any other broker none.
   *
   * @throws {TypeError} When the app already opened its broker or backend.
   *
   * @example A defaulted backend follows the broker
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../mod.ts";
   * const app = createApp(); // memory:// broker and backend
   * app.configure({ broker: "redis://127.0.0.1:6379/0" });
   * assert.equal(app.backendSpec, null); // not a process-local memory backend
   * app.configure({ backend: "redis://127.0.0.1:6379/1" });
   * assert.equal(app.backendSpec, "redis://127.0.0.1:6379/1");
   * ```
   */
  configure(options: Pick<AppOptions, "broker" | "backend">): void {
    if (this.#broker || this.#backend) {
      throw new TypeError("Cannot configure app: its broker or backend is already in use");
    }
    if (options.broker !== undefined) {
      this.#brokerSpec = options.broker;
      this.#brokerDefaulted = false;
    }
    if (options.backend !== undefined) {
      this.#backendSpec = options.backend;
      this.#backendDefaulted = false;
    } else if (options.broker !== undefined && this.#backendDefaulted) {
      // The default backend follows the broker: a process-local memory backend must not
      // outlive a switch to redis:// (results would silently stay inside this process).
      this.#backendSpec = defaultBackend(this.#brokerSpec);
    }
  }

  /**
   * True while no broker was given (to {@linkcode createApp} or `configure`): the app runs
   * on the `memory://` default, which the worker CLI replaces with the embedded store.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../mod.ts";
   * assert.equal(createApp().brokerDefaulted, true);
   * assert.equal(createApp({ broker: "memory://" }).brokerDefaulted, false);
   * ```
   */
  get brokerDefaulted(): boolean {
    return this.#brokerDefaulted;
  }

  /** The broker as configured (URL or instance), for banners. */
  get brokerSpec(): string | Broker {
    return this.#brokerSpec;
  }

  /** The backend as configured (URL, instance or null). */
  get backendSpec(): string | ResultBackend | null {
    return this.#backendSpec;
  }

  /** The broker, connected on first use. */
  broker(): Promise<Broker> {
    return this.#broker ??= (async () => {
      const broker = await createBroker(this.#brokerSpec);
      await broker.connect();
      return broker;
    })().catch((err) => {
      this.#broker = undefined;
      throw err;
    });
  }

  /** The result backend (connected on first use), or `null` when results are off. */
  backend(): Promise<ResultBackend | null> {
    return this.#backend ??= (async () => {
      if (this.#backendSpec === null) return null;
      const backend = await createBackend(this.#backendSpec, { expires: this.resultExpires });
      backend.useBroker?.(() => this.broker());
      await backend.connect();
      return backend;
    })().catch((err) => {
      this.#backend = undefined;
      throw err;
    });
  }

  /**
   * Registers a task.
   *
   * @param name Celery task name, e.g. `tasks.add`.
   * @param fn The function. It gets the positional args (keyword args mapped by
   *   `options.params`); with `bind: true` it gets the {@linkcode TaskContext} first.
   * @throws {TypeError} When the name is empty or already registered.
   */
  task<A extends unknown[], R>(
    name: string,
    fn: TaskFunction<A, R>,
    options: TaskOptions = {},
  ): Task<A, R> {
    if (typeof name !== "string" || !name) {
      throw new TypeError("Cannot register task: name must be a non-empty string");
    }
    if (this.tasks.has(name)) {
      throw new TypeError(`Cannot register task "${name}": a task of that name exists`);
    }
    const task = new Task<A, R>(this, name, fn, options);
    this.tasks.set(name, task as unknown as Task);
    return task;
  }

  /**
   * Sends a task by name (it need not be registered here: a Python worker may run it).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../mod.ts";
   * const app = createApp({ broker: "memory://send-doc" });
   * const result = await app.sendTask("tasks.add", [2, 3]);
   * assert.equal(typeof result.id, "string");
   * assert.equal(await (await app.broker()).queueSize("celery"), 1);
   * await app.close();
   * ```
   */
  async sendTask<R = unknown>(
    name: string,
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SendOptions = {},
  ): Promise<AsyncResult<R>> {
    const now = new Date();
    const id = options.taskId ?? crypto.randomUUID();
    const eta = options.eta ??
      (options.countdown !== undefined ? new Date(now.getTime() + options.countdown * 1000) : null);
    const expires = options.expires === undefined
      ? null
      : options.expires instanceof Date
      ? options.expires
      : new Date(now.getTime() + options.expires * 1000);
    const registered = this.tasks.get(name);
    const route = this.router.route(name, args, kwargs, {
      queue: options.queue ?? registered?.options.queue,
      exchange: options.exchange,
      routingKey: options.routingKey,
    });
    const queue = route.queue ?? route.routingKey;
    const parent = currentTaskScope();
    const message = encodeTaskMessage({
      id,
      task: name,
      args,
      kwargs,
      eta,
      expires,
      origin: this.origin,
      priority: options.priority ?? registered?.options.priority,
      ignoreResult: options.ignoreResult ?? registered?.options.ignoreResult,
      parentId: options.parentId ?? parent?.id,
      rootId: options.rootId ?? parent?.rootId,
      retries: options.retries,
      timelimit: options.timeLimit ??
        (registered
          ? [registered.options.timeLimit ?? null, registered.options.softTimeLimit ?? null]
          : undefined),
      embed: embedWithLinks(options.embed, options.link, options.linkError),
      replyTo: options.replyTo ?? await this.#replyQueue(),
      group: options.group,
      groupIndex: options.groupIndex,
      shadow: options.shadow,
      headers: options.headers,
    }, now);
    const broker = await this.broker();
    if (route.queue !== null && !this.#declared.has(route.queue)) {
      await broker.declareQueue(route.queue, this.router.queueOptions(route.queue));
      this.#declared.add(route.queue);
    }
    await broker.publish(message, { exchange: route.exchange, routingKey: route.routingKey });
    if (this.#sendSentEvent && broker.broadcast) {
      this.#sentEvents ??= new EventDispatcher(broker, { hostname: this.origin });
      await this.#sentEvents.publish("task-sent", taskSentFields(message, queue));
    }
    if (parent && options.addToParent !== false) parent.children.push([[id, null], null]);
    return this.asyncResult<R>(id);
  }

  /**
   * Push mode: a `Deno.serve` handler that runs Celery task messages POSTed as JSON with
   * this app's tasks and answers with the result record (see `src/push.ts` for the formats
   * and status codes). Results are also stored in the app's backend, if any.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../mod.ts";
   * const app = createApp({ broker: "memory://handler-doc", backend: null });
   * app.task("tasks.add", (x: number, y: number) => x + y);
   * const handler = app.handler(); // Deno.serve(handler)
   * const response = await handler(new Request("http://localhost/", {
   *   method: "POST",
   *   body: JSON.stringify({ headers: { id: "1", task: "tasks.add" }, body: [[2, 3], {}, {}] }),
   * }));
   * assert.deepEqual([response.status, (await response.json()).result], [200, 5]);
   * ```
   */
  handler(options: PushOptions = {}): PushHandler {
    return createPushHandler(this, options);
  }

  /**
   * Remote control of workers (inspect, rate limits, revokes, queues…) and the commands this
   * app's workers serve (see `docs/control.md`).
   *
   * @example
   * ```ts ignore
   * const replies = await app.control.inspect({ timeout: 1 }).ping();
   * await app.control.rateLimit("tasks.slow", "10/m", { reply: true });
   * ```
   */
  get control(): Control {
    return this.#control ??= new Control(this);
  }

  /** `rpc://`: the reply queue results come back to (declared by the backend first). */
  async #replyQueue(): Promise<string | undefined> {
    const spec = this.#backendSpec;
    const rpc = typeof spec === "string"
      ? /^rpc:/i.test(spec)
      : typeof spec?.replyQueue === "function";
    if (!rpc) return undefined;
    return await (await this.backend())?.replyQueue?.();
  }

  /** A handle on the result of a task id. */
  asyncResult<R = unknown>(id: string): AsyncResult<R> {
    return new AsyncResult<R>(id, () => this.backend(), { source: this });
  }

  /** Closes the broker and backend connections this app opened. */
  async close(): Promise<void> {
    const broker = this.#broker;
    const backend = this.#backend;
    this.#broker = undefined;
    this.#backend = undefined;
    this.#sentEvents = undefined;
    await Promise.allSettled([
      this.#control?.close(),
      broker?.then((b) => b.close()),
      backend?.then((b) => b?.close()),
    ]);
  }
}

/**
 * The backend used when none is given: the memory broker's own name, the embedded broker's
 * file (without the broker's URL parameters), otherwise none.
 */
function defaultBackend(broker: string | Broker): string | null {
  if (typeof broker !== "string") {
    if (broker.kind === "memory") return "memory://";
    return broker.kind === "sqlite" ? broker.displayUrl.replace(/\?.*$/, "") : null;
  }
  if (broker.startsWith("memory://")) return broker;
  return /^sqlite:\/\//i.test(broker) ? broker.replace(/\?.*$/, "") : null;
}

/**
 * Creates an app.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "../mod.ts";
 * const app = createApp({ broker: "memory://create-doc" });
 * assert.equal(app.defaultQueue, "celery");
 * ```
 */
export function createApp(options: AppOptions = {}): App {
  return new App(options);
}
