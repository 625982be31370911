/**
 * The embedded store across processes: a producer process and a worker process (the worker
 * CLI) share one `sqlite://` file; a worker killed with SIGKILL mid-task loses nothing (the
 * task runs again on another worker after the visibility timeout); `--burst` drains an
 * embedded queue filled by this process; the CLI defaults to the embedded store; remote
 * control and events reach a worker process through the file.
 *
 * Workers run with scoped permissions: `--allow-read=<repo>,<store dir>` and
 * `--allow-write=<store dir>`.
 */

import assert from "node:assert/strict";
import { type CeleryEvent, createApp, EventReceiver } from "../../mod.ts";
import {
  REPO_ROOT,
  runCeleriacWorker,
  startCeleriacWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";
import { spawnChild } from "../helpers/process.ts";
import { tempStore } from "../helpers/temp_store.ts";
import { pollUntil } from "../helpers/poll.ts";

const APP = `${REPO_ROOT}/tests/fixtures/embedded_tasks.ts`;

function permissions(dir: string): string[] {
  return [`--allow-read=${REPO_ROOT},${dir}`, `--allow-write=${dir}`];
}

Deno.test("embedded: a producer process enqueues, a worker process runs, results read back everywhere", async () => {
  await using store = await tempStore();
  const producer = spawnChild(Deno.execPath(), {
    args: [
      "run",
      ...permissions(store.dir),
      `${REPO_ROOT}/tests/fixtures/embedded_producer.ts`,
      store.url,
      "10",
    ],
    label: "producer",
  });
  let worker;
  const app = createApp({ broker: store.url });
  try {
    // Everything is enqueued (and the producer waits) before any worker exists.
    const line = await producer.waitForLine(/^enqueued /, { timeoutMs: 20_000 });
    const ids: string[] = JSON.parse(line.slice("enqueued ".length));
    assert.equal(ids.length, 10);
    assert.equal(await (await app.broker()).queueSize("celery"), 10);

    worker = await startCeleriacWorker({
      app: APP,
      broker: store.url,
      permissions: permissions(store.dir),
    });
    assert.match(worker.child.stdout, /transport:\s+sqlite:\/\//);
    assert.match(worker.child.stdout, /results:\s+sqlite:\/\//, "the backend follows the broker");

    const exit = await producer.waitForExit(30_000);
    assert.equal(exit.code, 0, exit.stderr);
    const results = JSON.parse(
      exit.stdout.split("\n").find((l) => l.startsWith("results "))!.slice(8),
    );
    assert.deepEqual(results, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    // A third process (this one) reads the same results.
    for (const [i, id] of ids.entries()) {
      assert.equal(await app.asyncResult(id).get({ timeout: 5 }), 2 * i);
    }
    const stopped = await worker.stop(10_000);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.doesNotMatch(stopped.stderr, /Missing permission|NotCapable/);
    assert.deepEqual(store.all("SELECT count(*) AS n FROM celeriac_messages"), [{ n: 0 }]);
  } finally {
    await producer.stop();
    await worker?.stop();
    await app.close();
  }
});

Deno.test("embedded: kill -9 of a worker mid-task ⇒ the task runs again after the visibility timeout", async () => {
  await using store = await tempStore();
  const url = `${store.url}?visibility_timeout=1`;
  const app = createApp({ broker: url });
  const marker = `${store.dir}/started`;
  let first, second;
  try {
    first = await startCeleriacWorker({
      app: APP,
      broker: url,
      name: "first@test",
      permissions: permissions(store.dir),
    });
    const result = await app.sendTask<string>("tasks.once", [marker]);
    await first.child.waitForLine(new RegExp(`Task tasks\\.once\\[${result.id}\\] received`), {
      timeoutMs: 10_000,
    });
    await pollUntil(() => Deno.stat(marker).then(() => true, () => false), {
      message: "the first run started",
    });
    assert.deepEqual(
      store.all("SELECT count(*) AS n FROM celeriac_messages WHERE owner IS NOT NULL"),
      [{ n: 1 }],
      "leased to the first worker",
    );
    first.child.kill("SIGKILL");
    const killed = await first.child.exited;
    assert.equal(killed.signal, "SIGKILL");
    const killedAt = performance.now();

    second = await startCeleriacWorker({
      app: APP,
      broker: url,
      name: "second@test",
      permissions: permissions(store.dir),
    });
    assert.equal(await result.get({ timeout: 20 }), "ran again");
    const elapsed = performance.now() - killedAt;
    assert.ok(elapsed < 15_000, `came back after ${elapsed} ms`);
    await second.child.waitForLine(/Task tasks\.once\[.*\] succeeded in .*: 'ran again'$/, {
      timeoutMs: 5000,
    });
    await pollUntil(
      () => Number(store.all("SELECT count(*) AS n FROM celeriac_messages")[0]!.n) === 0,
      { message: "the message acked", timeoutMs: 5000 },
    );
    const exit = await second.stop(10_000);
    assert.equal(exit.code, 0, exit.stderr);
  } finally {
    await first?.stop();
    await second?.stop();
    await app.close();
  }
});

Deno.test("embedded: worker CLI --burst drains tasks enqueued by this process, prints the summary, exits 0", async () => {
  await using store = await tempStore();
  const app = createApp({ broker: store.url });
  try {
    const sent = [];
    for (let i = 1; i <= 5; i++) sent.push(await app.sendTask<number>("tasks.add", [i, 10]));
    const run = await runCeleriacWorker({
      app: APP,
      broker: store.url,
      permissions: permissions(store.dir),
      args: ["--burst"],
      timeoutMs: 30_000,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^burst: ran 5 task\(s\) \(tasks\.add: 5\), rejected 0$/m);
    assert.match(run.stderr, /Burst mode: queues are empty, stopping/);
    for (const [i, result] of sent.entries()) {
      assert.equal(await result.get({ timeout: 1 }), i + 11, "stored in the embedded backend");
    }
    assert.equal(await (await app.broker()).queueSize("celery"), 0);
  } finally {
    await app.close();
  }
});

Deno.test("embedded: without --broker the worker CLI runs on ./.celeriac/celeriac.db", async () => {
  await using store = await tempStore();
  const run = await runCeleriacWorker({
    app: APP,
    cwd: store.dir,
    permissions: permissions(store.dir),
    args: ["--burst"],
    timeoutMs: 30_000,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /transport:\s+sqlite:\/\/\.\/\.celeriac\/celeriac\.db$/m);
  assert.match(run.stdout, /results:\s+sqlite:\/\/\.\/\.celeriac\/celeriac\.db$/m);
  assert.match(run.stdout, /burst: ran 0 task\(s\), rejected 0/);
  assert.ok((await Deno.stat(`${store.dir}/.celeriac/celeriac.db`)).isFile);
});

Deno.test("embedded: remote control and events reach a worker process through the file", async () => {
  await using store = await tempStore();
  const app = createApp({ broker: store.url });
  let worker: WorkerProcess | undefined;
  const events: CeleryEvent[] = [];
  const receiver = new EventReceiver(await app.broker(), {
    handlers: { "*": (e) => void events.push(e) },
  });
  try {
    await receiver.start();
    worker = await startCeleriacWorker({
      app: APP,
      broker: store.url,
      name: "embedded-ctl@test",
      args: ["-E"],
      permissions: permissions(store.dir),
    });
    const inspect = app.control.inspect({ destination: ["embedded-ctl@test"], timeout: 5 });
    assert.deepEqual(await inspect.ping(), { "embedded-ctl@test": { ok: "pong" } });
    assert.ok((await inspect.registered())["embedded-ctl@test"]!.includes("tasks.add"));
    assert.deepEqual(
      await app.control.rateLimit("tasks.add", "100/m", {
        reply: true,
        destination: ["embedded-ctl@test"],
        timeout: 5,
      }),
      [{ "embedded-ctl@test": { ok: "new rate limit set successfully" } }],
    );

    const result = await app.sendTask<number>("tasks.add", [20, 22]);
    assert.equal(await result.get({ timeout: 10 }), 42);
    await pollUntil(
      () => events.some((e) => e.type === "task-succeeded" && e.uuid === result.id),
      { timeoutMs: 10_000, message: "task-succeeded through the fanout table" },
    );
    const types = new Set(events.map((e) => e.type));
    for (const t of ["worker-online", "task-received", "task-started", "task-succeeded"]) {
      assert.ok(types.has(t), `${t} in ${[...types]}`);
    }
    assert.ok(events.every((e) => e.hostname === undefined || e.hostname === "embedded-ctl@test"));
  } finally {
    await receiver.close();
    await app.close();
    await worker?.stop();
  }
});
