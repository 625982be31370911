/**
 * examples/alert_on_failure.ts: in-process on the memory broker, and as a command against a
 * real redis-server with the celeriac worker CLI (`-E`) failing a task sent by Python.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { Worker } from "../../src/worker/worker.ts";
import { type FailureAlert, formatAlert, watchFailures } from "../../examples/alert_on_failure.ts";
import { spawnChild } from "../helpers/process.ts";
import {
  REPO_ROOT,
  runPythonJson,
  startCeleriacWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { uniqueName } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

class ValueError extends Error {
  override name = "ValueError";
}

Deno.test("example alert_on_failure: one alert per failed task, with the task's name", async () => {
  const app = createApp({ broker: `memory://${uniqueName("alert")}` });
  app.task("tasks.add", (x: number, y: number) => x + y);
  app.task("tasks.fail", (message: string): never => {
    throw new ValueError(message);
  });
  const alerts: FailureAlert[] = [];
  const watch = await watchFailures(await app.broker(), (a) => alerts.push(a));
  const worker = new Worker(app, { name: "w1@alert", sendEvents: true, logLevel: "critical" });
  let failedId = "";
  try {
    await worker.start();
    await (await app.sendTask("tasks.add", [1, 2])).get({ timeout: 5 });
    const failed = await app.sendTask("tasks.fail", ["bad input"]);
    failedId = failed.id;
    await failed.get({ timeout: 5 }).catch(() => {});
    await app.sendTask("tasks.unknown", []);
    await waitFor(() => alerts.length === 2, { message: "two alerts" });
  } finally {
    await worker.stop();
    await watch.close();
    await app.close();
  }
  const [first, second] = alerts;
  assert.deepEqual([first.uuid, first.name, first.worker, first.exception], [
    failedId,
    "tasks.fail",
    "w1@alert",
    "ValueError('bad input')",
  ]);
  assert.match(first.traceback ?? "", /ValueError: bad input/);
  assert.equal(
    formatAlert(first),
    `ALERT tasks.fail[${failedId}] failed on w1@alert: ValueError('bad input')`,
  );
  assert.equal(second.exception, "NotRegistered('tasks.unknown')");
  assert.match(formatAlert(second), /^ALERT \(unknown task\)\[/);
  assert.equal(watch.state.task(failedId)?.state, "FAILURE");
});

Deno.test("example alert_on_failure: the command alerts on a failure from a celeriac worker (Redis)", async () => {
  const redis = await startRedis();
  const urls = { broker: redis.url(0), backend: redis.url(1) };
  const alerter = spawnChild(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/examples/alert_on_failure.ts`, urls.broker],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    label: "alert_on_failure",
  });
  let worker: WorkerProcess | undefined;
  try {
    await alerter.waitForLine(/^Watching /, { timeoutMs: 20_000 });
    worker = await startCeleriacWorker({ ...urls, args: ["-E"] });
    const { id } = await runPythonJson(
      `
      import json
      from pytasks import app
      r = app.send_task("tasks.fail", ("bad input",))
      try:
          r.get(timeout=10)
      except ValueError:
          pass
      print(json.dumps({"id": r.id}))
      `,
      urls,
    );
    await alerter.waitForLine(
      new RegExp(
        `^ALERT tasks\\.fail\\[${id}\\] failed on celeriac@test: ValueError\\('bad input'\\)$`,
      ),
      { timeoutMs: 10_000 },
    );
    const exit = await alerter.stop();
    assert.equal(exit.code, 0, alerter.output);
  } finally {
    await worker?.stop();
    await alerter.stop();
    await redis.stop();
  }
});
