/**
 * Remote control on the memory broker: the mailbox's dispatch rules (destination, glob and
 * pcre patterns, unknown commands, errors, allowlist, casts, shutdown, the Lamport clock),
 * and the reply shapes compared field by field with Celery 5.2's captured fixtures.
 */

import assert from "node:assert/strict";
import { NO_REPLY } from "../../src/control/commands/types.ts";
import {
  decodeReply,
  encodeRequest,
  PIDBOX_EXCHANGE,
  REPLY_EXCHANGE,
  replyQueue,
} from "../../src/control/protocol.ts";
import { decodeJsonBody, type TransportMessage } from "../../src/protocol/message.ts";
import { harness } from "../helpers/harness.ts";
import { gate, waitFor } from "../helpers/wait.ts";

const FIXTURES = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);
// deno-lint-ignore no-explicit-any
const fixture = (name: string): any =>
  JSON.parse(Deno.readTextFileSync(new URL(`${name}.json`, FIXTURES)));

const NODE = "w1@fixtures";

/** The fixture app's task names. */
function fixtureTasks(app: { task: (name: string, fn: () => unknown) => unknown }) {
  for (const name of ["tasks.add", "tasks.echo", "tasks.fail", "tasks.retry_once", "tasks.xsum"]) {
    app.task(name, () => null);
  }
}

function keys(value: unknown): string[] {
  return Object.keys(value as Record<string, unknown>);
}

/**
 * Sends a raw request and returns the reply messages published for it (memory broker).
 * Mailboxes handle requests in order, so once every node answered a later `ping` (the
 * barrier), the request was handled and any reply to it published.
 */
async function call(
  h: Awaited<ReturnType<typeof harness>>,
  body: Record<string, unknown>,
  headers: { clock: number; expires: number } = { clock: 1, expires: 0 },
  nodes = 1,
): Promise<TransportMessage[]> {
  const oid = crypto.randomUUID();
  const queue = replyQueue(oid);
  await h.broker.bindQueue(queue, REPLY_EXCHANGE, oid);
  const request = {
    method: "ping",
    arguments: {},
    destination: null,
    pattern: null,
    matcher: null,
    ticket: "t-" + oid,
    reply_to: { exchange: REPLY_EXCHANGE, routing_key: oid },
    ...body,
  };
  await h.broker.broadcast(
    PIDBOX_EXCHANGE,
    "",
    encodeRequest(request as Parameters<typeof encodeRequest>[0], headers),
  );
  await h.app.control.broadcast("ping", { reply: true, limit: nodes, timeout: 5 });
  const got = await h.broker.fetch([queue], { max: 100, timeoutMs: 0 });
  for (const d of got) await d.ack();
  await h.broker.unbindQueue(queue, REPLY_EXCHANGE, oid);
  return got.map((d) => d.message!);
}

Deno.test("control: ping, registered, active, rate_limit replies equal Celery's fixtures", async () => {
  const h = await harness("control-fixtures");
  try {
    fixtureTasks(h.app);
    h.app.task("tasks.sleep", () => null);
    const worker = h.worker({ name: NODE });
    await worker.start();
    const inspect = h.app.control.inspect({ destination: [NODE] });
    assert.deepEqual(await inspect.ping(), fixture("redis-pidbox-reply-ping").body);
    assert.deepEqual(await inspect.registered(), fixture("redis-pidbox-reply-registered").body);
    assert.deepEqual(await inspect.active(), fixture("redis-pidbox-reply-active").body);
    assert.deepEqual(
      await h.app.control.rateLimit("tasks.add", "10/m", { reply: true, destination: [NODE] }),
      fixture("amqp-pidbox-reply-rate-limit").api_result,
    );
    // Celery shows a task's rate limit among the default taskinfoitems.
    assert.equal((await inspect.registered())[NODE]![0], "tasks.add [rate_limit=10/m]");
  } finally {
    await h.close();
  }
});

