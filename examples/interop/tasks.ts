/**
 * The interop app: the same tasks as the Python side (`tests/interop/pytasks.py`), so a
 * Python Celery client can call a celeriac worker and the other way round.
 *
 * ```sh
 * deno run -A worker.ts --app ./examples/interop/tasks.ts \
 *   --broker redis://127.0.0.1:6379/0 --backend redis://127.0.0.1:6379/1
 * ```
 *
 * @module
 */

import { createApp, type TaskContext } from "../../mod.ts";

/** The app; the worker CLI sets broker and backend with `--broker`/`--backend`. */
export const app = createApp();

/** `tasks.add(x, y)` → x + y. */
export const add = app.task("tasks.add", (x: number, y: number) => x + y, { params: ["x", "y"] });

/**
 * The error `tasks.fail` throws. Its name is a Python built-in exception's, so it is stored
 * as `builtins.ValueError` and a Python client gets a real `ValueError`, exactly as from the
 * Python `tasks.fail`.
 */
export class ValueError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "ValueError";
  }
}

/** `tasks.fail(message)` → throws `ValueError(message)`, as the Python task raises. */
export const fail = app.task("tasks.fail", (message: string): never => {
  throw new ValueError(message);
}, { params: ["message"] });

/** `tasks.echo(**kwargs)` → its kwargs. */
export const echo = app.task("tasks.echo", (ctx: TaskContext) => ctx.kwargs, { bind: true });

/** `tasks.sleep(seconds)` → waits, then returns seconds (stops early when aborted). */
export const sleep = app.task(
  "tasks.sleep",
  (ctx: TaskContext, seconds: number) =>
    new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => resolve(seconds), seconds * 1000);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(ctx.signal.reason);
      }, { once: true });
    }),
  { bind: true, params: ["seconds"] },
);

/** `tasks.xsum(values)` → the sum of a list (a chord body). */
export const xsum = app.task(
  "tasks.xsum",
  (values: number[]) => values.reduce((a, b) => a + b, 0),
  { params: ["values"] },
);
