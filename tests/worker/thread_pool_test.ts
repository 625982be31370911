import assert from "node:assert/strict";
import { TaskFailedError } from "../../src/errors.ts";
import { threadTask } from "../../src/worker/thread_pool.ts";
import { harness } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

const CPU = new URL("../fixtures/cpu_tasks.ts", import.meta.url);

Deno.test("thread tasks: CPU-bound work runs in a Web Worker and returns its value", async () => {
  const h = await harness("threads");
  try {
    const fib = h.app.task("tasks.fib", threadTask(CPU, "fib"));
    const broken = h.app.task("tasks.broken", threadTask(CPU, "broken"));
    await h.worker({ threads: 2 }).start();
    assert.equal(await (await fib.delay(20)).get({ timeout: 10 }), 6765);
    await assert.rejects(
      async () => (await broken.delay("nope")).get({ timeout: 10 }),
      (err: unknown) => {
        assert.ok(err instanceof TaskFailedError);
        assert.equal(err.excType, "TypeError");
        assert.deepEqual(err.excMessage, ["nope"]);
        return true;
      },
    );
  } finally {
    await h.close();
  }
});

Deno.test("thread tasks: the hard time limit terminates a spinning thread and the worker goes on", async () => {
  const h = await harness("threads-hard");
  try {
    const spin = h.app.task("tasks.spin", threadTask(CPU, "spin"), { timeLimit: 0.3 });
    const fib = h.app.task("tasks.fib", threadTask(CPU, "fib"));
    const worker = h.worker({ threads: 1 });
    await worker.start();
    const spinning = await spin.delay();
    await assert.rejects(() => spinning.get({ timeout: 10 }), (err: unknown) => {
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.excType, "TimeLimitExceeded");
      return true;
    });
    // The only thread was killed and replaced: the next CPU task still runs.
    assert.equal(await (await fib.delay(15)).get({ timeout: 10 }), 610);
    await waitFor(() => worker.pool.active === 0);
  } finally {
    await h.close();
  }
});
