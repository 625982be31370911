/**
 * Child script of `tests/worker/heap_growth_test.ts` (run with `--v8-flags=--expose-gc`):
 * runs 2,000 no-op tasks through one worker at concurrency 1 on the memory broker, then
 * 20,000 more, and prints the growth of the V8 heap between the two, each after full
 * collections, as `{"growth": bytes, "processed": n}`.
 */

import { createApp } from "../../mod.ts";
import { Logger } from "../../src/log.ts";
import { Worker } from "../../src/worker/worker.ts";

const app = createApp({ broker: `memory://heap-growth-${crypto.randomUUID()}` });
const noop = app.task("tasks.noop", () => null, { ignoreResult: true });
const worker = new Worker(app, { concurrency: 1, logger: new Logger("error", () => {}) });
await worker.start();
const gc = (globalThis as unknown as { gc: () => void }).gc;

async function runTasks(count: number): Promise<void> {
  const target = worker.counters.processed + count;
  for (let i = 0; i < count; i++) await noop.delay();
  while (worker.counters.processed < target) await new Promise((r) => setTimeout(r, 5));
}

await runTasks(2_000);
gc();
gc();
const before = Deno.memoryUsage().heapUsed;
await runTasks(20_000);
gc();
gc();
const growth = Deno.memoryUsage().heapUsed - before;
console.log(JSON.stringify({ growth, processed: worker.counters.processed }));
await worker.stop();
await app.close();
