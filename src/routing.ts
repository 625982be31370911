/**
 * Task routing, as Celery 5.2's `task_routes` and `task_queues`: which queue a task goes to,
 * and which exchange and routing key it is published with.
 *
 * 1. explicit send options (`queue`, `exchange`, `routingKey`, then the task's own `queue`)
 *    win; the first matching route fills in what they leave out (Celery's `lpmerge`);
 * 2. routes are tried in order: a map of exact names and globs (`tasks.*`, fnmatch
 *    syntax: exact names first, then the globs in order) to a queue name or a route, or a
 *    function `(name, args, kwargs) => route | queue name | undefined`;
 * 3. no queue and no exchange: the app's default queue;
 * 4. a queue's definition comes from `queues` (exchange, type, binding key,
 *    `maxPriority`), else kombu's default: the direct exchange of the same name, key = name;
 * 5. publishing: a direct queue without an explicit exchange *and* routing key goes to the
 *    default exchange `""` with routing key = queue name (Python does exactly this);
 *    otherwise to the exchange with the route's key, else the queue's binding key.
 *
 * @module
 */

import type { QueueOptions } from "./brokers/broker.ts";

/** A queue the app declares and routes to, as a `kombu.Queue` in `task_queues`. */
export interface QueueDefinition extends QueueOptions {
  /** Queue name. */
  name: string;
}

/** Where a task goes. */
export interface TaskRoute {
  /** Queue (its definition from `queues`, or kombu's default). */
  queue?: string;
  /** Exchange to publish to (overrides the queue's). */
  exchange?: string;
  /** Routing key to publish with (overrides the queue's binding key). */
  routingKey?: string;
}

/** A router function: a route, a queue name, or `undefined`/`null` for "not mine". */
export type RouteFunction = (
  name: string,
  args: unknown[],
  kwargs: Record<string, unknown>,
) => TaskRoute | string | null | undefined;

/** One router: a map of task names and globs to routes, or a function. */
export type RouterEntry = Record<string, TaskRoute | string> | RouteFunction;

/** Celery's `task_routes`: one router or a list tried in order. */
export type TaskRoutes = RouterEntry | RouterEntry[];

/** A resolved route. */
export interface ResolvedRoute {
  /** The queue to declare before publishing (`null` when the route names only an exchange). */
  queue: string | null;
  /** Exchange to publish to (`""` = default exchange). */
  exchange: string;
  /** Routing key to publish with. */
  routingKey: string;
}

/**
 * Turns an fnmatch glob (`*`, `?`, `[seq]`, `[!seq]`) into an anchored regular expression,
 * as Python's `fnmatch.translate` (so `*` also matches dots).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { globToRegExp } from "./routing.ts";
 * assert.ok(globToRegExp("tasks.*").test("tasks.images.resize"));
 * assert.ok(!globToRegExp("tasks.*").test("other.add"));
 * assert.ok(globToRegExp("t?sk.[ab]").test("task.a"));
 * ```
 */
export function globToRegExp(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") out += "[\\s\\S]*";
    else if (c === "?") out += "[\\s\\S]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) out += "\\[";
      else {
        let body = glob.slice(i + 1, end).replace(/\\/g, "\\\\");
        if (body.startsWith("!")) body = "^" + body.slice(1);
        out += `[${body}]`;
        i = end;
      }
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`^(?:${out})$`);
}

function asRoute(value: TaskRoute | string | null | undefined): TaskRoute | undefined {
  if (value === null || value === undefined) return undefined;
  return typeof value === "string" ? { queue: value } : { ...value };
}

