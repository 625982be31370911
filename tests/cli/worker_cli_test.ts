/**
 * The worker CLI as a user runs it: a `deno run worker.ts` subprocess.
 *
 * Scoped permissions. A worker of the interop app on Redis needs exactly:
 *
 * - `--allow-net=127.0.0.1:<port>`: the broker and the result backend (same server here;
 *   give every `host:port` the broker and backend URLs name).
 * - `--allow-read=<dir>`: the app module is imported dynamically (its path comes from
 *   `--app`), and Deno checks read access for each module of that dynamic graph that
 *   `worker.ts` did not already import statically: here the app file and `mod.ts` (the
 *   narrowest set that works is `--allow-read=<app file>,<repo>/mod.ts`; the app's directory
 *   alone fails on `mod.ts`). The test grants the repository root. Not needed for reading:
 *   `Deno.cwd()`, the Redis driver modules (`src/brokers/redis/…` and `src/redis/…`, by a
 *   literal dynamic import; no npm package).
 *
 * Not needed: `--allow-env` (the Redis client reads no environment), `--allow-sys` (the
 * node name falls
 * back to `localhost` without `--allow-sys=hostname`), `--allow-write`, `--allow-run`.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod.ts";
import { startRedis } from "../helpers/redis_server.ts";
import {
  REPO_ROOT,
  runCeleriacWorker,
  startCeleriacWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";

/** The scoped permission set (see the module doc). */
function scopedPermissions(port: number): string[] {
  return [`--allow-net=127.0.0.1:${port}`, `--allow-read=${REPO_ROOT}`];
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "");
}

Deno.test("worker CLI: runs a task with only --allow-net and --allow-read, exits 0 on SIGTERM", async () => {
  const redis = await startRedis();
  const app = createApp({ broker: redis.url(0), backend: redis.url(1) });
  let worker: WorkerProcess | undefined;
  try {
    worker = await startCeleriacWorker({
      broker: redis.url(0),
      backend: redis.url(1),
      queues: ["celery", "urgent"],
      permissions: scopedPermissions(redis.port),
    });
    // The banner (stdout) lists the queues and the registered tasks.
    const banner = worker.child.stdout;
    assert.match(banner, /\.> celery\s+exchange=celery\(direct\) key=celery/);
    assert.match(banner, /\.> urgent\s+exchange=urgent\(direct\) key=urgent/);
    for (const name of ["tasks.add", "tasks.echo", "tasks.fail", "tasks.sleep"]) {
      assert.ok(banner.includes(`  . ${name}\n`), `banner lacks task ${name}:\n${banner}`);
    }
    assert.match(banner, /transport:\s+redis:\/\/127\.0\.0\.1:\d+\/0/);
    assert.match(banner, /results:\s+redis:\/\/127\.0\.0\.1:\d+\/1/);

    const result = await app.sendTask<number>("tasks.add", [2, 3], {}, { queue: "urgent" });
    assert.equal(await result.get({ timeout: 5 }), 5);
    await worker.child.waitForLine(/Task tasks\.add\[.*\] succeeded in .*: 5$/, {
      timeoutMs: 5000,
    });

    const exit = await worker.stop(10_000);
    assert.equal(exit.killed, false, "the worker ignored SIGTERM");
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /Warm shutdown/);
    assert.match(exit.stderr, /celeriac@test stopped\./);
    assert.doesNotMatch(exit.stderr, /Missing permission|NotCapable|PermissionDenied/);
  } finally {
    await app.close();
    await worker?.stop();
    await redis.stop();
  }
});

Deno.test("worker CLI: without --allow-net it prints one line naming the flag and exits promptly", async () => {
  const redis = await startRedis();
  try {
    const run = await runCeleriacWorker({
      broker: redis.url(0),
      backend: redis.url(1),
      permissions: [`--allow-read=${REPO_ROOT}`],
      timeoutMs: 15_000,
    });
    const errLines = lines(run.stderr);
    assert.equal(errLines.length, 1, `expected one stderr line:\n${run.stderr}`);
    assert.match(errLines[0]!, /^error: Missing permission: /);
    assert.ok(
      errLines[0]!.includes(`--allow-net=127.0.0.1:${redis.port}`),
      `the line does not name --allow-net=127.0.0.1:${redis.port}: ${errLines[0]}`,
    );
    assert.notEqual(run.code, 0);
    assert.ok(run.elapsedMs < 10_000, `took ${run.elapsedMs} ms to fail`);
  } finally {
    await redis.stop();
  }
});

Deno.test("worker CLI: an unsupported --broker scheme gives one clear error line", async () => {
  const run = await runCeleriacWorker({ broker: "foo://x", timeoutMs: 15_000 });
  const errLines = lines(run.stderr);
  assert.equal(errLines.length, 1, run.stderr);
  assert.match(
    errLines[0]!,
    /^error: Cannot use broker URL "foo:\/\/x": scheme "foo" is not supported \(use .*redis:\/\/.*\)$/,
  );
  assert.equal(run.code, 1);
});

Deno.test("worker CLI: --app without an app export gives one clear error line", async () => {
  const run = await runCeleriacWorker({ app: "mod.ts", broker: "memory://", timeoutMs: 15_000 });
  assert.deepEqual(lines(run.stderr), [
    'error: Cannot load app from "mod.ts": the module must export an app as "app" or default',
  ]);
  assert.equal(run.code, 1);
  assert.equal(run.stdout, "", "no banner before the app is loaded");

  const missing = await runCeleriacWorker({ app: "no_such_module.ts", timeoutMs: 15_000 });
  const errLines = lines(missing.stderr);
  assert.equal(errLines.length, 1, missing.stderr);
  assert.match(errLines[0]!, /^error: Cannot load app from "no_such_module\.ts": .*not found/i);
  assert.equal(missing.code, 1);
});

Deno.test("worker CLI: --burst on the memory broker drains, reports and exits 0", async () => {
  const run = await runCeleriacWorker({
    broker: "memory://",
    args: ["--burst"],
    timeoutMs: 15_000,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(
    run.stdout,
    /\[tasks\]\n {2}\. tasks\.add\n {2}\. tasks\.echo\n {2}\. tasks\.fail\n {2}\. tasks\.sleep\n/,
  );
  assert.match(run.stdout, /burst: ran 0 task\(s\), rejected 0/);
  assert.match(run.stderr, /celeriac@test ready\./);
});
