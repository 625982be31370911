/**
 * `worker.ts -B`: a worker process that also runs beat. The beat sends the app module's
 * `beatSchedule` through Redis, the same worker runs the tasks, and a warm stop stops both
 * (and releases the beat lease).
 */
import assert from "node:assert/strict";
import { startCeleriacWorker, type WorkerProcess } from "../helpers/python_celery.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

Deno.test("worker.ts -B runs beat alongside the worker", async () => {
  const redis = await startRedis();
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({
      broker: redis.url(0),
      backend: redis.url(1),
      app: "tests/beat/fixture_app.ts",
      name: "wb@test",
      args: ["-B"],
    });
    const child = worker.child;
    const ran = () =>
      child.lines.stderr.concat(child.lines.stdout).filter((l) =>
        /Task tasks\.add\[[0-9a-f-]+\] succeeded in .*: 5$/.test(l)
      ).length;
    await waitFor(() => ran() >= 2, {
      timeoutMs: 15_000,
      intervalMs: 50,
      message: "the worker to run two beat-sent tasks",
    });
    assert.ok(child.stderr.includes("Scheduler: Sending due task add-every-second (tasks.add)"));
    assert.ok(child.stderr.includes("holds the lease"), "on Redis the embedded beat is leased");
    const exit = await worker.stop(10_000);
    assert.equal(exit.code, 0, child.output);
    assert.equal(exit.killed, false);
    assert.match(child.stderr, /beat: .* stopped\./);
    assert.equal((await redis.cli("EXISTS", "celeriac.beat.lease")).trim(), "0");
    const keys = (await redis.cli("-n", "1", "KEYS", "celery-task-meta-*")).trim().split("\n");
    assert.ok(keys.length >= 2, "results stored");
  } finally {
    await worker?.stop(2_000);
    await redis.stop();
  }
});

Deno.test("parseWorkerArgs() reads -B / --beat", async () => {
  const { parseWorkerArgs } = await import("../../worker.ts");
  assert.equal(parseWorkerArgs(["--app", "./tasks.ts", "-B"]).beat, true);
  assert.equal(parseWorkerArgs(["--app", "./tasks.ts", "--beat"]).beat, true);
  assert.equal(parseWorkerArgs(["--app", "./tasks.ts"]).beat, undefined);
});
