/**
 * Runs one request's task function and reports what happened; never throws.
 *
 * @module
 */

import type { App } from "../app.ts";
import { Retry, SoftTimeLimitExceeded, TimeLimitExceeded } from "../errors.ts";
import type { TaskContext } from "../task.ts";
import type { Request } from "./request.ts";

/** What one run produced. */
export type Outcome =
  | { ok: true; value: unknown; runtimeMs: number }
  | { ok: false; error: unknown; runtimeMs: number };

/** Builds the context a task sees. */
export function buildContext(
  request: Request,
  app: App,
  hostname: string,
  signal: AbortSignal,
): TaskContext {
  const m = request.message;
  return {
    id: m.id,
    name: m.task,
    args: m.args,
    kwargs: m.kwargs,
    retries: m.retries,
    headers: m.headers,
    signal,
    rootId: m.rootId,
    parentId: m.parentId,
    group: m.group,
    hostname,
    queue: request.delivery.queue,
    app,
    retry(options = {}): never {
      throw new Retry(options);
    },
  };
}

/**
 * Calls the task function with its bound arguments (`this` is the context too) and times it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { execute } from "./executor.ts";
 * const outcome = await execute(() => 5, [], {} as never);
 * assert.equal(outcome.ok && outcome.value, 5);
 * ```
 */
export async function execute(
  fn: (...args: unknown[]) => unknown,
  args: unknown[],
  ctx: TaskContext,
): Promise<Outcome> {
  const start = performance.now();
  try {
    const value = await fn.apply(ctx, args);
    return {
      ok: true,
      value: value === undefined ? null : value,
      runtimeMs: performance.now() - start,
    };
  } catch (error) {
    return { ok: false, error, runtimeMs: performance.now() - start };
  }
}

/** Time limits of one run, in seconds (`null`: none). */
export interface RunLimits {
  /** Soft limit: aborts `ctx.signal` with `SoftTimeLimitExceeded`. */
  soft: number | null;
  /** Hard limit: the run fails with `TimeLimitExceeded` and is abandoned. */
  hard: number | null;
}

/**
 * Runs with time limits. At the soft limit the context's signal is aborted with
 * `SoftTimeLimitExceeded` (a task that stops then fails with it). At the hard limit the run
 * fails with `TimeLimitExceeded` whatever the function does; an async function cannot be
 * killed, so it is abandoned (its slot is freed); CPU-bound work that must be killed runs in
 * a Web Worker instead.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { executeWithLimits } from "./executor.ts";
 * const controller = new AbortController();
 * const ctx = { signal: controller.signal } as never;
 * const outcome = await executeWithLimits(() => new Promise(() => {}), [], ctx, controller, { soft: null, hard: 0.01 });
 * assert.equal(outcome.ok, false);
 * assert.equal(!outcome.ok && (outcome.error as Error).name, "TimeLimitExceeded");
 * ```
 */
export function executeWithLimits(
  fn: (...args: unknown[]) => unknown,
  args: unknown[],
  ctx: TaskContext,
  controller: AbortController,
  limits: RunLimits,
): Promise<Outcome> {
  // Without limits there is nothing to wait for but the run: no second async frame.
  if (limits.soft === null && limits.hard === null) return execute(fn, args, ctx);
  return executeLimited(fn, args, ctx, controller, limits);
}

async function executeLimited(
  fn: (...args: unknown[]) => unknown,
  args: unknown[],
  ctx: TaskContext,
  controller: AbortController,
  limits: RunLimits,
): Promise<Outcome> {
  const start = performance.now();
  let softTimer: ReturnType<typeof setTimeout> | undefined;
  let hardTimer: ReturnType<typeof setTimeout> | undefined;
  if (limits.soft !== null) {
    softTimer = setTimeout(
      () => controller.abort(new SoftTimeLimitExceeded(limits.soft!)),
      limits.soft * 1000,
    );
  }
  const hard = limits.hard === null ? null : new Promise<Outcome>((resolve) => {
    hardTimer = setTimeout(() => {
      const error = new TimeLimitExceeded(limits.hard!);
      if (!controller.signal.aborted) controller.abort(error);
      resolve({ ok: false, error, runtimeMs: performance.now() - start });
    }, limits.hard! * 1000);
  });
  try {
    const run = execute(fn, args, ctx);
    return await (hard ? Promise.race([run, hard]) : run);
  } finally {
    clearTimeout(softTimer);
    clearTimeout(hardTimer);
  }
}
