/**
 * RabbitMQ restarted under a running worker: the broker reconnects with backoff, redeclares
 * its queues, keeps consuming; unacknowledged work is redelivered, nothing is lost
 * (duplicates are allowed and counted). Results go to Redis, which stays up.
 */
import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { AmqpBroker } from "../../src/brokers/amqp/broker.ts";
import { Logger } from "../../src/log.ts";
import { Worker } from "../../src/worker/worker.ts";
import { startRabbit } from "../helpers/rabbitmq_server.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const rabbit = await startRabbit();
const redis = await startRedis();

async function storedResults(): Promise<number> {
  return Number((await redis.cli("-n", "1", "DBSIZE")).trim());
}

Deno.test("amqp reconnect: RabbitMQ killed and restarted under a worker, every task completes", async () => {
  const N = 200;
  const runs = new Map<number, number>();
  const app = createApp({ broker: rabbit.url(), backend: redis.url(1) });
  app.task("tasks.work", async (i: number) => {
    runs.set(i, (runs.get(i) ?? 0) + 1);
    await new Promise((resolve) => setTimeout(resolve, 15));
    return i;
  });
  const logs: string[] = [];
  const worker = new Worker(app, {
    concurrency: 8,
    logger: new Logger("warning", (line) => logs.push(line)),
    fetchTimeoutMs: 200,
  });
  const producer = createApp({ broker: rabbit.url(), backend: null });
  try {
    for (let i = 0; i < N / 2; i++) await producer.sendTask("tasks.work", [i]);
    await worker.start();
    await waitFor(async () => (await storedResults()) >= N / 8, {
      timeoutMs: 20_000,
      message: "a first part of the results",
    });
    const before = await storedResults();
    // Kill the VM mid-stream; while it is down, send the second half (publishes wait for
    // the reconnect and are confirmed after it).
    const restarting = rabbit.restart({ crash: true });
    const late = (async () => {
      for (let i = N / 2; i < N; i++) await producer.sendTask("tasks.work", [i]);
    })();
    await restarting;
    await late;
    await waitFor(async () => (await storedResults()) === N, {
      timeoutMs: 60_000,
      intervalMs: 100,
      message: `all ${N} results (had ${before} before the restart)`,
    });
    const missing = [...Array(N).keys()].filter((i) => !runs.has(i));
    assert.deepEqual(missing, []);
    const duplicates = [...runs.values()].filter((n) => n > 1).length;
    console.log(
      `reconnect: ${before} results before the restart, ${N} after; ${duplicates} task(s) ran twice; restart took ${rabbit.startupMs} ms`,
    );
    const broker = (await app.broker()) as AmqpBroker;
    assert.ok(broker.connected);
    assert.equal(await broker.queueSize("celery"), 0);
  } finally {
    await worker.stop();
    await producer.close();
    await app.close();
  }
});

Deno.test("amqp reconnect: stop the test servers", async () => {
  await rabbit.stop();
  await redis.stop();
});
