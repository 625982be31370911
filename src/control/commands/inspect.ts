/**
 * The `inspect` commands (no side effects except `hello`'s revoked merge), with Celery
 * 5.2's reply shapes (see `docs/control.md` and the wire reference §5.3).
 *
 * @module
 */

import process from "node:process";
import type { Broker } from "../../brokers/broker.ts";
import { redactUrl } from "../../brokers/mod.ts";
import { hostName } from "../../host.ts";
import { formatAwareIso } from "../../protocol/time.ts";
import type { RequestSnapshot } from "../../worker/worker.ts";
import { VERSION } from "../../version.ts";
import { pyFloat } from "../protocol.ts";
import {
  argBool,
  argList,
  type CommandSpec,
  type ControlContext,
  defineCommand,
  ok,
} from "./types.ts";

/**
 * Celery's request-info object (`Request.info()`) of a held or running message.
 *
 * @example
 * ```ts ignore
 * const info = requestInfo(ctx, worker.active[0]!, { active: true });
 * assert.equal(info.worker_pid, Deno.pid);
 * ```
 */
export function requestInfo(
  ctx: ControlContext,
  item: RequestSnapshot & { timeStart?: number; acknowledged?: boolean },
  options: { active?: boolean; safe?: boolean } = {},
): Record<string, unknown> {
  const m = item.message;
  return {
    id: m.id,
    name: m.displayName,
    args: options.safe ? m.argsrepr : m.args,
    kwargs: options.safe ? m.kwargsrepr : m.kwargs,
    type: m.task,
    hostname: ctx.hostname,
    time_start: item.timeStart ?? null,
    acknowledged: item.acknowledged ?? false,
    delivery_info: {
      exchange: item.deliveryInfo?.exchange ?? "",
      routing_key: item.deliveryInfo?.routingKey ?? item.queue,
      priority: m.priority,
      redelivered: item.redelivered ? true : null,
    },
    worker_pid: options.active ? Deno.pid : null,
  };
}

/** Python's `datetime.isoformat()` of an ETA: the header's own text when it is ISO UTC. */
function etaText(item: { eta: Date | null; message: RequestSnapshot["message"] }): string | null {
  const raw = item.message.headers["eta"];
  if (typeof raw === "string") {
    // Python's isoformat: six fraction digits, none at all when they are zero.
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{6})?(?:Z|\+00:00)$/.exec(raw);
    if (m) return `${m[1]}${m[2] && m[2] !== ".000000" ? m[2] : ""}+00:00`;
  }
  if (!item.eta) return null;
  const iso = formatAwareIso(item.eta);
  return iso.replace(/\.000000\+00:00$/, "+00:00");
}

/**
 * kombu's `Connection.info()` of the worker's broker, from its URL (password never shown).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryBroker } from "../../brokers/memory.ts";
 * import { brokerInfo } from "./inspect.ts";
 * assert.equal(brokerInfo(new MemoryBroker()).transport, "memory");
 * ```
 */
