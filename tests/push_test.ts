/**
 * Push mode: `app.handler()` served by `Deno.serve` on a loopback port, fed task messages in
 * both accepted forms (a kombu Redis envelope, `{headers, properties, body}`), answering with
 * the result record and storing it in the backend.
 */

import assert from "node:assert/strict";
import { createApp } from "../mod.ts";
import { encodeRedisEnvelope } from "../src/protocol/redis_envelope.ts";
import { encodeTaskMessage } from "../src/protocol/task.ts";

interface Server {
  url: string;
  post(body: string, method?: string): Promise<{ status: number; json: Record<string, unknown> }>;
  [Symbol.asyncDispose](): Promise<void>;
}

function serve(handler: (req: Request) => Promise<Response>): Promise<Server> {
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) => {
        const url = `http://127.0.0.1:${port}/`;
        resolve({
          url,
          async post(body: string, method = "POST") {
            const response = await fetch(url, {
              method,
              body: method === "GET" ? undefined : body,
              headers: { "content-type": "application/json" },
            });
            return { status: response.status, json: await response.json() };
          },
          [Symbol.asyncDispose]: () => server.shutdown(),
        });
      },
    }, handler);
  });
}

function setup() {
  const app = createApp({ broker: `memory://push-${crypto.randomUUID()}` });
  app.task("tasks.add", (x: number, y: number) => x + y, { params: ["x", "y"] });
  app.task("tasks.fail", (message: string): never => {
    throw new TypeError(message);
  });
  app.task("tasks.quiet", () => "not stored", { ignoreResult: true });
  return app;
}

function plain(id: string, task: string, args: unknown[], kwargs = {}, headers = {}): string {
  return JSON.stringify({
    headers: { lang: "py", task, id, root_id: id, parent_id: null, group: null, ...headers },
    properties: { correlation_id: id, content_type: "application/json" },
    body: [args, kwargs, { callbacks: null, errbacks: null, chain: null, chord: null }],
  });
}

Deno.test("push: a {headers, properties, body} message runs and answers 200 with the stored record", async () => {
  const app = setup();
  await using server = await serve(app.handler());
  try {
    const { status, json } = await server.post(plain("p-1", "tasks.add", [2], { y: 3 }));
    assert.equal(status, 200);
    assert.equal(json.status, "SUCCESS");
    assert.equal(json.result, 5);
    assert.equal(json.task_id, "p-1");
    assert.equal(typeof json.date_done, "string");
    assert.deepEqual(
      Object.keys(json),
      ["status", "result", "traceback", "children", "date_done", "task_id"],
    );
    assert.equal(await app.asyncResult("p-1").get({ timeout: 1 }), 5, "stored in the backend");
  } finally {
    await app.close();
  }
});

Deno.test("push: a kombu Redis envelope (as in a Redis list) runs too", async () => {
  const app = setup();
  await using server = await serve(app.handler());
  try {
    const message = encodeTaskMessage(
      { id: "env-1", task: "tasks.add", args: [40, 2], origin: "gen1@py" },
      new Date(),
    );
    const envelope = encodeRedisEnvelope(message, {
      exchange: "",
      routingKey: "celery",
      deliveryTag: crypto.randomUUID(),
    });
    const { status, json } = await server.post(envelope);
    assert.equal(status, 200);
    assert.equal(json.result, 42);
    assert.equal((await (await app.backend())!.get("env-1"))!.status, "SUCCESS");
  } finally {
    await app.close();
  }
});

Deno.test("push: a task that throws answers 500 with the serialized exception", async () => {
  const app = setup();
  await using server = await serve(app.handler());
  try {
    const { status, json } = await server.post(plain("f-1", "tasks.fail", ["kaput"]));
    assert.equal(status, 500);
    assert.equal(json.status, "FAILURE");
    assert.deepEqual(json.result, {
      exc_type: "TypeError",
      exc_message: ["kaput"],
      exc_module: "builtins",
    });
    assert.match(String(json.traceback), /kaput/);
    assert.equal((await (await app.backend())!.get("f-1"))!.status, "FAILURE");

    // A keyword argument without a parameter fails the task the same way.
    const bad = await server.post(plain("f-2", "tasks.add", [1], { z: 1 }));
    assert.equal(bad.status, 500);
    assert.equal((bad.json.result as { exc_type: string }).exc_type, "TypeError");
  } finally {
    await app.close();
  }
});

