/**
 * The `control` commands (they change the worker), with Celery 5.2's replies (wire
 * reference §5.4), plus celeriac's `revoke_by_name` for flooded queues (`docs/control.md`).
 *
 * @module
 */

import { Workflow } from "../../canvas/worker_side.ts";
import { silentLogger } from "../../log.ts";
import type { TransportMessage } from "../../protocol/message.ts";
import { pyRepr } from "../../protocol/repr.ts";
import { decodeTaskMessage, type TaskMessage } from "../../protocol/task.ts";
import { parseRateLimit } from "../../worker/rate_limit.ts";
import { Reporter } from "../../worker/reporter.ts";
import type { Delivery } from "../../brokers/broker.ts";
import {
  argBool,
  argList,
  argNumber,
  argString,
  type CommandSpec,
  type ControlContext,
  defineCommand,
  NO_REPLY,
  nok,
  ok,
  ValueError,
} from "./types.ts";

const SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  KILL: 9,
  USR1: 10,
  USR2: 12,
  TERM: 15,
};

/**
 * A signal name (`"SIGTERM"`, `"TERM"`) or number as its number (15 for TERM), as Celery's
 * `signals.signum`.
 *
 * @throws {TypeError} For an unknown signal name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signalNumber } from "./control.ts";
 * assert.equal(signalNumber("SIGKILL"), 9);
 * assert.equal(signalNumber("term"), 15);
 * assert.equal(signalNumber(undefined), 15);
 * ```
 */
export function signalNumber(signal: unknown): number {
  if (signal === undefined || signal === null || signal === "") return SIGNALS.TERM!;
  if (typeof signal === "number" && Number.isInteger(signal)) return signal;
  const text = String(signal).toUpperCase().replace(/^SIG/, "");
  if (/^\d+$/.test(text)) return Number(text);
  const n = SIGNALS[text];
  if (n === undefined) throw new TypeError(`Unknown signal name: ${pyRepr(String(signal))}`);
  return n;
}

function revoke(ctx: ControlContext, args: Record<string, unknown>): unknown {
  const ids = argList(args, "task_id");
  const terminate = argBool(args, "terminate");
  if (terminate) {
    signalNumber(args["signal"]);
    const known = new Set([...ctx.worker.active, ...ctx.worker.held].map((r) => r.id));
    ctx.worker.revoke(ids, { terminate: true });
    const found = ids.filter((id) => known.has(id));
    if (found.length) ctx.log.info(`remote control: Terminating ${found.join(", ")}`);
    return ok(found.length ? `terminate: ${found.join(", ")}` : "terminate: tasks unknown");
  }
  ctx.worker.revoke(ids);
  const text = ids.join(", ");
  ctx.log.info(`remote control: Tasks flagged as revoked: ${text}`);
  return ok(`tasks ${text} flagged as revoked`);
}

/** Celery's `rate()` checks, with its error texts. */
function checkRate(limit: unknown): void {
  if (limit === null || limit === undefined || limit === "" || limit === 0 || limit === false) {
    return;
  }
  if (typeof limit === "number") {
    parseRateLimit(limit);
    return;
  }
  const text = String(limit);
  const slash = text.indexOf("/");
  const ops = slash < 0 ? text : text.slice(0, slash);
  const modifier = slash < 0 ? "" : text.slice(slash + 1);
  if (modifier && !["s", "m", "h"].includes(modifier)) {
    // Python's RATE_MODIFIER_MAP[modifier] lookup fails before anything is caught.
    throw Object.assign(new Error(modifier), { name: "KeyError", excArgs: [modifier] });
  }
  if (!/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(ops)) {
    throw new ValueError(`could not convert string to float: ${pyRepr(ops)}`);
  }
  parseRateLimit(text.trim());
}

/** A delivery for a message taken out of its queue: nothing left to settle. */
function settledDelivery(queue: string, message: TransportMessage): Delivery {
  const done = () => Promise.resolve();
  return {
    message,
    queue,
    raw: "",
    redelivered: false,
    ack: done,
    requeue: done,
    deadLetter: done,
  };
}

