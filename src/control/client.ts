/**
 * The client side of remote control, reachable as `app.control`: broadcast commands to
 * workers (celeriac's and Python Celery's alike) and collect their replies, kombu's way.
 *
 * A call that wants replies (`reply: true`, every `inspect`):
 * 1. binds a fresh reply queue `<oid>.reply.celery.pidbox` to `reply.celery.pidbox` with
 *    routing key `<oid>` (Redis: `SADD _kombu.binding.reply.celery.pidbox …`);
 * 2. broadcasts the request on `celery.pidbox` with headers `{clock, expires}` and a ticket;
 * 3. collects replies whose `ticket` header matches (or has none) until `timeout` seconds
 *    pass without a new one, or `limit` replies came (`limit` defaults to the number of
 *    destinations);
 * 4. removes the binding and deletes the reply queue.
 *
 * On Redis the client uses a connection of its own (not the app's), so a worker running in
 * the same process cannot delay the replies behind its blocking fetch.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { Broker } from "../brokers/broker.ts";
import { createBroker } from "../brokers/mod.ts";
import { ConfigError } from "../errors.ts";
import { LamportClock } from "../events/event.ts";
import { BUILTIN_COMMANDS } from "./commands/mod.ts";
import { openReplyInbox, type ReplyInbox } from "./reply_inbox.ts";
import {
  type CommandHandler,
  type CommandOptions,
  type CommandSpec,
  defineCommand,
} from "./commands/types.ts";
import {
  decodeReply,
  encodeRequest,
  globMatch,
  pcreMatch,
  PIDBOX_EXCHANGE,
  REPLY_EXCHANGE,
} from "./protocol.ts";

/** One node's reply: `{<node>: value}`. */
export type NodeReply<T = unknown> = Record<string, T>;

/** Which nodes a command goes to, and how long to wait for them. */
export interface TargetOptions {
  /** Node names; none: every node. A single name is taken as a one-element list. */
  destination?: string[] | string | null;
  /** Node-name pattern, used with `matcher`. */
  pattern?: string;
  /** `glob` (fnmatch) or `pcre` (regex anchored at the start). */
  matcher?: "glob" | "pcre";
  /** Seconds to wait for the next reply. @default 1 */
  timeout?: number;
  /** Stop after this many replies. @default the number of destinations, else none */
  limit?: number;
  /** Called with each reply as it arrives. */
  callback?: (reply: NodeReply) => void;
}

/** Options of {@linkcode Control.broadcast}. */
export interface BroadcastOptions extends TargetOptions {
  /** The command's keyword arguments. */
  arguments?: Record<string, unknown>;
  /** Wait for replies (a call); without it the command is a cast. @default false */
  reply?: boolean;
}

/** Options of the control shortcuts (`rateLimit`, `revoke`, …): like a broadcast. */
export type CallOptions = Omit<BroadcastOptions, "arguments">;

/** Options of {@linkcode Control.inspect}. */
export type InspectOptions = TargetOptions;

function destinations(d: TargetOptions["destination"]): string[] | null {
  if (d === undefined || d === null) return null;
  const list = Array.isArray(d) ? d : [d];
  return list.length ? list : null;
}

