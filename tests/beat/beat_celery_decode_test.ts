/**
 * The messages beat sends are ordinary Celery messages: each is taken off the memory broker,
 * wrapped in kombu's Redis envelope, and parsed by Python Celery 5.2's own worker `Request`
 * (no broker, no worker process), which then runs the task function.
 */
import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { Beat, BEAT_HEADERS } from "../../src/beat/beat.ts";
import { MemoryBeatStore } from "../../src/beat/store.ts";
import type { MemoryBroker } from "../../src/brokers/memory.ts";
import { encodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";
import { uniqueName } from "../helpers/harness.ts";
import { runChild } from "../helpers/process.ts";
import { PYTHON } from "../helpers/python_celery.ts";
import { waitFor } from "../helpers/wait.ts";

const SCRIPT = `
import base64, json, sys
from celery import Celery
from kombu.message import Message
from celery.worker.request import Request

app = Celery("beatcheck", set_as_current=False)

@app.task(name="tasks.add")
def add(x, y):
    return x + y

@app.task(name="tasks.echo")
def echo(**kwargs):
    return kwargs

out = []
for line in sys.stdin.read().splitlines():
    env = json.loads(line)
    props = env["properties"]
    msg = Message(
        body=base64.b64decode(env["body"]), content_type=env["content-type"],
        content_encoding=env["content-encoding"], headers=env["headers"], properties=props,
        delivery_info=props["delivery_info"], channel=None,
    )
    req = Request(msg, app=app)
    out.append({
        "id": req.id, "name": req.name, "args": list(req.args), "kwargs": req.kwargs,
        "expires": req.expires.isoformat() if req.expires else None,
        "priority": props.get("priority"), "queue": props["delivery_info"]["routing_key"],
        "slot": req.request_dict.get("${BEAT_HEADERS.slot}"),
        "entry": req.request_dict.get("${BEAT_HEADERS.entry}"),
        "result": app.tasks[req.name](*req.args, **req.kwargs),
    })
print(json.dumps(out))
`;

Deno.test("beat messages are parsed and run by Celery 5.2's own worker Request", async () => {
  const app = createApp({ broker: `memory://${uniqueName("beat-decode")}` });
  const broker = await app.broker() as MemoryBroker;
  const beat = new Beat(app, {
    schedule: {
      add: {
        task: "tasks.add",
        schedule: 0.05,
        args: [2, 3],
        options: { queue: "math", priority: 6, expires: 120 },
      },
      echo: { task: "tasks.echo", schedule: 0.05, kwargs: { from: "beat", n: 1 } },
    },
    store: new MemoryBeatStore(),
    logLevel: "critical",
  });
  try {
    await beat.start();
    await waitFor(
      async () => (await broker.queueSize("math")) >= 1 && (await broker.queueSize("celery")) >= 1,
      { timeoutMs: 5_000, message: "one message of each entry" },
    );
    await beat.stop();
    const envelopes: string[] = [];
    for (const queue of ["math", "celery"]) {
      const [d] = await broker.fetch([queue], { max: 1, timeoutMs: 0 });
      envelopes.push(encodeRedisEnvelope(d!.message!, {
        exchange: "",
        routingKey: queue,
        deliveryTag: crypto.randomUUID(),
      }));
      await d!.ack();
    }
    const result = await runChild(PYTHON, {
      args: ["-c", SCRIPT],
      stdin: envelopes.join("\n"),
      env: { PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
      timeoutMs: 30_000,
      label: "celery request",
    });
    assert.equal(result.code, 0, result.stderr);
    const [add, echo] = JSON.parse(result.stdout.trim().split("\n").at(-1)!);
    assert.equal(add.name, "tasks.add");
    assert.deepEqual(add.args, [2, 3]);
    assert.deepEqual(add.kwargs, {});
    assert.equal(add.result, 5);
    assert.equal(add.priority, 6);
    assert.equal(add.queue, "math");
    assert.ok(Date.parse(add.expires) > Date.now() + 60_000, add.expires);
    assert.equal(add.entry, "add");
    assert.match(add.slot, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(echo.name, "tasks.echo");
    assert.deepEqual(echo.result, { from: "beat", n: 1 });
    assert.equal(echo.entry, "echo");
  } finally {
    await beat.stop();
    await app.close();
  }
});