async function revokeByName(
  ctx: ControlContext,
  args: Record<string, unknown>,
): Promise<unknown> {
  const name = argString(args, "task_name")!;
  const asked = argList(args, "queue");
  const queues = asked.length ? asked : [...ctx.worker.queues];
  const terminate = argBool(args, "terminate");
  const broker = ctx.broker;
  if (!broker.takeTaskMessages) {
    throw new TypeError(
      `broker ${broker.displayUrl} cannot select waiting messages by task name`,
    );
  }
  // 1. Waiting in the broker: taken out atomically, the other messages stay in order.
  const taken: { queue: string; message: TaskMessage; raw: TransportMessage }[] = [];
  for (const queue of queues) {
    for (const raw of await broker.takeTaskMessages(queue, name)) {
      try {
        taken.push({ queue, message: decodeTaskMessage(raw), raw });
      } catch {
        // Matched by headers.task but not a valid task message: it is gone either way.
      }
    }
  }
  ctx.worker.revoked.add(taken.map((t) => t.message.id));
  // As the worker's own reporter (chord accounting and errbacks of revoked members too),
  // without a log line per message.
  const backend = await ctx.app.backend();
  const reporter = new Reporter(backend, silentLogger, new Workflow(ctx.app, backend, ctx.log));
  for (let i = 0; i < taken.length; i += 100) {
    await Promise.all(
      taken.slice(i, i + 100).map(async (t) => {
        ctx.worker.hooks.emit("revoked", {
          message: t.message,
          expired: false,
          terminated: false,
          signum: null,
        });
        await reporter.revoked(t.message, settledDelivery(t.queue, t.raw), "revoked", false);
      }),
    );
  }
  // 2. Held by this worker (ETA or rate-limited): revoked now.
  const held = ctx.worker.held.filter((h) => h.message.task === name).map((h) => h.id);
  if (held.length) ctx.worker.revoke(held);
  // 3. Running here: only with terminate.
  const running = ctx.worker.active.filter((a) => a.message.task === name).map((a) => a.id);
  const terminated = terminate && running.length ? ctx.worker.revoke(running, { terminate }) : [];
  const text = `${name}: revoked ${taken.length} waiting in ${queues.join(", ") || "(no queue)"}` +
    `, ${held.length} held` +
    (terminate ? `, terminated ${terminated.length} running` : `, ${running.length} still running`);
  ctx.log.warning(`remote control: ${text}`);
  return {
    ok: text,
    waiting: taken.length,
    held: held.length,
    running: terminate ? 0 : running.length,
    terminated: terminated.length,
    queues,
  };
}

/**
 * The built-in control commands: `revoke`, `terminate`, `rate_limit`, `time_limit`,
 * `add_consumer`, `cancel_consumer`, `pool_grow`, `pool_shrink`, `autoscale`,
 * `pool_restart`, `enable_events`, `disable_events`, `heartbeat`, `shutdown`, and
 * `revoke_by_name`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CONTROL_COMMANDS } from "./control.ts";
 * assert.ok(CONTROL_COMMANDS.every((c) => c.kind === "control"));
 * assert.ok(CONTROL_COMMANDS.some((c) => c.name === "rate_limit"));
 * ```
 */