Deno.test("control: the reply envelope and the request body have kombu's fields", async () => {
  const h = await harness("control-envelope");
  try {
    const worker = h.worker({ name: NODE });
    await worker.start();
    // Reply: headers {ticket, clock}, delivery_mode 1, JSON utf-8, body {node: reply}.
    const [reply] = await call(h, {});
    const want = fixture("redis-pidbox-reply-ping").envelope;
    assert.deepEqual(keys(reply!.headers), keys(want.headers));
    assert.match(String(reply!.headers.ticket), /^t-/);
    assert.equal(typeof reply!.headers.clock, "number");
    assert.equal(reply!.properties.delivery_mode, want.properties.delivery_mode);
    assert.equal(reply!.contentType, want["content-type"]);
    assert.equal(reply!.contentEncoding, want["content-encoding"]);
    assert.equal(reply!.deliveryInfo!.exchange, want.properties.delivery_info.exchange);
    assert.deepEqual(decodeJsonBody(reply!), { [NODE]: { ok: "pong" } });

    // Request as the client broadcasts it: same fields, same order, as Celery's.
    const seen: TransportMessage[] = [];
    const sub = await h.broker.subscribe(PIDBOX_EXCHANGE, "", (m) => seen.push(m));
    try {
      await h.app.control.inspect({ destination: [NODE] }).ping();
      const request = fixture("redis-pidbox-request-ping");
      const body = decodeJsonBody(seen[0]!) as Record<string, unknown>;
      assert.deepEqual(keys(body), keys(request.body));
      assert.deepEqual(keys(body.reply_to), keys(request.body.reply_to));
      assert.equal((body.reply_to as { exchange: string }).exchange, REPLY_EXCHANGE);
      assert.deepEqual(keys(seen[0]!.headers), keys(request.envelope.headers));
      assert.ok((seen[0]!.headers.expires as number) > Date.now() / 1000);
      assert.equal(seen[0]!.properties.delivery_mode, request.envelope.properties.delivery_mode);
      // A cast (revoke) has no ticket and no reply_to, as the fixture.
      seen.length = 0;
      await h.app.control.revoke("c15d01d0-69d6-459c-90e3-97f715acee65");
      await waitFor(() => seen.length === 1);
      assert.deepEqual(decodeJsonBody(seen[0]!), fixture("redis-pidbox-request-revoke").body);
    } finally {
      await sub.close();
    }
  } finally {
    await h.close();
  }
});

Deno.test("control: stats and scheduled have Celery's fields and types", async () => {
  const h = await harness("control-stats");
  try {
    fixtureTasks(h.app);
    const worker = h.worker({ name: NODE, concurrency: 2, prefetchMultiplier: 3 });
    await worker.start();
    await (await h.app.sendTask("tasks.add", [2, 3])).get({ timeout: 5 });
    const eta = new Date(Date.UTC(2031, 0, 1, 12));
    const later = await h.app.sendTask("tasks.add", [2, 3], {}, { eta });
    const soon = await h.app.sendTask("tasks.add", [2, 3], {}, { countdown: 3600 });
    await waitFor(() => worker.scheduledIds.length === 2);
    const inspect = h.app.control.inspect({ destination: [NODE] });

    const stats = (await inspect.stats())[NODE]!;
    const want = fixture("redis-pidbox-reply-stats").body["w1@fixtures"];
    for (const k of keys(want)) assert.ok(k in stats, `stats.${k}`);
    assert.equal(typeof stats.clock, "string");
    assert.ok(Number.isInteger(stats.uptime));
    assert.equal(stats.pid, Deno.pid);
    assert.deepEqual(stats.total, { "tasks.add": 1 });
    const pool = stats.pool as Record<string, unknown>;
    for (const k of ["max-concurrency", "processes", "max-tasks-per-child", "timeouts"]) {
      assert.ok(k in pool, `pool.${k}`);
    }
    assert.equal(pool["max-concurrency"], 2);
    assert.deepEqual(keys(stats.broker).sort(), keys(want.broker).sort());
    assert.equal((stats.broker as { transport: string }).transport, "memory");
    assert.equal(stats.prefetch_count, 6, "concurrency × prefetchMultiplier");
    const rusage = stats.rusage as Record<string, unknown>;
    assert.deepEqual(keys(rusage).sort(), keys(want.rusage).sort());

    const scheduled = (await inspect.scheduled())[NODE]!;
    const wantScheduled = fixture("redis-pidbox-reply-scheduled").body["w1@fixtures"];
    assert.equal(scheduled.length, 2);
    const [first, second] = scheduled as Record<string, Record<string, unknown>>[];
    assert.deepEqual(keys(first), keys(wantScheduled[0]));
    assert.deepEqual(keys(first!.request), keys(wantScheduled[0].request));
    assert.deepEqual(
      keys(first!.request!.delivery_info),
      keys(wantScheduled[0].request.delivery_info),
    );
    assert.equal(first!.priority, 6);
    assert.equal(first!.request!.id, soon.id);
    assert.match(String(first!.eta), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/);
    assert.equal(second!.eta, "2031-01-01T12:00:00+00:00");
    assert.deepEqual(
      { ...second!.request, id: "", hostname: "" },
      { ...wantScheduled[1].request, id: "", hostname: "" },
    );
    assert.equal(second!.request!.id, later.id);
  } finally {
    await h.close();
  }
});