/**
 * Inspect commands on a set of nodes; every method resolves with `{<node>: reply}` for the
 * nodes that answered in time (`{}` when none did).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://inspect-doc" });
 * app.task("tasks.add", (x: number, y: number) => x + y, { rateLimit: "10/m" });
 * const worker = new Worker(app, { name: "w1@doc", logLevel: "critical" });
 * await worker.start();
 * const inspect = app.control.inspect({ timeout: 0.2 });
 * assert.deepEqual(await inspect.registered(), { "w1@doc": ["tasks.add [rate_limit=10/m]"] });
 * assert.deepEqual(await inspect.active(), { "w1@doc": [] });
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Inspect {
  /** The options every request uses. */
  readonly options: Readonly<InspectOptions>;
  #control: Control;

  /** Use {@linkcode Control.inspect}. */
  constructor(control: Control, options: InspectOptions = {}) {
    this.#control = control;
    this.options = options;
  }

  /** Sends any inspect command and flattens the replies into `{<node>: reply}`. */
  async request<T = unknown>(
    method: string,
    args: Record<string, unknown> = {},
  ): Promise<NodeReply<T>> {
    const replies = await this.#control.broadcast(method, {
      ...this.options,
      arguments: args,
      reply: true,
    });
    const out: NodeReply<T> = {};
    for (const reply of replies) Object.assign(out, reply);
    const { pattern, matcher } = this.options;
    if (pattern && matcher) {
      const match = matcher === "pcre" ? pcreMatch : globMatch;
      for (const node of Object.keys(out)) if (!match(node, pattern)) delete out[node];
    }
    return out;
  }

  /** `{"ok": "pong"}` per node. */
  ping(): Promise<NodeReply<{ ok: string }>> {
    return this.request("ping");
  }

  /** Worker statistics (pool, broker, totals, rusage…). */
  stats(): Promise<NodeReply<Record<string, unknown>>> {
    return this.request("stats");
  }

  /** Tasks running now (request-info objects; `safe`: args as reprs). */
  active(options: { safe?: boolean } = {}): Promise<NodeReply<Record<string, unknown>[]>> {
    return this.request("active", { safe: options.safe ?? null });
  }

  /** Tasks received but waiting (rate-limited), not running and not ETA. */
  reserved(): Promise<NodeReply<Record<string, unknown>[]>> {
    return this.request("reserved");
  }

  /** ETA tasks: `{eta, priority, request}`. */
  scheduled(): Promise<NodeReply<Record<string, unknown>[]>> {
    return this.request("scheduled");
  }

  /** Revoked task ids. */
  revoked(): Promise<NodeReply<string[]>> {
    return this.request("revoked");
  }

  /** Registered task names (with `items`, e.g. `rate_limit`: `tasks.add [rate_limit=10/m]`). */
  registered(...items: string[]): Promise<NodeReply<string[]>> {
    return this.request("registered", { taskinfoitems: items });
  }

  /** `{<id>: [state, request-info]}` of the ids a node holds or runs. */
  queryTask(...ids: (string | string[])[]): Promise<NodeReply<Record<string, unknown>>> {
    return this.request("query_task", { ids: ids.flat() });
  }

  /** Queues consumed (kombu `Queue.as_dict`). */
  activeQueues(): Promise<NodeReply<Record<string, unknown>[]>> {
    return this.request("active_queues");
  }

  /** Configuration. */
  conf(withDefaults = false): Promise<NodeReply<Record<string, unknown>>> {
    return this.request("conf", { with_defaults: withDefaults });
  }

  /** Bug-report text: `{"ok": text}`. */
  report(): Promise<NodeReply<{ ok: string }>> {
    return this.request("report");
  }

  /** `{"clock": n}`. */
  clock(): Promise<NodeReply<{ clock: number }>> {
    return this.request("clock");
  }

  /** RSS as `"45MB"`. */
  memsample(): Promise<NodeReply<string | null>> {
    return this.request("memsample");
  }

  /** Mingle's sync request: `{revoked, clock}` per node (`null` from `fromNode` itself). */
  hello(
    fromNode: string,
    revoked: Record<string, unknown> = {},
  ): Promise<NodeReply<{ revoked: Record<string, unknown>; clock: number } | null>> {
    return this.request("hello", { from_node: fromNode, revoked });
  }
}

