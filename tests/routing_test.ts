/**
 * Task routing (`createApp({ taskRoutes, queues })`, `src/routing.ts`): Celery's precedence,
 * globs, functions, lists of routers, exchange types, and the app publishing where the
 * route says (memory broker).
 */
import assert from "node:assert/strict";
import { createApp } from "../src/app.ts";
import type { Broker, QueueOptions, Route } from "../src/brokers/broker.ts";
import { MemoryBroker } from "../src/brokers/memory.ts";
import { TaskRouter } from "../src/routing.ts";

Deno.test("routing: exact names win over globs; globs in order; unmatched go to the default", () => {
  const r = new TaskRouter({
    routes: { "tasks.*": "all", "tasks.add": "math", "tasks.a*": "a-tasks" },
  });
  assert.equal(r.route("tasks.add").queue, "math");
  assert.equal(r.route("tasks.abs").queue, "all");
  assert.equal(r.route("other").queue, "celery");
  assert.equal(new TaskRouter({ defaultQueue: "dflt" }).route("x").queue, "dflt");
});

Deno.test("routing: functions and lists of routers, tried in order", () => {
  const seen: unknown[] = [];
  const r = new TaskRouter({
    routes: [
      (name, args, kwargs) => {
        seen.push([name, args, kwargs]);
        return name === "tasks.big" && args.length > 2 ? { queue: "bulk" } : undefined;
      },
      { "tasks.big": "small" },
      () => "fallback",
    ],
  });
  assert.equal(r.route("tasks.big", [1, 2, 3], { k: 1 }).queue, "bulk");
  assert.equal(r.route("tasks.big", [1]).queue, "small");
  assert.equal(r.route("tasks.other").queue, "fallback");
  assert.deepEqual(seen[0], ["tasks.big", [1, 2, 3], { k: 1 }]);
});

Deno.test("routing: explicit options and the task's queue win over routes, key by key", () => {
  const r = new TaskRouter({
    queues: [{ name: "images", exchange: "media", exchangeType: "topic", routingKey: "media.#" }],
    routes: { "tasks.img": { queue: "images", routingKey: "media.png" } },
  });
  assert.deepEqual(r.route("tasks.img"), {
    queue: "images",
    exchange: "media",
    routingKey: "media.png",
  });
  assert.deepEqual(r.route("tasks.img", [], {}, { routingKey: "media.jpg" }), {
    queue: "images",
    exchange: "media",
    routingKey: "media.jpg",
  });
  // A direct queue: the default exchange with the queue's name, as Python publishes.
  assert.deepEqual(r.route("tasks.img", [], {}, { queue: "urgent" }), {
    queue: "urgent",
    exchange: "",
    routingKey: "urgent",
  });
  // Both exchange and key given for a direct queue: published to that exchange.
  assert.deepEqual(r.route("x", [], {}, { queue: "q", exchange: "ex", routingKey: "k" }), {
    queue: "q",
    exchange: "ex",
    routingKey: "k",
  });
  // A topic queue without a route key: its binding key.
  assert.equal(r.route("x", [], {}, { queue: "images" }).routingKey, "media.#");
  assert.deepEqual(r.queueOptions("images"), {
    exchange: "media",
    exchangeType: "topic",
    routingKey: "media.#",
  });
  assert.equal(r.queueOptions("celery"), undefined);
});

Deno.test("routing: an exchange-only route needs a key; bad definitions are TypeErrors", () => {
  const r = new TaskRouter({ routes: { "t.*": { exchange: "ex" } } });
  assert.throws(() => r.route("t.x"), TypeError);
  assert.deepEqual(
    new TaskRouter({ routes: { "t": { exchange: "ex", routingKey: "k" } } }).route("t"),
    {
      queue: null,
      exchange: "ex",
      routingKey: "k",
    },
  );
  assert.throws(() => new TaskRouter({ queues: [{ name: "" }] }), TypeError);
  assert.throws(() => new TaskRouter({ routes: [42 as never] }), TypeError);
});

Deno.test("routing: the app publishes where the route says and declares the queue once", async () => {
  const broker = new MemoryBroker("routing-test");
  const published: Route[] = [];
  const declared: unknown[] = [];
  const publish = broker.publish.bind(broker);
  const declareQueue = broker.declareQueue.bind(broker);
  broker.publish = (message, route) => {
    published.push(route);
    return publish(message, route);
  };
  (broker as Broker).declareQueue = (queue: string, options?: QueueOptions) => {
    declared.push([queue, options]);
    return declareQueue(queue);
  };
  const app = createApp({
    broker,
    backend: null,
    queues: [{ name: "urgent", maxPriority: 10 }],
    taskRoutes: { "tasks.hurry": "urgent", "tasks.*": "normal" },
  });
  const slow = app.task("tasks.slow", () => 1, { queue: "slow" });
  try {
    await app.sendTask("tasks.hurry");
    await app.sendTask("tasks.hurry");
    await app.sendTask("tasks.other");
    await slow.delay();
    await app.sendTask("tasks.hurry", [], {}, { queue: "explicit" });
    assert.deepEqual(published.map((r) => r.routingKey), [
      "urgent",
      "urgent",
      "normal",
      "slow",
      "explicit",
    ]);
    assert.ok(published.every((r) => r.exchange === ""));
    assert.deepEqual(declared, [
      ["urgent", { maxPriority: 10 }],
      ["normal", undefined],
      ["slow", undefined],
      ["explicit", undefined],
    ]);
    assert.equal(await broker.queueSize("urgent"), 2);
  } finally {
    await app.close();
  }
});