export const CONTROL_COMMANDS: readonly CommandSpec[] = [
  defineCommand("revoke", revoke, {
    variadic: "task_id",
    signature: "[id1 [id2 [... [idN]]]]",
    help: "Revoke task by task id (or list of ids).",
  }),

  defineCommand(
    "terminate",
    (ctx, args) =>
      revoke(ctx, { task_id: args["task_id"], terminate: true, signal: args["signal"] }),
    {
      args: [["signal", "str"]],
      variadic: "task_id",
      signature: "<signal> [id1 [id2 [... [idN]]]]",
      help: "Terminate task by task id (or list of ids).",
    },
  ),

  defineCommand("rate_limit", (ctx, args) => {
    const name = argString(args, "task_name", false) ?? "";
    const limit = args["rate_limit"];
    try {
      checkRate(limit);
    } catch (err) {
      if ((err as Error).name === "KeyError") throw err;
      const e = err as Error;
      const exc = e.name === "ValueError" ? `ValueError(${pyRepr(e.message)})` : pyRepr(e.message);
      return nok(`Invalid rate limit string: ${exc}`);
    }
    if (!ctx.app.tasks.has(name)) {
      ctx.log.error(`remote control: Rate limit attempt for unknown task ${name}`);
      return nok("unknown task");
    }
    const value = limit === undefined || limit === false ? null : limit as string | number | null;
    ctx.worker.setRateLimit(name, value);
    ctx.mailbox.rateLimits.set(name, value || null);
    if (!value) {
      ctx.log.info(`remote control: Rate limits disabled for tasks of type ${name}`);
      return ok("rate limit disabled successfully");
    }
    ctx.log.info(`remote control: New rate limit for tasks of type ${name}: ${value}.`);
    return ok("new rate limit set successfully");
  }, {
    args: [["task_name", "str"], ["rate_limit", "str"]],
    signature: "<task_name> <rate_limit (e.g., 5/s | 5/m | 5/h)>",
    help: "Tell worker(s) to modify the rate limit for a task by type.",
  }),

  defineCommand("time_limit", (ctx, args) => {
    const name = argString(args, "task_name", false) ?? "";
    if (!ctx.app.tasks.has(name)) {
      ctx.log.error(`remote control: Change time limit attempt for unknown task ${name}`);
      return nok("unknown task");
    }
    const soft = argNumber(args, "soft", null);
    const hard = argNumber(args, "hard", null);
    ctx.worker.setTimeLimit(name, soft, hard);
    ctx.mailbox.timeLimits.set(name, { soft, hard });
    ctx.log.info(
      `remote control: New time limits for tasks of type ${name}: soft=${soft} hard=${hard}`,
    );
    return ok("time limits set successfully");
  }, {
    args: [["task_name", "str"], ["soft", "float"], ["hard", "float"]],
    signature: "<task_name> <soft_secs> [hard_secs]",
    help: "Tell worker(s) to modify the time limit for task by type.",
  }),

  defineCommand("add_consumer", async (ctx, args) => {
    const queue = argString(args, "queue")!;
    const exchange = argString(args, "exchange", false) ?? queue;
    const exchangeType = argString(args, "exchange_type", false) ?? "direct";
    const routingKey = argString(args, "routing_key", false) ?? queue;
    if (!ctx.worker.queues.includes(queue)) {
      ctx.mailbox.declarations.set(queue, { exchange, exchangeType, routingKey });
    }
    await ctx.worker.addQueue(queue, { exchange, routingKey });
    return ok(`add consumer ${queue}`);
  }, {
    args: [["queue", "str"], ["exchange", "str"], ["exchange_type", "str"], [
      "routing_key",
      "str",
    ]],
    signature: "<queue> [exchange [type [routing_key]]]",
    help: "Tell worker(s) to consume from task queue by name.",
  }),

  defineCommand("cancel_consumer", (ctx, args) => {
    const queue = argString(args, "queue")!;
    ctx.worker.cancelQueue(queue);
    return ok(`no longer consuming from ${queue}`);
  }, {
    args: [["queue", "str"]],
    signature: "<queue>",
    help: "Tell worker(s) to stop consuming from task queue by name.",
  }),

  defineCommand("pool_grow", (ctx, args) => {
    const n = argNumber(args, "n", 1);
    ctx.worker.pool.resize(ctx.worker.pool.size + n);
    return ok("pool will grow");
  }, { args: [["n", "int"]], signature: "[N=1]", help: "Grow pool by n slots." }),

  defineCommand("pool_shrink", (ctx, args) => {
    const n = argNumber(args, "n", 1);
    const size = ctx.worker.pool.size - n;
    if (size < 1) throw new ValueError("Can't shrink pool below 1 slot");
    ctx.worker.pool.resize(size);
    return ok("pool will shrink");
  }, { args: [["n", "int"]], signature: "[N=1]", help: "Shrink pool by n slots." }),

  defineCommand("autoscale", () => {
    throw new ValueError("Autoscale not enabled");
  }, {
    args: [["max", "int"], ["min", "int"]],
    signature: "[max [min]]",
    help: "Modify autoscale settings.",
  }),

  defineCommand("pool_restart", () => {
    throw new ValueError("Pool restarts not enabled");
  }, { help: "Restart execution pool." }),

  defineCommand("enable_events", (ctx) => {
    const events = ctx.worker.events;
    if (events?.enableTaskEvents()) {
      ctx.log.info("remote control: Events of group {task} enabled by remote.");
      return ok("task events enabled");
    }
    return ok("task events already enabled");
  }, { help: "Tell worker(s) to send task-related events." }),

  defineCommand("disable_events", (ctx) => {
    const events = ctx.worker.events;
    if (events?.disableTaskEvents()) {
      ctx.log.info("remote control: Events of group {task} disabled by remote.");
      return ok("task events disabled");
    }
    return ok("task events already disabled");
  }, { help: "Tell worker(s) to stop sending task-related events." }),

  defineCommand("heartbeat", (ctx) => {
    ctx.log.debug("remote control: Heartbeat requested by remote.");
    ctx.worker.events?.sendWorkerEvent("worker-heartbeat", 5);
    return null;
  }, { help: "Tell worker(s) to send event heartbeat immediately." }),

  defineCommand("shutdown", (ctx, args) => {
    ctx.log.warning(String(args["msg"] ?? "Got shutdown from remote"));
    // After this command's turn: stop() waits for the mailbox, which waits for this.
    setTimeout(() => ctx.worker.stop().catch(() => {}), 0);
    return NO_REPLY;
  }, { help: "Shutdown worker(s)." }),

  defineCommand("revoke_by_name", revokeByName, {
    args: [["task_name", "str"], ["queue", "str"]],
    signature: "<task_name> [queue]",
    help:
      "Revoke every waiting message of a task name (taken out of the queues, REVOKED), and the held ones; running ones only with terminate.",
  }),
];
