/**
 * Beat → Python Celery 5.2: a celeriac beat (state and lease in Redis) sends periodic tasks
 * that a real Python Celery worker (`-P solo`) consumes and runs; the results are read back
 * from the Redis result backend. The extra beat headers do not disturb Celery.
 */
import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { Beat } from "../../src/beat/beat.ts";
import { Logger } from "../../src/log.ts";
import { startPythonWorker, type WorkerProcess } from "../helpers/python_celery.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

Deno.test("interop: celeriac beat → Python Celery worker (Redis)", async () => {
  const redis = await startRedis();
  const urls = { broker: redis.url(0), backend: redis.url(1) };
  const app = createApp({ broker: urls.broker, backend: null });
  const logs: string[] = [];
  let worker: WorkerProcess | undefined;
  let beat: Beat | undefined;
  try {
    worker = await startPythonWorker({ ...urls, pool: "solo", name: "py-beat@test" });
    beat = new Beat(app, {
      schedule: {
        "add-every-half-second": {
          task: "tasks.add",
          schedule: 0.5,
          args: [2, 3],
          options: { expires: 60, priority: 0 },
        },
        "echo-every-half-second": {
          task: "tasks.echo",
          schedule: 0.5,
          kwargs: { from: "beat", n: 1 },
        },
      },
      logger: new Logger("info", (line) => logs.push(line)),
    });
    await beat.start();
    assert.equal(beat.store?.kind, "redis", "a Redis broker keeps beat state in Redis");
    const child = worker.child;
    const succeeded = (task: string, result: string) =>
      child.lines.stderr.concat(child.lines.stdout).filter((l) =>
        new RegExp(
          `Task ${task.replace(".", "\\.")}\\[[0-9a-f-]+\\] succeeded in [0-9.e-]+s: ${result}$`,
        )
          .test(l)
      ).length;
    await waitFor(
      () =>
        succeeded("tasks.add", "5") >= 2 &&
        succeeded("tasks.echo", "\\{'from': 'beat', 'n': 1\\}") >= 2,
      { timeoutMs: 20_000, intervalMs: 50, message: "the Python worker to run both entries twice" },
    );
    await beat.stop();

    // The results are in the Redis backend, written by Python.
    const keys = (await redis.cli("-n", "1", "KEYS", "celery-task-meta-*")).trim().split("\n");
    const metas = await Promise.all(
      keys.map(async (k) => JSON.parse((await redis.cli("-n", "1", "GET", k)).trim())),
    );
    assert.ok(metas.filter((m) => m.status === "SUCCESS" && m.result === 5).length >= 2);
    assert.ok(!child.stderr.includes("Traceback"), child.output);
    assert.ok(logs.some((l) => l.includes("Scheduler: Sending due task add-every-half-second")));
  } finally {
    await beat?.stop();
    await worker?.stop(5_000);
    await app.close();
    await redis.stop();
  }
});
