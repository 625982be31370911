/**
 * Crash recovery on a real redis-server: a worker killed with SIGKILL mid-task loses
 * nothing (another worker, celeriac or Python, runs the task after the visibility timeout);
 * an ETA task held longer than the visibility timeout is not run twice (Celery's duplicate
 * ETA bug); a Redis restart under a running worker does not stop consumption.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { Worker } from "../../src/worker/worker.ts";
import { startRedis } from "../helpers/redis_server.ts";
import {
  startCeleriacWorker,
  startPythonWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";
import { waitFor } from "../helpers/wait.ts";

const VT = 2; // seconds: a short visibility timeout for the tests

/** Kills a worker with SIGKILL once it has received (and so started) the task. */
async function killWhenReceived(worker: WorkerProcess, taskId: string): Promise<void> {
  await worker.child.waitForLine(new RegExp(`tasks\\.sleep\\[${taskId}\\] received`), {
    timeoutMs: 10_000,
  });
  worker.child.kill("SIGKILL");
  await worker.child.exited;
}

Deno.test("crash: SIGKILL mid-task, another celeriac worker runs it after the visibility timeout", async () => {
  const redis = await startRedis();
  const broker = `${redis.url(0)}?visibility_timeout=${VT}`;
  const app = createApp({ broker, backend: redis.url(1) });
  let first, second;
  try {
    first = await startCeleriacWorker({ broker, backend: redis.url(1), name: "doomed@test" });
    const result = await app.sendTask("tasks.sleep", [1.5]);
    await killWhenReceived(first, result.id);
    assert.equal(await result.state, "PENDING", "the killed worker stored nothing");
    assert.equal(
      (await redis.cli("HLEN", "unacked")).trim(),
      "1",
      "the message is still recorded as unacked",
    );
    second = await startCeleriacWorker({ broker, backend: redis.url(1), name: "rescuer@test" });
    assert.equal(await result.get({ timeout: 20 }), 1.5);
    await waitFor(async () => (await redis.cli("HLEN", "unacked")).trim() === "0");
    assert.equal(await (await app.broker()).queueSize("celery"), 0);
  } finally {
    await second?.stop();
    await first?.stop();
    await app.close();
    await redis.stop();
  }
});

Deno.test("crash: SIGKILL mid-task, a Python Celery worker restores and runs it", async () => {
  const redis = await startRedis();
  const broker = `${redis.url(0)}?visibility_timeout=${VT}`;
  const app = createApp({ broker, backend: redis.url(1) });
  let first, python;
  try {
    first = await startCeleriacWorker({ broker, backend: redis.url(1), name: "doomed@test" });
    const result = await app.sendTask("tasks.sleep", [1]);
    await killWhenReceived(first, result.id);
    // Past the visibility timeout, a starting Python worker restores it (kombu's restore_visible).
    await new Promise((r) => setTimeout(r, VT * 1000 + 500));
    python = await startPythonWorker({
      broker: redis.url(0),
      backend: redis.url(1),
      pool: "solo",
      env: { PYTASKS_VISIBILITY_TIMEOUT: String(VT) },
    });
    assert.equal(await result.get({ timeout: 30 }), 1);
    // The Python worker logs after storing the result: wait for its line.
    await python.child.waitForLine(new RegExp(`tasks\\.sleep\\[${result.id}\\] succeeded`), {
      timeoutMs: 10_000,
    });
  } finally {
    await python?.stop();
    await first?.stop();
    await app.close();
    await redis.stop();
  }
});

Deno.test("ETA held longer than the visibility timeout is not redelivered to a Python worker", async () => {
  const redis = await startRedis();
  const broker = `${redis.url(0)}?visibility_timeout=${VT}`;
  const app = createApp({ broker, backend: redis.url(1) });
  let celeriac, python;
  try {
    celeriac = await startCeleriacWorker({ broker, backend: redis.url(1), name: "holder@test" });
    const result = await app.sendTask("tasks.add", [2, 3], {}, { countdown: 3 * VT });
    await celeriac.child.waitForLine(new RegExp(`tasks\\.add\\[${result.id}\\] received \\(eta`), {
      timeoutMs: 10_000,
    });
    // Well past the visibility timeout, a Python worker starts and runs its restore pass.
    await new Promise((r) => setTimeout(r, VT * 1000 + 500));
    python = await startPythonWorker({
      broker: redis.url(0),
      backend: redis.url(1),
      pool: "solo",
      env: { PYTASKS_VISIBILITY_TIMEOUT: String(VT) },
    });
    assert.equal(await result.get({ timeout: 20 }), 5);
    await waitFor(() => celeriac!.child.output.includes(`tasks.add[${result.id}] succeeded`));
    // Give the Python worker a moment in which a duplicate would show up.
    await new Promise((r) => setTimeout(r, 1000));
    assert.doesNotMatch(python.child.output, new RegExp(result.id), "Python never received it");
  } finally {
    await python?.stop();
    await celeriac?.stop();
    await app.close();
    await redis.stop();
  }
});

Deno.test("Redis restarted under a running worker: it reconnects and keeps consuming", async () => {
  const redis = await startRedis();
  const app = createApp({ broker: redis.url(0), backend: redis.url(1) });
  app.task("tasks.add", (x: number, y: number) => x + y);
  const worker = new Worker(app, { logLevel: "critical", concurrency: 4 });
  try {
    await worker.start();
    assert.equal(await (await app.sendTask("tasks.add", [1, 1])).get({ timeout: 10 }), 2);
    await redis.restart(); // SIGKILL, then an empty server on the same port
    const after = await waitFor(async () => {
      try {
        return await app.sendTask("tasks.add", [2, 2]);
      } catch {
        return undefined;
      }
    }, { timeoutMs: 20_000, message: "a send after the restart" });
    assert.equal(await after.get({ timeout: 20 }), 4, "consumption resumed after the restart");
    assert.equal(await (await app.sendTask("tasks.add", [3, 3])).get({ timeout: 10 }), 6);
  } finally {
    await worker.stop();
    await app.close();
    await redis.stop();
  }
});
