/**
 * The bench's task module for worker processes (`worker.ts --app bench/tasks.ts`): the same
 * tasks, by name, as `bench/celery_bench.py` on the Python side, so a queue filled by the
 * bench can be drained by either a celeriac or a Celery worker.
 *
 * - `bench.noop()` → `null`;
 * - `bench.mark()` → when it ran (unix seconds, float); the drain cases queue one before and
 *   one after the no-op tasks and time from the first mark's start to the last mark's
 *   `date_done`;
 * - `bench.sleep(ms)` → awaits `ms` milliseconds, returns when it started (unix seconds).
 *
 * ```sh
 * deno run -A worker.ts --app bench/tasks.ts --broker redis://127.0.0.1:6379/0 \
 *   --backend redis://127.0.0.1:6379/1 -Q bench -c 50 --loglevel warning
 * ```
 *
 * @module
 */

import { createApp } from "../mod.ts";

/** The app; the worker CLI sets broker and backend with `--broker`/`--backend`. */
export const app = createApp();

/** `bench.noop()` → null. */
export const noop = app.task("bench.noop", () => null);

/** `bench.mark()` → unix seconds when it ran. */
export const mark = app.task("bench.mark", () => Date.now() / 1000);

/** `bench.sleep(ms)` → unix seconds when it started, after awaiting `ms` milliseconds. */
export const sleep = app.task("bench.sleep", (ms: number) => {
  const started = Date.now() / 1000;
  return new Promise<number>((resolve) => setTimeout(() => resolve(started), ms));
}, { params: ["ms"] });