export function brokerInfo(broker: Broker): Record<string, unknown> {
  let url: URL | undefined;
  try {
    url = new URL(broker.displayUrl);
  } catch {
    url = undefined;
  }
  const redis = broker.kind === "redis";
  const path = url ? decodeURIComponent(url.pathname) : "";
  return {
    hostname: url?.hostname || (broker.kind === "memory" ? "localhost" : null),
    userid: url?.username ? decodeURIComponent(url.username) : null,
    virtual_host: redis ? (path.replace(/^\//, "") || "0") : (path || "/"),
    port: url?.port ? Number(url.port) : redis ? 6379 : null,
    insist: false,
    ssl: url?.protocol === "rediss:",
    transport: broker.kind,
    connect_timeout: 4,
    transport_options: {},
    login_method: null,
    uri_prefix: null,
    heartbeat: pyFloat(120),
    failover_strategy: "round-robin",
    alternates: [],
  };
}

/**
 * `getrusage(RUSAGE_SELF)` as Python's `resource` reports it (seconds as floats), or
 * `"N/A"` where the runtime cannot tell.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rusage } from "./inspect.ts";
 * const r = rusage();
 * assert.ok(r === "N/A" || typeof r.maxrss === "number");
 * ```
 */
export function rusage(): Record<string, unknown> | "N/A" {
  try {
    const u = process.resourceUsage();
    return {
      utime: pyFloat(u.userCPUTime / 1e6),
      stime: pyFloat(u.systemCPUTime / 1e6),
      maxrss: u.maxRSS,
      ixrss: u.sharedMemorySize,
      idrss: u.unsharedDataSize,
      isrss: u.unsharedStackSize,
      minflt: u.minorPageFault,
      majflt: u.majorPageFault,
      nswap: u.swappedOut,
      inblock: u.fsRead,
      oublock: u.fsWrite,
      msgsnd: u.ipcSent,
      msgrcv: u.ipcReceived,
      nsignals: u.signalsCount,
      nvcsw: u.voluntaryContextSwitches,
      nivcsw: u.involuntaryContextSwitches,
    };
  } catch {
    return "N/A";
  }
}

/** Python's `str()` of an option value (`True`, `10/m`, `5`). */
function pyStr(value: unknown): string {
  if (value === true) return "True";
  if (value === false) return "False";
  return String(value);
}

/** A task attribute by Celery's name, as the worker applies it now (`undefined`: unset). */
function taskAttribute(ctx: ControlContext, name: string, field: string): unknown {
  const task = ctx.app.tasks.get(name);
  if (!task) return undefined;
  const o = task.options;
  const limits = ctx.mailbox.timeLimits.get(name);
  switch (field) {
    case "rate_limit":
      return ctx.mailbox.rateLimits.has(name) ? ctx.mailbox.rateLimits.get(name) : o.rateLimit;
    case "time_limit":
      return limits ? limits.hard : o.timeLimit;
    case "soft_time_limit":
      return limits ? limits.soft : o.softTimeLimit;
    case "queue":
      return o.queue;
    case "priority":
      return o.priority;
    case "ignore_result":
      return o.ignoreResult;
    case "acks_late":
      return o.acksLate;
    case "max_retries":
      return o.maxRetries;
    case "default_retry_delay":
      return o.defaultRetryDelay;
    case "name":
      return task.name;
    default:
      return undefined; // exchange, routing_key, …: celeriac tasks have none
  }
}

/** The time for `hello`'s revoked entries: Python's `time.monotonic()` (seconds since boot). */
function monotonicNow(): number {
  try {
    return Deno.osUptime() + (performance.now() % 1000) / 1000;
  } catch {
    return performance.now() / 1000;
  }
}

/**
 * Celery's bug report text (`inspect report`), for celeriac.
 *
 * @example
 * ```ts ignore
 * assert.match(bugReport(ctx), /^software -> celeriac:/);
 * ```
 */
export function bugReport(ctx: ControlContext): string {
  const backend = ctx.app.backendSpec;
  const backendText = backend === null
    ? "disabled"
    : typeof backend === "string"
    ? redactUrl(backend)
    : backend.displayUrl;
  return [
    `software -> celeriac:${VERSION} deno:${Deno.version.deno} v8:${Deno.version.v8}`,
    `            typescript:${Deno.version.typescript}`,
    `platform -> system:${Deno.build.os} arch:${Deno.build.arch}`,
    `            host:${hostName()} pid:${Deno.pid}`,
    `loader   -> celeriac app`,
    `settings -> transport:${ctx.broker.kind} results:${backendText}`,
    ``,
    ...Object.entries(configuration(ctx)).map(([k, v]) => `${k}: ${JSON.stringify(v)}`),
    ``,
  ].join("\n");
}

/** The app's and worker's settings under Celery's setting names (`inspect conf`). */
function configuration(ctx: ControlContext): Record<string, unknown> {
  const backend = ctx.app.backendSpec;
  const w = ctx.worker;
  const limits = w.defaultTimeLimits;
  return {
    broker_url: ctx.broker.displayUrl,
    result_backend: backend === null
      ? null
      : typeof backend === "string"
      ? redactUrl(backend)
      : backend.displayUrl,
    task_default_queue: ctx.app.defaultQueue,
    result_expires: ctx.app.resultExpires,
    worker_concurrency: w.pool.size,
    worker_send_task_events: w.events?.taskEventsEnabled ?? false,
    task_soft_time_limit: limits.soft,
    task_time_limit: limits.hard,
    control_exchange: "celery",
    include: [...ctx.app.tasks.keys()].sort(),
  };
}

/** The kombu `Queue.as_dict(recurse=True)` of a queue the worker consumes. */
function queueAsDict(ctx: ControlContext, queue: string): Record<string, unknown> {
  const decl = ctx.mailbox.declarations.get(queue);
  return {
    name: queue,
    exchange: {
      name: decl?.exchange ?? queue,
      type: decl?.exchangeType ?? "direct",
      arguments: null,
      durable: true,
      passive: false,
      auto_delete: false,
      delivery_mode: null,
      no_declare: false,
    },
    routing_key: decl?.routingKey ?? queue,
    queue_arguments: null,
    binding_arguments: null,
    consumer_arguments: null,
    durable: true,
    exclusive: false,
    auto_delete: false,
    no_ack: false,
    alias: null,
    bindings: [],
    no_declare: null,
    expires: null,
    message_ttl: null,
    max_length: null,
    max_length_bytes: null,
    max_priority: null,
  };
}

/**
 * The built-in inspect commands: `ping`, `stats`, `active`, `reserved`, `scheduled`,
 * `revoked`, `registered`, `query_task`, `active_queues`, `conf`, `report`, `clock`,
 * `memsample` and the hidden `hello` (mingle).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { INSPECT_COMMANDS } from "./inspect.ts";
 * assert.ok(INSPECT_COMMANDS.every((c) => c.kind === "inspect"));
 * assert.ok(INSPECT_COMMANDS.some((c) => c.name === "ping"));
 * ```
 */
export const INSPECT_COMMANDS: readonly CommandSpec[] = [
  defineCommand("ping", () => ok("pong"), { kind: "inspect", help: "Ping worker(s)." }),

  defineCommand("stats", (ctx) => {
    const w = ctx.worker;
    const limits = w.defaultTimeLimits;
    return {
      total: { ...w.counters.total },
      pid: Deno.pid,
      clock: String(ctx.clock.value),
      uptime: Math.floor(w.uptimeMs / 1000),
      pool: {
        "max-concurrency": w.pool.size,
        processes: [Deno.pid],
        "max-tasks-per-child": "N/A",
        "put-guarded-by-semaphore": false,
        timeouts: [limits.soft ?? 0, limits.hard ?? 0],
        implementation: "celeriac.AsyncPool",
        active: w.pool.active,
      },
      broker: brokerInfo(ctx.broker),
      prefetch_count: w.prefetchCount,
      rusage: rusage(),
    };
  }, { kind: "inspect", help: "Request worker statistics/information." }),

  defineCommand(
    "active",
    (ctx, args) =>
      ctx.worker.active.map((a) =>
        requestInfo(ctx, a, { active: true, safe: argBool(args, "safe") })
      ),
    { kind: "inspect", alias: "dump_active", help: "List of tasks currently being executed." },
  ),

  defineCommand(
    "reserved",
    (ctx) => ctx.worker.held.filter((h) => h.eta === null).map((h) => requestInfo(ctx, h)),
    {
      kind: "inspect",
      alias: "dump_reserved",
      help: "List of currently reserved tasks, not including scheduled/active.",
    },
  ),

  defineCommand(
    "scheduled",
    (ctx) =>
      ctx.worker.held.filter((h) => h.eta !== null)
        .sort((a, b) => a.eta!.getTime() - b.eta!.getTime())
        .map((h) => ({ eta: etaText(h), priority: 6, request: requestInfo(ctx, h) })),
    {
      kind: "inspect",
      alias: "dump_schedule",
      help: "List of currently scheduled ETA/countdown tasks.",
    },
  ),

  defineCommand("revoked", (ctx) => ctx.worker.revoked.ids(), {
    kind: "inspect",
    alias: "dump_revoked",
    help: "List of revoked task-ids.",
  }),

  defineCommand("registered", (ctx, args) => {
    const asked = argList(args, "taskinfoitems");
    const items = asked.length ? asked : ["exchange", "routing_key", "rate_limit"];
    const builtins = argBool(args, "builtins");
    return [...ctx.app.tasks.keys()]
      .filter((name) => builtins || !name.startsWith("celery."))
      .sort()
      .map((name) => {
        const fields = items.flatMap((field) => {
          const value = taskAttribute(ctx, name, field);
          return value === undefined || value === null ? [] : [`${field}=${pyStr(value)}`];
        });
        return fields.length ? `${name} [${fields.join(" ")}]` : name;
      });
  }, {
    kind: "inspect",
    alias: "dump_tasks",
    variadic: "taskinfoitems",
    signature: "[attr1 [attr2 [... [attrN]]]]",
    help: "List of registered tasks.",
  }),

  defineCommand("query_task", (ctx, args) => {
    const ids = new Set(argList(args, "ids"));
    const out: Record<string, unknown> = {};
    for (const a of ctx.worker.active) {
      if (ids.has(a.id)) out[a.id] = ["active", requestInfo(ctx, a, { active: true })];
    }
    for (const h of ctx.worker.held) {
      if (ids.has(h.id) && !(h.id in out)) out[h.id] = ["reserved", requestInfo(ctx, h)];
    }
    return out;
  }, {
    kind: "inspect",
    variadic: "ids",
    signature: "[id1 [id2 [... [idN]]]]",
    help: "Query for task information by id.",
  }),

  defineCommand("active_queues", (ctx) => ctx.worker.queues.map((q) => queueAsDict(ctx, q)), {
    kind: "inspect",
    help: "List the task queues a worker is currently consuming from.",
  }),

  defineCommand("conf", (ctx) => configuration(ctx), {
    kind: "inspect",
    alias: "dump_conf",
    args: [["with_defaults", "bool"]],
    signature: "[include_defaults=False]",
    help: "List configuration.",
  }),

  defineCommand("report", (ctx) => ok(bugReport(ctx)), {
    kind: "inspect",
    help: "Information about the installation for bug reports.",
  }),

  defineCommand("clock", (ctx) => ({ clock: ctx.clock.value }), {
    kind: "inspect",
    help: "Get current logical clock value.",
  }),

  defineCommand("memsample", () => {
    try {
      return `${Math.round(Deno.memoryUsage().rss / (1024 * 1024))}MB`;
    } catch {
      return null;
    }
  }, { kind: "inspect", help: "Sample current RSS memory usage." }),

  defineCommand("hello", (ctx, args) => {
    const from = args["from_node"];
    if (from === ctx.hostname) return null;
    ctx.log.info(`remote control: sync with ${from}`);
    const incoming = args["revoked"];
    if (incoming && typeof incoming === "object" && !Array.isArray(incoming)) {
      ctx.worker.revoked.add(Object.keys(incoming));
    }
    // Python merges these into a LimitedSet, which takes only floats (gotcha 11).
    const now = monotonicNow();
    const revoked: Record<string, unknown> = {};
    for (const id of ctx.worker.revoked.ids()) revoked[id] = [pyFloat(now), id];
    return { revoked, clock: ctx.clock.forward() };
  }, {
    kind: "inspect",
    visible: false,
    args: [["from_node", "str"]],
    help: "Request mingle sync-data.",
  }),
];
