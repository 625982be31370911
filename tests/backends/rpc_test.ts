/**
 * The `rpc://` backend on a real RabbitMQ: the backend contract (through a worker-side
 * store to the client's own reply queue), an in-process celeriac producer and worker, and
 * the errors for a broker that cannot carry replies.
 */
import assert from "node:assert/strict";
import type { ResultBackend } from "../../src/backends/backend.ts";
import { createBackend } from "../../src/backends/mod.ts";
import { RpcBackend } from "../../src/backends/rpc.ts";
import { AmqpBroker } from "../../src/brokers/amqp/broker.ts";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { createApp } from "../../src/app.ts";
import { ConfigError, TaskFailedError } from "../../src/errors.ts";
import { buildResultMeta, type ResultMeta } from "../../src/protocol/result.ts";
import { Worker } from "../../src/worker/worker.ts";
import { startRabbit } from "../helpers/rabbitmq_server.ts";
import { runBackendContract } from "./contract.ts";

const rabbit = await startRabbit();

/**
 * The contract's view of rpc://: `store` is what a worker does for a task this client sent
 * (publish to the client's reply queue); it returns once the reply arrived (a marker result
 * published after it comes back on the same FIFO queue).
 */
class SelfReplying implements ResultBackend {
  readonly kind = "rpc";
  readonly displayUrl = "rpc://";
  #rpc: RpcBackend;
  constructor(rpc: RpcBackend) {
    this.#rpc = rpc;
  }
  connect() {
    return this.#rpc.connect();
  }
  async store(meta: ResultMeta) {
    const replyTo = await this.#rpc.replyQueue();
    await this.#rpc.store(meta, { replyTo });
    const marker = `marker-${crypto.randomUUID()}`;
    await this.#rpc.store(
      buildResultMeta({ taskId: marker, status: "SUCCESS", result: null }, new Date()),
      { replyTo },
    );
    await this.#rpc.waitFor(marker, { timeoutMs: 5000 });
    await this.#rpc.forget(marker);
  }
  get(taskId: string) {
    return this.#rpc.get(taskId);
  }
  waitFor(taskId: string, options?: { timeoutMs?: number; signal?: AbortSignal }) {
    return this.#rpc.waitFor(taskId, options);
  }
  forget(taskId: string) {
    return this.#rpc.forget(taskId);
  }
  close() {
    return this.#rpc.close();
  }
}

runBackendContract("rpc", async () => {
  const broker = new AmqpBroker(rabbit.url());
  await broker.connect();
  const rpc = new RpcBackend("rpc://");
  rpc.useBroker(() => Promise.resolve(broker));
  const backend = new SelfReplying(rpc);
  await backend.connect();
  return {
    backend,
    async cleanup() {
      await backend.close();
      await broker.close();
    },
  };
});

Deno.test("rpc backend: a celeriac producer and worker exchange results as messages", async () => {
  const workerApp = createApp({ broker: rabbit.url(), backend: "rpc://" });
  workerApp.task("tasks.add", (x: number, y: number) => x + y);
  workerApp.task("tasks.fail", (m: string) => {
    throw new TypeError(m);
  });
  const worker = new Worker(workerApp, { concurrency: 4, logLevel: "critical" });
  const client = createApp({ broker: rabbit.url(), backend: "rpc://" });
  try {
    await worker.start();
    const r = await client.sendTask("tasks.add", [2, 3]);
    assert.equal(await r.get({ timeout: 10 }), 5);
    assert.equal(await r.state, "SUCCESS");
    const bad = await client.sendTask("tasks.fail", ["no"]);
    await assert.rejects(() => bad.get({ timeout: 10 }), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.excType, "TypeError");
      return true;
    });
    // The reply queue is the client's oid, named in reply_to.
    const backend = (await client.backend()) as RpcBackend;
    assert.equal(await backend.replyQueue(), backend.oid);
    // Another client never sees these results (they went to the first client's queue).
    const other = createApp({ broker: rabbit.url(), backend: "rpc://" });
    try {
      assert.equal(await other.asyncResult(r.id).state, "PENDING");
    } finally {
      await other.close();
    }
  } finally {
    await worker.stop();
    await client.close();
    await workerApp.close();
  }
});

Deno.test("rpc backend: needs an amqp:// broker, named in the error", async () => {
  const rpc = await createBackend("rpc://");
  assert.equal(rpc.kind, "rpc");
  await assert.rejects(() => rpc.connect(), ConfigError);
  rpc.useBroker!(() => Promise.resolve(new MemoryBroker("rpc-doc")));
  await assert.rejects(() => rpc.connect(), /needs an amqp:\/\/ broker/);
  assert.throws(() => new RpcBackend("rpc://?nope=1"), ConfigError);
  assert.equal(new RpcBackend("rpc://?expires=60").expires, 60);
  await rpc.close();
});

Deno.test("rpc backend: stop the test rabbitmq-server", () => rabbit.stop());