Deno.test("control: destination, glob and pcre patterns pick the nodes", async () => {
  const h = await harness("control-dest");
  try {
    const w1 = h.worker({ name: "w1@alpha" });
    const w2 = h.worker({ name: "w2@beta" });
    await w1.start();
    await w2.start();
    const control = h.app.control;
    const nodes = async (options: Parameters<typeof control.inspect>[0]) =>
      Object.keys(await control.inspect({ timeout: 0.15, ...options }).ping()).sort();
    assert.deepEqual(await nodes({}), ["w1@alpha", "w2@beta"]);
    assert.deepEqual(await nodes({ destination: ["w2@beta"] }), ["w2@beta"]);
    assert.deepEqual(await nodes({ destination: "w1@alpha" }), ["w1@alpha"]);
    assert.deepEqual(await nodes({ destination: ["nobody@x"] }), []);
    assert.deepEqual(await nodes({ pattern: "*@beta", matcher: "glob" }), ["w2@beta"]);
    assert.deepEqual(await nodes({ pattern: "w[12]@a*", matcher: "glob" }), ["w1@alpha"]);
    assert.deepEqual(await nodes({ pattern: "w\\d@", matcher: "pcre" }), ["w1@alpha", "w2@beta"]);
    assert.deepEqual(await nodes({ pattern: "alpha", matcher: "pcre" }), []); // anchored at start
    // An unknown matcher: no node handles it (kombu raises MatcherNotInstalled).
    const raw = await call(h, { pattern: "*", matcher: "nosuch" }, undefined, 2);
    assert.deepEqual(raw, []);
  } finally {
    await h.close();
  }
});

Deno.test("control: unknown command, failing handler, refused command, cast, shutdown", async () => {
  const h = await harness("control-errors");
  try {
    h.app.control.register("boom", () => {
      throw new RangeError("too big");
    });
    const worker = h.worker({
      name: "w1@h",
      remoteControl: { allow: ["ping", "dump_active", "boom", "shutdown", "revoke"] },
    });
    await worker.start();
    const control = h.app.control;
    const one = { reply: true, destination: ["w1@h"] };
    assert.deepEqual(await control.broadcast("nosuchcmd", one), [{
      "w1@h": { error: "KeyError('nosuchcmd')" },
    }]);
    assert.deepEqual(await control.broadcast("boom", one), [{
      "w1@h": { error: "RangeError('too big')" },
    }]);
    assert.deepEqual(await control.broadcast("stats", one), [{
      "w1@h": { error: "Command 'stats' is not allowed on this worker" },
    }]);
    assert.deepEqual(await control.broadcast("active", one), [{ "w1@h": [] }]); // alias allowed
    assert.deepEqual(
      worker.mailbox?.allowed,
      new Set(["ping", "active", "boom", "shutdown", "revoke"]),
    );

    // A cast runs the command and publishes nothing.
    assert.deepEqual(await control.revoke(["x1", "x2"]), []);
    await waitFor(() => worker.revoked.has("x2"));
    // Nothing was published for the cast: the raw reply list stays empty.
    assert.deepEqual(
      await call(h, {
        method: "revoke",
        arguments: { task_id: "x3" },
        ticket: undefined,
        reply_to: undefined,
      }),
      [],
    );
    assert.ok(worker.revoked.has("x3"));

    // shutdown: no reply, and the worker stops warm.
    assert.deepEqual(await control.broadcast("shutdown", { ...one, timeout: 0.2 }), []);
    await worker.done;
    assert.equal(worker.mailbox?.allowed?.has("shutdown"), true);
  } finally {
    await h.close();
  }
});

