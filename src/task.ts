/**
 * Tasks: a registered function plus its options, and the context it runs with.
 *
 * @module
 */

import type { App, SendOptions } from "./app.ts";
import type { AsyncResult } from "./async_result.ts";
import { Signature, type SignatureInit } from "./canvas/signature.ts";

/** What a running task knows about itself. */
export interface TaskContext {
  /** Task id. */
  id: string;
  /** Task name. */
  name: string;
  /** Positional arguments as received. */
  args: unknown[];
  /** Keyword arguments as received. */
  kwargs: Record<string, unknown>;
  /** How many times it was retried. */
  retries: number;
  /** Message headers as received. */
  headers: Record<string, unknown>;
  /** Aborted on soft time limit, revoke with terminate, or cold shutdown. */
  signal: AbortSignal;
  /** Workflow root id. */
  rootId: string | null;
  /** Parent task id. */
  parentId: string | null;
  /** Group id. */
  group: string | null;
  /** Worker node name. */
  hostname: string;
  /** Queue (routing key) it was delivered from. */
  queue: string;
  /** The app, to send further tasks. */
  app: App;
  /**
   * Asks to run again later (Celery's `self.retry()`): always throws a `Retry`, so write
   * `throw ctx.retry({ countdown: 10, exc: err })` or just `ctx.retry(...)`.
   */
  retry(
    options?: { countdown?: number; eta?: Date; exc?: unknown; maxRetries?: number | null },
  ): never;
}

/** A task body. With `bind: true` the first parameter is the {@linkcode TaskContext}. */
// deno-lint-ignore no-explicit-any
export type TaskFunction<A extends unknown[] = any[], R = unknown> = (
  ...args: A
) => R | Promise<R>;

/** Options of `app.task()`. */
export interface TaskOptions {
  /** Pass the {@linkcode TaskContext} as the first argument (Celery's `bind=True`). @default false */
  bind?: boolean;
  /**
   * Parameter names, to map Celery keyword arguments onto positions: with
   * `params: ["x", "y"]`, a call `add(2, y=3)` runs `fn(2, 3)`.
   * @default [] (keyword arguments only reach a bound task, through `ctx.kwargs`)
   */
  params?: string[];
  /** Queue this task is sent to. @default the app's default queue */
  queue?: string;
  /** Default priority 0..9. @default 0 */
  priority?: number;
  /** Do not store results. @default false */
  ignoreResult?: boolean;
  /** Ack after the task finished (at-least-once). `false` acks on receipt. @default the worker's setting */
  acksLate?: boolean;
  /** Hard time limit in seconds. @default none */
  timeLimit?: number;
  /** Soft time limit in seconds (aborts `ctx.signal`). @default none */
  softTimeLimit?: number;
  /** Retries allowed (`null`: no limit). @default 3 */
  maxRetries?: number | null;
  /** Seconds before a retry when neither the retry nor a backoff says. @default 180 */
  defaultRetryDelay?: number;
  /**
   * Errors that retry the task automatically: error classes, or a predicate.
   * @default none
   */
  // deno-lint-ignore no-explicit-any
  autoretryFor?: (abstract new (...args: any[]) => unknown)[] | ((error: unknown) => boolean);
  /** Exponential backoff for automatic retries: `true` = 1 s base, or the base in seconds. @default false */
  retryBackoff?: boolean | number;
  /** Cap of the backoff in seconds. @default 600 */
  retryBackoffMax?: number;
  /** Full jitter on the backoff. @default true */
  retryJitter?: boolean;
  /** Celery rate limit for this task type on each worker: `"10/s"`, `"100/m"`, `"1000/h"`. @default none */
  rateLimit?: string | number;
}

/**
 * A registered task. Call it through `delay`/`applyAsync`; a worker runs it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "../mod.ts";
 * const app = createApp({ broker: "memory://task-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y, { params: ["x", "y"] });
 * assert.equal(add.name, "tasks.add");
 * assert.deepEqual(add.bindArguments([2], { y: 3 }, undefined), [2, 3]);
 * ```
 */
export class Task<A extends unknown[] = unknown[], R = unknown> {
  /** Task name. */
  readonly name: string;
  /** The function. */
  readonly fn: TaskFunction<A, R>;
  /** Options as given. */
  readonly options: Readonly<TaskOptions>;
  #app: App;

  /** Use `app.task()`. */
  constructor(app: App, name: string, fn: TaskFunction<A, R>, options: TaskOptions) {
    if (typeof fn !== "function") {
      throw new TypeError(`Cannot register task "${name}": fn must be a function`);
    }
    this.#app = app;
    this.name = name;
    this.fn = fn;
    this.options = { ...options };
  }

  /** Sends the task with positional arguments. */
  delay(...args: TaskArgs<A>): Promise<AsyncResult<Awaited<R>>> {
    return this.applyAsync(args as unknown[], {});
  }

  /** Sends the task with args, kwargs and options. */
  applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SendOptions = {},
  ): Promise<AsyncResult<Awaited<R>>> {
    return this.#app.sendTask<Awaited<R>>(this.name, args, kwargs, options);
  }

  /**
   * A signature of this task (Celery's `task.s(...)`): partial arguments; a parent's result
   * (chain, callback) is prepended to them.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../mod.ts";
   * const app = createApp({ broker: "memory://task-s-doc" });
   * const add = app.task("tasks.add", (x: number, y: number) => x + y);
   * assert.deepEqual(add.s(10).toDict(), {
   *   task: "tasks.add", args: [10], kwargs: {}, options: {}, subtask_type: null, immutable: false,
   * });
   * assert.equal(add.si(1, 2).immutable, true);
   * ```
   */
  s(...args: unknown[]): Signature<AsyncResult<Awaited<R>>> {
    return new Signature(this.#app, this.name, { args });
  }

  /** An immutable signature (Celery's `task.si(...)`): a parent's result is not passed to it. */
  si(...args: unknown[]): Signature<AsyncResult<Awaited<R>>> {
    return new Signature(this.#app, this.name, { args, immutable: true });
  }

  /** A signature with args, kwargs, options (Celery's `task.signature(...)`). */
  signature(init: SignatureInit = {}): Signature<AsyncResult<Awaited<R>>> {
    return new Signature(this.#app, this.name, init);
  }

  /**
   * Builds the argument list for one run: positional args, then keyword args placed by
   * `params`; a bound task gets the context first.
   *
   * @throws {TypeError} When a keyword argument has no place (not in `params` and the task
   *   is not bound), or is given twice.
   */
  bindArguments(
    args: unknown[],
    kwargs: Record<string, unknown>,
    ctx: TaskContext | undefined,
  ): unknown[] {
    const out = [...args];
    const params = this.options.params ?? [];
    for (const [key, value] of Object.entries(kwargs)) {
      const index = params.indexOf(key);
      if (index < 0) {
        if (this.options.bind) continue; // reachable through ctx.kwargs
        throw new TypeError(
          `Cannot call task "${this.name}": keyword argument "${key}" has no parameter (declare params: [...] or bind: true)`,
        );
      }
      if (index < args.length) {
        throw new TypeError(
          `Cannot call task "${this.name}": got multiple values for argument "${key}"`,
        );
      }
      while (out.length < index) out.push(undefined);
      out[index] = value;
    }
    return this.options.bind ? [ctx, ...out] : out;
  }
}

/** The argument list `delay()` takes: the function's parameters without the bound context. */
export type TaskArgs<A extends unknown[]> = A extends [TaskContext, ...infer Rest] ? Rest : A;