/** A compiled map router: exact names first, then globs in order (Celery's `MapRoute`). */
function mapRouter(map: Record<string, TaskRoute | string>): RouteFunction {
  const exact = new Map<string, TaskRoute | string>();
  const globs: [RegExp, TaskRoute | string][] = [];
  for (const [key, value] of Object.entries(map)) {
    if (/[*?[]/.test(key)) globs.push([globToRegExp(key), value]);
    else exact.set(key, value);
  }
  return (name) => {
    if (exact.has(name)) return asRoute(exact.get(name));
    for (const [re, value] of globs) if (re.test(name)) return asRoute(value);
    return undefined;
  };
}

/** Options of {@linkcode TaskRouter}. */
export interface TaskRouterOptions {
  /** Celery's `task_routes`. */
  routes?: TaskRoutes;
  /** Celery's `task_queues`: queues with their exchange, type, key, priorities. */
  queues?: QueueDefinition[];
  /** Queue used when nothing routes a task. @default "celery" */
  defaultQueue?: string;
}

/**
 * Resolves where a task is published.
 *
 * @example Route by name, by glob, and through a topic exchange
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskRouter } from "./routing.ts";
 * const router = new TaskRouter({
 *   queues: [{ name: "images", exchange: "media", exchangeType: "topic", routingKey: "media.#" }],
 *   routes: {
 *     "tasks.add": "math",
 *     "tasks.img.*": { queue: "images", routingKey: "media.png" },
 *   },
 * });
 * assert.deepEqual(router.route("tasks.add"), { queue: "math", exchange: "", routingKey: "math" });
 * assert.deepEqual(router.route("tasks.img.resize"), { queue: "images", exchange: "media", routingKey: "media.png" });
 * assert.deepEqual(router.route("tasks.other"), { queue: "celery", exchange: "", routingKey: "celery" });
 * assert.deepEqual(router.route("tasks.add", [], {}, { queue: "urgent" }).queue, "urgent");
 * ```
 */
export class TaskRouter {
  /** The app's default queue. */
  readonly defaultQueue: string;
  #routers: RouteFunction[];
  #queues = new Map<string, QueueDefinition>();

  /**
   * @throws {TypeError} For a queue definition without a name, or a router that is neither
   *   a map nor a function.
   */
  constructor(options: TaskRouterOptions = {}) {
    this.defaultQueue = options.defaultQueue ?? "celery";
    for (const q of options.queues ?? []) {
      if (typeof q?.name !== "string" || !q.name) {
        throw new TypeError("Cannot define queue: 'name' must be a non-empty string");
      }
      this.#queues.set(q.name, { ...q });
    }
    const routes = options.routes === undefined
      ? []
      : Array.isArray(options.routes)
      ? options.routes
      : [options.routes];
    this.#routers = routes.map((r) => {
      if (typeof r === "function") return r;
      if (r !== null && typeof r === "object") return mapRouter(r);
      throw new TypeError("Cannot use task route: it must be a map of names or a function");
    });
  }

  /** The queues defined in `queues`. */
  get queues(): QueueDefinition[] {
    return [...this.#queues.values()];
  }

  /**
   * How a queue is declared: its definition from `queues`, or `undefined` for kombu's
   * default (direct exchange of the same name, key = name).
   */
  queueOptions(queue: string): QueueOptions | undefined {
    const q = this.#queues.get(queue);
    if (!q) return undefined;
    const { name: _name, ...options } = q;
    return options;
  }

  /**
   * Where to publish task `name`.
   *
   * @param explicit What the call named (`queue` also carries the task's own queue).
   * @throws {TypeError} When a route names an exchange without a queue and without a
   *   routing key.
   */
  route(
    name: string,
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    explicit: TaskRoute = {},
  ): ResolvedRoute {
    let routed: TaskRoute = {};
    for (const router of this.#routers) {
      const r = asRoute(router(name, args, kwargs));
      if (r) {
        routed = r;
        break;
      }
    }
    const merged: TaskRoute = { ...routed };
    for (const key of ["queue", "exchange", "routingKey"] as const) {
      if (explicit[key] !== undefined && explicit[key] !== null) merged[key] = explicit[key];
    }
    if (merged.queue === undefined && merged.exchange === undefined) {
      merged.queue = this.defaultQueue;
    }
    const queue = merged.queue ?? null;
    if (queue === null) {
      if (merged.routingKey === undefined) {
        throw new TypeError(
          `Cannot route task "${name}": a route with an exchange and no queue needs a routingKey`,
        );
      }
      return { queue: null, exchange: merged.exchange!, routingKey: merged.routingKey };
    }
    const def = this.#queues.get(queue);
    const type = def?.exchangeType ?? "direct";
    if ((!merged.exchange || !merged.routingKey) && type === "direct") {
      return { queue, exchange: "", routingKey: queue };
    }
    return {
      queue,
      exchange: merged.exchange ?? def?.exchange ?? queue,
      routingKey: merged.routingKey ?? def?.routingKey ?? queue,
    };
  }
}