Deno.test("control: remote control off, and a broker without fanout, serve nothing", async () => {
  const h = await harness("control-off");
  try {
    const worker = h.worker({ name: "w1@off", remoteControl: false });
    await worker.start();
    assert.equal(worker.mailbox, undefined);
    assert.deepEqual(await h.app.control.inspect({ timeout: 0.1 }).ping(), {});
  } finally {
    await h.close();
  }
});

Deno.test("control: the Lamport clock adjusts from the request header and moves forward", async () => {
  const h = await harness("control-clock");
  try {
    const worker = h.worker({ name: "w1@clock" });
    await worker.start();
    const [reply] = await call(h, {}, { clock: 100, expires: 0 });
    const clock = decodeReply(reply!).clock;
    assert.ok(clock > 100, `reply clock ${clock}`);
    assert.ok(worker.mailbox!.clock.value >= clock);
    // Shared with the worker's events.
    assert.equal(worker.mailbox!.clock, worker.events!.clock);
    const [clockReply] = await call(h, { method: "clock" });
    assert.ok((decodeReply(clockReply!).body["w1@clock"] as { clock: number }).clock > clock);
    assert.ok(h.app.control.clock.value >= 0);
  } finally {
    await h.close();
  }
});

Deno.test("control: hello replies revoked ids with float timestamps, null to itself", async () => {
  const h = await harness("control-hello");
  try {
    const worker = h.worker({ name: "w1@mingle" });
    await worker.start();
    worker.revoke(["r1"]);
    const [reply] = await call(h, {
      method: "hello",
      arguments: { from_node: "w2@mingle", revoked: { r2: [12.5, "r2"] } },
    });
    const text = new TextDecoder().decode(reply!.body);
    // Python's LimitedSet.update takes only floats: a fractional part on every timestamp.
    assert.match(text, /"r1":\[\d+\.\d+,"r1"\]/);
    assert.match(text, /"r2":\[\d+\.\d+,"r2"\]/);
    const body = decodeReply(reply!).body["w1@mingle"] as { clock: number };
    assert.equal(typeof body.clock, "number");
    assert.ok(worker.revoked.has("r2"));
    const [self] = await call(h, { method: "hello", arguments: { from_node: "w1@mingle" } });
    assert.deepEqual(decodeReply(self!).body, { "w1@mingle": null });
  } finally {
    await h.close();
  }
});

Deno.test("control: rate_limit and time_limit validate like Celery", async () => {
  const h = await harness("control-limits");
  try {
    h.app.task("tasks.add", (x: number, y: number) => x + y);
    const worker = h.worker({ name: "w1@lim" });
    await worker.start();
    const one = { reply: true, destination: ["w1@lim"] };
    const c = h.app.control;
    const reply = async (p: Promise<Record<string, unknown>[]>) => (await p)[0]!["w1@lim"];
    assert.deepEqual(await reply(c.rateLimit("tasks.nope", "1/s", one)), { error: "unknown task" });
    assert.deepEqual(await reply(c.rateLimit("tasks.add", "abc", one)), {
      error: `Invalid rate limit string: ValueError("could not convert string to float: 'abc'")`,
    });
    assert.deepEqual(await reply(c.rateLimit("tasks.add", "10/x", one)), {
      error: "KeyError('x')",
    });
    assert.deepEqual(await reply(c.rateLimit("tasks.add", null, one)), {
      ok: "rate limit disabled successfully",
    });
    assert.deepEqual(await reply(c.rateLimit("tasks.add", 5, one)), {
      ok: "new rate limit set successfully",
    });
    assert.deepEqual(await reply(c.timeLimit("tasks.nope", { soft: 1 }, one)), {
      error: "unknown task",
    });
    assert.deepEqual(await reply(c.timeLimit("tasks.add", { soft: 1, hard: 2 }, one)), {
      ok: "time limits set successfully",
    });
    assert.deepEqual(
      (await c.inspect({ destination: ["w1@lim"] }).registered(
        "rate_limit",
        "time_limit",
        "soft_time_limit",
      ))["w1@lim"],
      ["tasks.add [rate_limit=5 time_limit=2 soft_time_limit=1]"],
    );
  } finally {
    await h.close();
  }
});

