/**
 * `AsyncResult`: a handle on one task's result, as in Celery.
 *
 * @module
 */

import type { ResultBackend } from "./backends/backend.ts";
import { ConfigError, TaskFailedError } from "./errors.ts";
import type { ResultHandle, ResultSource, RevokeOptions } from "./group_result.ts";
import { resultFromTuple, revokeThrough } from "./group_result.ts";
import { readException } from "./protocol/exception.ts";
import { READY_STATES, type ResultMeta } from "./protocol/result.ts";

/** Options of {@linkcode AsyncResult.get}. */
export interface GetOptions {
  /** Seconds to wait, as in Celery. @default no limit */
  timeout?: number;
  /** Throw `TaskFailedError` when the task failed or was revoked. @default true */
  propagate?: boolean;
  /** Stops the wait. */
  signal?: AbortSignal;
}

/**
 * The result of one task, looked up in the result backend.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "../mod.ts";
 * const app = createApp({ broker: "memory://async-result-doc", backend: "memory://async-result-doc" });
 * const result = app.asyncResult("no-such-task");
 * assert.equal(await result.state, "PENDING");
 * assert.equal(await result.ready(), false);
 * await app.close();
 * ```
 */
export class AsyncResult<T = unknown> {
  /** The task id. */
  readonly id: string;
  /**
   * The result of the task before this one in a workflow (the previous chain step, or a
   * chord's header group), as Celery's `result.parent`; set by the canvas. @default null
   */
  parent: ResultHandle | null;
  #backend: () => Promise<ResultBackend | null>;
  #source?: ResultSource;

  /**
   * Builds a handle; `backend` is resolved lazily.
   *
   * @param options.parent The previous result in a workflow.
   * @param options.source The app, so that groups read from `children()` can be revoked.
   */
  constructor(
    id: string,
    backend: () => Promise<ResultBackend | null>,
    options: { parent?: ResultHandle | null; source?: ResultSource } = {},
  ) {
    this.id = id;
    this.#backend = backend;
    this.parent = options.parent ?? null;
    this.#source = options.source;
  }

  async #requireBackend(): Promise<ResultBackend> {
    const backend = await this.#backend();
    if (!backend) {
      throw new ConfigError(
        `Cannot read result of task "${this.id}": the app has no result backend (set createApp({ backend }))`,
      );
    }
    return backend;
  }

  /** The stored record, or `null` while PENDING. */
  async meta(): Promise<ResultMeta | null> {
    return await (await this.#requireBackend()).get(this.id);
  }

  /** The current state: PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, … */
  get state(): Promise<string> {
    return this.meta().then((m) => m?.status ?? "PENDING");
  }

  /** True once the task succeeded, failed or was revoked. */
  async ready(): Promise<boolean> {
    return READY_STATES.has(await this.state);
  }

  /** True when the task succeeded. */
  async successful(): Promise<boolean> {
    return (await this.state) === "SUCCESS";
  }

  /** True when the task failed. */
  async failed(): Promise<boolean> {
    return (await this.state) === "FAILURE";
  }

  /**
   * Celery's result tuple: `[[id, parent tuple or null], null]` (what `children` and
   * `GroupResult.save()` store).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../mod.ts";
   * const app = createApp({ broker: "memory://tuple-result-doc" });
   * const first = app.asyncResult("a");
   * const second = app.asyncResult("b");
   * second.parent = first;
   * assert.deepEqual(second.asTuple(), [["b", [["a", null], null]], null]);
   * ```
   */
  asTuple(): unknown[] {
    return [[this.id, this.parent ? this.parent.asTuple() : null], null];
  }

  /**
   * The results of the tasks this task sent (its callbacks, next chain step, tasks sent from
   * its body), read from its stored record (Celery's `children`); empty while PENDING.
   */
  async children(): Promise<ResultHandle[]> {
    const meta = await this.meta();
    const source = this.#source ?? { backend: this.#backend };
    return (meta?.children ?? []).map((tuple) => resultFromTuple(tuple, source));
  }

  /**
   * Waits for the task and returns its value.
   *
   * @throws {TaskFailedError} When it failed or was revoked (unless `propagate: false`,
   *   which returns the serialized exception instead).
   * @throws {ResultTimeoutError} When `timeout` passes first.
   */
  async get(options: GetOptions = {}): Promise<T> {
    const backend = await this.#requireBackend();
    const meta = await backend.waitFor(this.id, {
      timeoutMs: options.timeout === undefined ? undefined : options.timeout * 1000,
      signal: options.signal,
    });
    if (meta.status !== "SUCCESS" && options.propagate !== false) {
      const exc = readException(meta.result) ??
        { exc_type: meta.status, exc_message: [], exc_module: "builtins" };
      throw new TaskFailedError(this.id, meta.status, {
        excType: exc.exc_type,
        excModule: exc.exc_module,
        excMessage: exc.exc_message,
        traceback: meta.traceback,
      });
    }
    return meta.result as T;
  }

  /**
   * Revokes the task (Celery's `AsyncResult.revoke`), a cast to every worker through the
   * app's remote control: a waiting message is never run (it is stored REVOKED when a worker
   * meets it), a held one is released, and with `terminate` a running one has its
   * `ctx.signal` aborted.
   *
   * @throws {TypeError} When the handle was built without the app (no remote control).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp, Worker } from "../mod.ts";
   * const app = createApp({ broker: "memory://async-result-revoke-doc" });
   * const add = app.task("tasks.add", (x: number, y: number) => x + y);
   * const worker = new Worker(app, { logLevel: "critical" });
   * await worker.start();
   * const result = await add.applyAsync([1, 2], {}, { countdown: 60 });
   * await result.revoke();
   * await result.get({ timeout: 5, propagate: false });
   * assert.equal(await result.state, "REVOKED");
   * await worker.stop();
   * await app.close();
   * ```
   */
  async revoke(options: RevokeOptions = {}): Promise<void> {
    await revokeThrough(this.#source, [this.id], options, `task "${this.id}"`);
  }

  /** Deletes the stored result, and its parents' (Celery's `forget`). */
  async forget(): Promise<void> {
    await this.parent?.forget();
    await (await this.#requireBackend()).forget(this.id);
  }
}