/**
 * Remote control of workers (`app.control`).
 *
 * @example Rate-limit a task type on every worker and read the replies
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://control-doc" });
 * app.task("tasks.slow", () => {});
 * const worker = new Worker(app, { name: "w1@doc", logLevel: "critical" });
 * await worker.start();
 * assert.deepEqual(
 *   await app.control.rateLimit("tasks.slow", "10/m", { reply: true, timeout: 0.2 }),
 *   [{ "w1@doc": { ok: "new rate limit set successfully" } }],
 * );
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Control {
  /** The app. */
  readonly app: App;
  /** Commands registered with {@linkcode Control.register} (workers of this app serve them). */
  readonly commands: Map<string, CommandSpec> = new Map();
  /** The client's Lamport clock. */
  readonly clock: LamportClock = new LamportClock();
  #broker?: Promise<Broker>;
  #own?: Broker;

  /** Use `app.control`. */
  constructor(app: App) {
    this.app = app;
  }

  /**
   * Registers a command that this app's workers serve (it wins over a built-in of the same
   * name). The handler gets the worker's context and the request's arguments.
   *
   * @throws {TypeError} For an empty name or a handler that is not a function.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp, Worker } from "../../mod.ts";
   * const app = createApp({ broker: "memory://register-doc" });
   * app.control.register("queue_depth", async (ctx, args) =>
   *   ({ ok: await ctx.broker.queueSize(String(args.queue ?? "celery")) }),
   *   { kind: "inspect", args: [["queue", "str"]] });
   * const worker = new Worker(app, { name: "w1@doc", logLevel: "critical" });
   * await worker.start();
   * assert.deepEqual(
   *   await app.control.inspect({ timeout: 0.2 }).request("queue_depth", { queue: "celery" }),
   *   { "w1@doc": { ok: 0 } },
   * );
   * await worker.stop();
   * await app.close();
   * ```
   */
  register(name: string, handler: CommandHandler, options: CommandOptions = {}): CommandSpec {
    const spec = defineCommand(name, handler, options);
    this.commands.set(name, spec);
    if (spec.alias) this.commands.set(spec.alias, spec);
    return spec;
  }

  /** A command's description: this app's registered ones first, then the built-ins. */
  commandSpec(name: string): CommandSpec | undefined {
    return this.commands.get(name) ?? BUILTIN_COMMANDS.get(name);
  }

  /** Inspect commands on the nodes `options` selects. */
  inspect(options: InspectOptions = {}): Inspect {
    return new Inspect(this, options);
  }

  /** The broker commands go through (on Redis a connection of the client's own). */
  broker(): Promise<Broker> {
    return this.#broker ??= (async () => {
      const spec = this.app.brokerSpec;
      if (typeof spec === "string" && /^rediss?:\/\//i.test(spec)) {
        const broker = await createBroker(spec);
        await broker.connect();
        this.#own = broker;
        return broker;
      }
      return await this.app.broker();
    })().catch((err) => {
      this.#broker = undefined;
      throw err;
    });
  }

  /**
   * Sends a command to the workers. A cast (`reply` false, the default) resolves with `[]`
   * once published; a call resolves with the replies, `[{<node>: reply}, …]`.
   *
   * @throws {ConfigError} When the broker has no fanout (remote control needs Redis,
   *   RabbitMQ, the embedded store or memory).
   * @throws {RangeError} For a timeout or limit that is not a positive number.
   */
  async broadcast(method: string, options: BroadcastOptions = {}): Promise<NodeReply[]> {
    const timeout = options.timeout ?? 1;
    if (!(timeout > 0) || !Number.isFinite(timeout)) {
      throw new RangeError(`Cannot broadcast ${method}: timeout must be > 0, got ${timeout}`);
    }
    const destination = destinations(options.destination);
    const limit = options.limit ?? (destination ? destination.length : undefined);
    if (limit !== undefined && !(limit >= 1)) {
      throw new RangeError(`Cannot broadcast ${method}: limit must be >= 1, got ${limit}`);
    }
    const broker = await this.broker();
    if (!broker.broadcast) {
      throw new ConfigError(
        `Cannot send remote-control command ${method} on ${broker.displayUrl}: this broker has no fanout (use redis://, amqp:// or sqlite://)`,
      );
    }
    const request = {
      method,
      arguments: options.arguments ?? {},
      destination,
      pattern: options.pattern ?? null,
      matcher: options.pattern ? options.matcher ?? "glob" : options.matcher ?? null,
    };
    const headers = { clock: this.clock.forward(), expires: Date.now() / 1000 + timeout };
    if (!options.reply) {
      await broker.broadcast(PIDBOX_EXCHANGE, "", encodeRequest(request, headers));
      return [];
    }
    const oid = crypto.randomUUID();
    const ticket = crypto.randomUUID();
    const inbox = await openReplyInbox(broker, REPLY_EXCHANGE, oid);
    try {
      await broker.broadcast(
        PIDBOX_EXCHANGE,
        "",
        encodeRequest({
          ...request,
          ticket,
          reply_to: { exchange: REPLY_EXCHANGE, routing_key: oid },
        }, headers),
      );
      return await this.#collect(inbox, ticket, timeout * 1000, limit, options.callback);
    } finally {
      await inbox.close();
    }
  }

  async #collect(
    inbox: ReplyInbox,
    ticket: string,
    timeoutMs: number,
    limit: number | undefined,
    callback: ((reply: NodeReply) => void) | undefined,
  ): Promise<NodeReply[]> {
    const replies: NodeReply[] = [];
    let deadline = performance.now() + timeoutMs;
    while (limit === undefined || replies.length < limit) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      for (const message of await inbox.next(left)) {
        if (limit !== undefined && replies.length >= limit) continue;
        let reply;
        try {
          reply = decodeReply(message);
        } catch {
          continue;
        }
        this.clock.adjust(reply.clock);
        if (reply.expires && Date.now() / 1000 > reply.expires) continue;
        if (reply.ticket !== null && reply.ticket !== ticket) continue;
        replies.push(reply.body);
        deadline = performance.now() + timeoutMs;
        callback?.(reply.body);
      }
    }
    return replies;
  }

  /** Pings workers: `[{<node>: {"ok": "pong"}}, …]`. */
  ping(options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("ping", { ...options, reply: true });
  }

  /**
   * Revokes task ids on every worker (string or list); with `terminate`, running ones are
   * aborted (`signal` is accepted for Celery compatibility).
   */
  revoke(
    taskId: string | string[],
    options: CallOptions & { terminate?: boolean; signal?: string } = {},
  ): Promise<NodeReply[]> {
    const { terminate = false, signal = "SIGTERM", ...rest } = options;
    return this.broadcast("revoke", {
      ...rest,
      arguments: { task_id: taskId, terminate, signal },
    });
  }

  /** `revoke` with `terminate: true`. */
  terminate(
    taskId: string | string[],
    options: CallOptions & { signal?: string } = {},
  ): Promise<NodeReply[]> {
    return this.revoke(taskId, { ...options, terminate: true });
  }

  /**
   * celeriac's `revoke_by_name`: every waiting message of `taskName` is taken out of the
   * queues (the worker's own, or `queue`) and marked REVOKED, held ones are revoked, and
   * running ones aborted with `terminate`. Other messages stay, in order.
   */
  revokeByName(
    taskName: string,
    options: CallOptions & { queue?: string | string[]; terminate?: boolean } = {},
  ): Promise<NodeReply[]> {
    const { queue, terminate = false, ...rest } = options;
    return this.broadcast("revoke_by_name", {
      ...rest,
      arguments: { task_name: taskName, ...(queue ? { queue } : {}), terminate },
    });
  }

  /** Sets (or with a falsy limit removes) a task type's rate limit on the workers. */
  rateLimit(
    taskName: string,
    rateLimit: string | number | null,
    options: CallOptions = {},
  ): Promise<NodeReply[]> {
    return this.broadcast("rate_limit", {
      ...options,
      arguments: { task_name: taskName, rate_limit: rateLimit },
    });
  }

  /** Sets a task type's soft and hard time limits (seconds) on the workers. */
  timeLimit(
    taskName: string,
    limits: { soft?: number | null; hard?: number | null },
    options: CallOptions = {},
  ): Promise<NodeReply[]> {
    return this.broadcast("time_limit", {
      ...options,
      arguments: { task_name: taskName, soft: limits.soft ?? null, hard: limits.hard ?? null },
    });
  }

  /** Tells workers to consume from one more queue. */
  addConsumer(
    queue: string,
    options: CallOptions & { exchange?: string; exchangeType?: string; routingKey?: string } = {},
  ): Promise<NodeReply[]> {
    const { exchange, exchangeType, routingKey, ...rest } = options;
    return this.broadcast("add_consumer", {
      ...rest,
      arguments: {
        queue,
        exchange: exchange ?? null,
        exchange_type: exchangeType ?? null,
        routing_key: routingKey ?? null,
      },
    });
  }

  /** Tells workers to stop consuming from a queue. */
  cancelConsumer(queue: string, options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("cancel_consumer", { ...options, arguments: { queue } });
  }

  /** Grows the workers' pools by `n` slots. */
  poolGrow(n = 1, options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("pool_grow", { ...options, arguments: { n } });
  }

  /** Shrinks the workers' pools by `n` slots. */
  poolShrink(n = 1, options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("pool_shrink", { ...options, arguments: { n } });
  }

  /** Autoscale settings (celeriac workers reply that autoscale is not enabled). */
  autoscale(max: number, min: number, options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("autoscale", { ...options, arguments: { max, min } });
  }

  /** Turns task events on. */
  enableEvents(options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("enable_events", options);
  }

  /** Turns task events off. */
  disableEvents(options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("disable_events", options);
  }

  /** Asks workers for an immediate `worker-heartbeat` event. */
  heartbeat(options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("heartbeat", options);
  }

  /** Warm shutdown of the workers (they never reply). */
  shutdown(options: CallOptions = {}): Promise<NodeReply[]> {
    return this.broadcast("shutdown", options);
  }

  /**
   * Deletes waiting messages straight in the broker, no worker involved: every message of
   * `queue` (default the app's default queue), or with `taskName` only that task's
   * messages (the others stay, in order). Returns how many were deleted.
   *
   * @throws {ConfigError} For `taskName` on a broker that cannot select by task name.
   */
  async purge(queue?: string, options: { taskName?: string } = {}): Promise<number> {
    const broker = await this.broker();
    const q = queue ?? this.app.defaultQueue;
    if (options.taskName === undefined) return await broker.purge(q);
    if (!broker.takeTaskMessages) {
      throw new ConfigError(
        `Cannot purge by task name on ${broker.displayUrl}: this broker cannot select messages`,
      );
    }
    return (await broker.takeTaskMessages(q, options.taskName)).length;
  }

  /**
   * Moves the waiting messages of `taskName` from one queue to the back of another (same
   * priority, order kept, nothing lost), straight in the broker. Returns how many moved.
   *
   * @throws {ConfigError} On a broker that cannot select messages by task name.
   */
  async moveTasks(taskName: string, from: string, to: string): Promise<number> {
    const broker = await this.broker();
    if (!broker.takeTaskMessages) {
      throw new ConfigError(
        `Cannot move messages on ${broker.displayUrl}: this broker cannot select messages`,
      );
    }
    await broker.declareQueue(to);
    return (await broker.takeTaskMessages(from, taskName, { moveTo: to })).length;
  }

  /** Closes the client's own broker connection (the app's is closed by `app.close()`). */
  async close(): Promise<void> {
    const own = this.#own;
    this.#own = undefined;
    this.#broker = undefined;
    await own?.close();
  }
}