Deno.test("control: add_consumer and cancel_consumer change the queues of a running worker", async () => {
  const h = await harness("control-queues");
  try {
    h.app.task("tasks.sms", (n: number) => n);
    const worker = h.worker({ name: "w1@q" });
    await worker.start();
    const one = { reply: true, destination: ["w1@q"] };
    const c = h.app.control;
    const result = await h.app.sendTask("tasks.sms", [1], {}, { queue: "urgent" });
    assert.deepEqual(await c.addConsumer("urgent", one), [{
      "w1@q": { ok: "add consumer urgent" },
    }]);
    assert.equal(await result.get({ timeout: 5 }), 1);
    const queues = (await c.inspect({ destination: ["w1@q"] }).activeQueues())["w1@q"]!;
    assert.deepEqual(queues.map((q) => q.name), ["celery", "urgent"]);
    const want = fixture("redis-pidbox-reply-stats") && {
      name: "urgent",
      exchange: {
        name: "urgent",
        type: "direct",
        arguments: null,
        durable: true,
        passive: false,
        auto_delete: false,
        delivery_mode: null,
        no_declare: false,
      },
      routing_key: "urgent",
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
    assert.deepEqual(queues[1], want);
    assert.deepEqual(await c.cancelConsumer("celery", one), [{
      "w1@q": { ok: "no longer consuming from celery" },
    }]);
    assert.deepEqual(worker.queues, ["urgent"]);
    const waiting = await h.app.sendTask("tasks.sms", [2]);
    await c.cancelConsumer("urgent", one);
    assert.deepEqual(worker.queues, []);
    assert.equal(await h.broker.queueSize("celery"), 1); // nobody consumes it now
    await c.addConsumer("celery", one);
    assert.equal(await waiting.get({ timeout: 5 }), 2);
  } finally {
    await h.close();
  }
});

Deno.test("control: pool_grow, pool_shrink, autoscale, events, heartbeat", async () => {
  const h = await harness("control-pool");
  try {
    const worker = h.worker({ name: "w1@p", concurrency: 2 });
    await worker.start();
    const one = { reply: true, destination: ["w1@p"] };
    const c = h.app.control;
    const reply = async (p: Promise<Record<string, unknown>[]>) => (await p)[0]!["w1@p"];
    assert.deepEqual(await reply(c.poolGrow(3, one)), { ok: "pool will grow" });
    assert.equal(worker.pool.size, 5);
    assert.deepEqual(await reply(c.poolShrink(1, one)), { ok: "pool will shrink" });
    assert.equal(worker.pool.size, 4);
    assert.match(
      String((await reply(c.poolShrink(10, one)) as { error: string }).error),
      /^ValueError\(/,
    );
    assert.deepEqual(await reply(c.autoscale(10, 2, one)), {
      error: "ValueError('Autoscale not enabled')",
    });
    assert.deepEqual(await reply(c.broadcast("pool_restart", one)), {
      error: "ValueError('Pool restarts not enabled')",
    });
    assert.deepEqual(await reply(c.enableEvents(one)), { ok: "task events enabled" });
    assert.equal(worker.events!.taskEventsEnabled, true);
    assert.deepEqual(await reply(c.enableEvents(one)), { ok: "task events already enabled" });
    assert.deepEqual(await reply(c.disableEvents(one)), { ok: "task events disabled" });
    assert.deepEqual(await reply(c.disableEvents(one)), { ok: "task events already disabled" });
    const beats: unknown[] = [];
    const sub = await h.broker.subscribe(
      "celeryev",
      "worker.heartbeat",
      (m) => beats.push(decodeJsonBody(m)),
    );
    try {
      assert.equal(await reply(c.heartbeat(one)), null);
      await waitFor(() => beats.some((b) => (b as { freq: number }).freq === 5));
    } finally {
      await sub.close();
    }
  } finally {
    await h.close();
  }
});

Deno.test("control: revoke, terminate, active and query_task on a running task", async () => {
  const h = await harness("control-revoke");
  try {
    const started = gate();
    h.app.task("tasks.block", (ctx: { signal: AbortSignal }) =>
      new Promise((_, reject) => {
        started.resolve();
        ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
      }), { bind: true });
    const worker = h.worker({ name: "w1@r" });
    await worker.start();
    const result = await h.app.sendTask("tasks.block", [7], { k: 1 });
    await started.promise;
    const inspect = h.app.control.inspect({ destination: ["w1@r"] });
    const [active] = (await inspect.active())["w1@r"]!;
    const want = fixture("redis-pidbox-reply-scheduled").body["w1@fixtures"][0].request;
    assert.deepEqual(keys(active), keys(want));
    assert.equal(active!.id, result.id);
    assert.deepEqual([active!.args, active!.kwargs, active!.type], [[7], { k: 1 }, "tasks.block"]);
    assert.equal(typeof active!.time_start, "number");
    assert.equal(active!.worker_pid, Deno.pid);
    assert.equal(active!.acknowledged, false);
    const safe = (await inspect.active({ safe: true }))["w1@r"]![0]!;
    assert.deepEqual([safe.args, safe.kwargs], ["(7,)", "{'k': 1}"]);
    assert.deepEqual(
      Object.keys((await inspect.queryTask(result.id, "unknown"))["w1@r"]!),
      [result.id],
    );
    assert.equal(
      ((await inspect.queryTask([result.id]))["w1@r"]![result.id] as unknown[])[0],
      "active",
    );

    const one = { reply: true, destination: ["w1@r"] };
    assert.deepEqual(await h.app.control.revoke("other", one), [{
      "w1@r": { ok: "tasks other flagged as revoked" },
    }]);
    assert.deepEqual(await h.app.control.terminate(["nope"], one), [{
      "w1@r": { ok: "terminate: tasks unknown" },
    }]);
    assert.deepEqual(
      await h.app.control.revoke([result.id], { ...one, terminate: true, signal: "SIGKILL" }),
      [{
        "w1@r": { ok: `terminate: ${result.id}` },
      }],
    );
    await assert.rejects(result.get({ timeout: 5 }));
    assert.deepEqual(
      (await inspect.revoked())["w1@r"]!.sort(),
      ["nope", "other", result.id].sort(),
    );
  } finally {
    await h.close();
  }
});

Deno.test("control: user commands registered on the app, and NO_REPLY", async () => {
  const h = await harness("control-user");
  try {
    h.app.control.register("queue_depth", async (ctx, args) => ({
      ok: await ctx.broker.queueSize(String(args.queue)),
    }), { kind: "inspect", args: [["queue", "str"]], alias: "depth" });
    h.app.control.register("quiet", () => NO_REPLY);
    // A user command wins over a built-in of the same name.
    h.app.control.register("ping", () => ({ ok: "custom pong" }), { kind: "inspect" });
    await h.app.sendTask("tasks.x", [], {}, { queue: "q1" });
    const worker = h.worker({ name: "w1@u", queues: ["other"] });
    await worker.start();
    const inspect = h.app.control.inspect({ destination: ["w1@u"] });
    assert.deepEqual(await inspect.request("queue_depth", { queue: "q1" }), { "w1@u": { ok: 1 } });
    assert.deepEqual(await inspect.request("depth", { queue: "q1" }), { "w1@u": { ok: 1 } });
    assert.deepEqual(await inspect.ping(), { "w1@u": { ok: "custom pong" } });
    assert.deepEqual(await h.app.control.broadcast("quiet", { reply: true, timeout: 0.1 }), []);
    assert.equal(h.app.control.commandSpec("depth")?.name, "queue_depth");
    assert.throws(() => h.app.control.register("", () => 1), TypeError);
  } finally {
    await h.close();
  }
});
