/**
 * Quick start: define tasks, start a worker, send tasks, read results, in one process, on
 * the embedded store (one SQLite file under `./.celeriac/`, created on first use; no server
 * to install). Another process on this machine can send to the same file, or run workers
 * on it: `deno run -A worker.ts --app <your tasks module>` uses it by default.
 *
 * ```sh
 * deno task demo
 * ```
 *
 * @module
 */

import { createApp, TaskFailedError, Worker } from "../mod.ts";

const app = createApp({ broker: "sqlite://./.celeriac/celeriac.db" });
console.log(`broker and results: ${app.brokerSpec} (relative to ${Deno.cwd()})`);

const add = app.task("tasks.add", (x: number, y: number) => x + y);
const slowSquare = app.task("tasks.slow_square", async (x: number) => {
  await new Promise((r) => setTimeout(r, 100));
  return x * x;
});
const fail = app.task("tasks.fail", (message: string): never => {
  throw new Error(message);
});

const worker = new Worker(app, { concurrency: 20, logLevel: "warning" });
await worker.start();

const sum = await add.delay(2, 3);
console.log(`tasks.add(2, 3) = ${await sum.get({ timeout: 5 })}`);

const started = performance.now();
const squares = await Promise.all([...Array(20).keys()].map((x) => slowSquare.delay(x)));
const values = await Promise.all(squares.map((r) => r.get({ timeout: 5 })));
console.log(
  `20 x tasks.slow_square (100 ms each, concurrency 20) = [${values.join(", ")}] in ${
    Math.round(performance.now() - started)
  } ms`,
);

const failed = await fail.delay("this task fails on purpose");
try {
  await failed.get({ timeout: 5 });
} catch (err) {
  if (!(err instanceof TaskFailedError)) throw err;
  console.log(`tasks.fail raised ${err.excType}: ${err.excMessage[0]} (state ${err.state})`);
}

await worker.stop();
await app.close();
console.log("done");