Deno.test("push: an unknown task answers 404 NotRegistered (stored); ignore_result is not stored", async () => {
  const app = setup();
  await using server = await serve(app.handler());
  try {
    const { status, json } = await server.post(plain("u-1", "tasks.nope", []));
    assert.equal(status, 404);
    assert.equal(json.status, "FAILURE");
    assert.deepEqual(json.result, {
      exc_type: "NotRegistered",
      exc_message: ["tasks.nope"],
      exc_module: "celery.exceptions",
    });
    assert.equal((await (await app.backend())!.get("u-1"))!.status, "FAILURE");

    const quiet = await server.post(plain("q-1", "tasks.quiet", []));
    assert.equal(quiet.status, 200);
    assert.equal(quiet.json.result, "not stored");
    assert.equal(await (await app.backend())!.get("q-1"), null);
  } finally {
    await app.close();
  }
});

Deno.test("push: malformed bodies answer 400 with a clear error and run nothing", async () => {
  const app = setup();
  await using server = await serve(app.handler());
  try {
    const cases: [string, RegExp][] = [
      ["not json", /^Cannot parse request body as JSON/],
      ["[1, 2]", /expected a kombu Redis envelope/],
      ['{"headers": {}, "body": "%%%"}', /Redis envelope/],
      ['{"headers": 1, "body": [[], {}, {}]}', /'headers' must be an object/],
      ['{"headers": {"task": "tasks.add"}, "body": [[], {}, {}]}', /id/],
    ];
    for (const [body, pattern] of cases) {
      const { status, json } = await server.post(body);
      assert.equal(status, 400, body);
      assert.match(String(json.error), pattern, body);
      assert.match(String(json.exc_type), /DecodeError|InvalidTaskError/, body);
    }
    const get = await server.post("", "GET");
    assert.equal(get.status, 405);
    assert.match(String(get.json.error), /POST/);
  } finally {
    await app.close();
  }
});

Deno.test("push: an expired message answers 410 REVOKED, a future ETA 425 (not run)", async () => {
  const app = setup();
  await using server = await serve(app.handler());
  try {
    const past = new Date(Date.now() - 60_000).toISOString();
    const expired = await server.post(plain("e-1", "tasks.add", [1, 1], {}, { expires: past }));
    assert.equal(expired.status, 410);
    assert.equal(expired.json.status, "REVOKED");
    assert.equal((await (await app.backend())!.get("e-1"))!.status, "REVOKED");

    const future = new Date(Date.now() + 60_000).toISOString();
    const early = await server.post(plain("eta-1", "tasks.add", [1, 1], {}, { eta: future }));
    assert.equal(early.status, 425);
    assert.equal(early.json.task_id, "eta-1");
    assert.equal(await (await app.backend())!.get("eta-1"), null);
  } finally {
    await app.close();
  }
});

Deno.test("push: a failing result backend answers 503 so the sender delivers again", async () => {
  const app = createApp({
    broker: `memory://push-503-${crypto.randomUUID()}`,
    backend: {
      kind: "broken",
      displayUrl: "broken://",
      connect: () => Promise.resolve(),
      store: () => Promise.reject(new Error("disk full")),
      get: () => Promise.resolve(null),
      waitFor: () => Promise.reject(new Error("no")),
      forget: () => Promise.resolve(),
      close: () => Promise.resolve(),
    },
  });
  app.task("tasks.add", (x: number, y: number) => x + y);
  await using server = await serve(app.handler());
  try {
    const { status, json } = await server.post(plain("b-1", "tasks.add", [1, 2]));
    assert.equal(status, 503);
    assert.match(String(json.error), /Cannot store result of task "b-1" \(SUCCESS\): disk full/);
  } finally {
    await app.close();
  }
});
