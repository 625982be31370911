/**
 * `GroupResult`: the results of a group's members, in order, as in Celery; and
 * {@linkcode resultFromTuple}, which rebuilds results from Celery's result tuples
 * (`[[id, parent], null]` for one task, `[[group_id, parent], [member tuples…]]` for a group).
 *
 * @module
 */

import { AsyncResult, type GetOptions } from "./async_result.ts";
import type { ResultBackend } from "./backends/backend.ts";
import { ConfigError, ResultTimeoutError } from "./errors.ts";

/** A task's or a group's result. */
export type ResultHandle = AsyncResult<unknown> | GroupResult;

/**
 * Where results are read: the app (or anything with its `backend()`). When it also has
 * `control.revoke` (remote control), `GroupResult.revoke()` uses it.
 */
export interface ResultSource {
  /** The result backend, or `null` when results are off. */
  backend(): Promise<ResultBackend | null>;
}

/** Options of {@linkcode GroupResult.revoke}. */
export interface RevokeOptions {
  /** Also stop the tasks that are running (their `ctx.signal` is aborted). @default false */
  terminate?: boolean;
  /** Signal name for terminate, as in Celery. @default "SIGTERM" */
  signal?: string;
}

/** A remote-control client that can revoke, as `app.control` (another module) provides. */
interface RevokeControl {
  revoke(taskIds: string | string[], options?: RevokeOptions): Promise<unknown>;
}

/**
 * The results of a group, in the order of its members (Celery's `GroupResult`).
 *
 * @example Wait for a group's results in order
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, group, Worker } from "../mod.ts";
 * const app = createApp({ broker: "memory://group-result-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * const result = await group([add.s(1, 1), add.s(2, 2)]).applyAsync();
 * assert.deepEqual(await result.get({ timeout: 5 }), [2, 4]);
 * assert.equal(await result.completedCount(), 2);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class GroupResult {
  /** The group id. */
  readonly id: string;
  /** Member results, in order (a nested group's member is a `GroupResult`). */
  readonly results: ResultHandle[];
  /** The result this group was chained after, if any. */
  parent: ResultHandle | null;
  #source: ResultSource;

  /**
   * @param source Where results are read (the app).
   * @param parent The result before it in a chain.
   */
  constructor(
    id: string,
    results: ResultHandle[],
    source: ResultSource,
    parent: ResultHandle | null = null,
  ) {
    this.id = id;
    this.results = results;
    this.#source = source;
    this.parent = parent;
  }

  /** Number of members. */
  get length(): number {
    return this.results.length;
  }

  /** Member task ids, nested groups flattened. */
  get ids(): string[] {
    return this.results.flatMap((r) => r instanceof GroupResult ? r.ids : [r.id]);
  }

  async #backend(): Promise<ResultBackend> {
    const backend = await this.#source.backend();
    if (!backend) {
      throw new ConfigError(
        `Cannot use group result "${this.id}": the app has no result backend (set createApp({ backend }))`,
      );
    }
    return backend;
  }

  /**
   * Waits for every member and returns their values in order (a nested group gives a list).
   * Same as {@linkcode GroupResult.join}.
   *
   * @throws {TaskFailedError} When a member failed or was revoked (unless `propagate: false`,
   *   which puts the serialized exception in its place).
   * @throws {ResultTimeoutError} When `timeout` (seconds, for the whole group) passes first.
   */
  get(options: GetOptions = {}): Promise<unknown[]> {
    return this.join(options);
  }

  /**
   * Waits for the members one after the other, in order, within one overall `timeout`.
   *
   * @throws {TaskFailedError} When a member failed or was revoked and `propagate` is on.
   * @throws {ResultTimeoutError} When `timeout` passes first.
   */
  async join(options: GetOptions = {}): Promise<unknown[]> {
    const deadline = options.timeout === undefined
      ? undefined
      : performance.now() + options.timeout * 1000;
    const values: unknown[] = [];
    for (const result of this.results) {
      let timeout: number | undefined;
      if (deadline !== undefined) {
        timeout = (deadline - performance.now()) / 1000;
        if (timeout <= 0) throw new ResultTimeoutError(result.id, options.timeout! * 1000);
      }
      values.push(await result.get({ ...options, timeout }));
    }
    return values;
  }

  /** True once every member is ready (succeeded, failed or revoked). */
  async ready(): Promise<boolean> {
    for (const r of this.results) if (!(await r.ready())) return false;
    return true;
  }

  /** True while some member is not ready. */
  async waiting(): Promise<boolean> {
    return !(await this.ready());
  }

  /** True when every member succeeded. */
  async successful(): Promise<boolean> {
    for (const r of this.results) if (!(await r.successful())) return false;
    return true;
  }

  /** True when some member failed. */
  async failed(): Promise<boolean> {
    for (const r of this.results) if (await r.failed()) return true;
    return false;
  }

  /** How many members succeeded (Celery's `completed_count`). */
  async completedCount(): Promise<number> {
    let n = 0;
    for (const r of this.results) if (await r.successful()) n++;
    return n;
  }

  /** Celery's result tuple: `[[id, parent tuple or null], [member tuples…]]`. */
  asTuple(): unknown[] {
    return [
      [this.id, this.parent ? this.parent.asTuple() : null],
      this.results.map((r) => r.asTuple()),
    ];
  }

  /**
   * Stores the group (`celery-taskset-meta-<id>` = `{"result": <tuple>}` on Redis), so that
   * {@linkcode GroupResult.restore} finds it, from any process or language.
   *
   * @throws {ConfigError} When there is no backend, or it cannot store groups.
   */
  async save(): Promise<void> {
    const backend = await this.#backend();
    if (!backend.saveGroup) {
      throw new ConfigError(
        `Cannot save group "${this.id}": the ${backend.kind} result backend does not store groups`,
      );
    }
    await backend.saveGroup(this.id, this.asTuple());
  }

  /**
   * Reads a group stored with `save()` (here or by Python's `GroupResult.save()`), or `null`.
   *
   * @throws {ConfigError} When there is no backend, or it cannot store groups.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp, GroupResult } from "../mod.ts";
   * const app = createApp({ broker: "memory://restore-doc" });
   * const saved = new GroupResult("g1", [app.asyncResult("a"), app.asyncResult("b")], app);
   * await saved.save();
   * const restored = await GroupResult.restore(app, "g1");
   * assert.deepEqual(restored?.ids, ["a", "b"]);
   * await app.close();
   * ```
   */
  static async restore(source: ResultSource, groupId: string): Promise<GroupResult | null> {
    const backend = await source.backend();
    if (!backend?.restoreGroup) {
      throw new ConfigError(
        `Cannot restore group "${groupId}": the result backend does not store groups`,
      );
    }
    const tuple = await backend.restoreGroup(groupId);
    if (tuple === null) return null;
    const result = resultFromTuple(tuple, source);
    if (!(result instanceof GroupResult)) {
      throw new TypeError(`Cannot restore group "${groupId}": the stored value is not a group`);
    }
    return result;
  }

  /** Deletes the stored group (not its members' results). */
  async delete(): Promise<void> {
    const backend = await this.#backend();
    await backend.forgetGroup?.(this.id);
  }

  /** Forgets every member's result (Celery's `forget`; the saved group stays). */
  async forget(): Promise<void> {
    for (const r of this.results) await r.forget();
  }

  /**
   * Revokes every member (a cast to every worker, Celery's `revoke`), through the app's
   * remote control (`app.control.revoke`): waiting members are never run, held ones are
   * released, and with `terminate` running ones are aborted; each is stored REVOKED.
   *
   * @throws {TypeError} When the result was built without the app (a bare `ResultSource`
   *   has no remote control).
   */
  async revoke(options: RevokeOptions = {}): Promise<void> {
    await revokeThrough(this.#source, this.ids, options, `group "${this.id}"`);
  }
}

/**
 * Revokes task ids through a result source's remote control (`app.control.revoke`).
 *
 * @throws {TypeError} When the source has no remote control; the message names `what`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { revokeThrough } from "./group_result.ts";
 * const sent: string[][] = [];
 * const source = {
 *   backend: () => Promise.resolve(null),
 *   control: { revoke: (ids: string | string[]) => Promise.resolve(sent.push([ids].flat())) },
 * };
 * await revokeThrough(source, ["t1", "t2"], {}, "two tasks");
 * assert.deepEqual(sent, [["t1", "t2"]]);
 * ```
 */
export async function revokeThrough(
  source: ResultSource | undefined,
  ids: string[],
  options: RevokeOptions,
  what: string,
): Promise<void> {
  const control = (source as { control?: Partial<RevokeControl> } | undefined)?.control;
  if (typeof control?.revoke !== "function") {
    throw new TypeError(
      `Cannot revoke ${what}: its result source has no remote control (app.control)`,
    );
  }
  await control.revoke(ids, options);
}

/**
 * Rebuilds a result (and its parents) from Celery's result tuple, as stored in `children`
 * and by `GroupResult.save()`.
 *
 * @throws {TypeError} When the value is not a result tuple.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, GroupResult } from "../mod.ts";
 * import { resultFromTuple } from "./group_result.ts";
 * const app = createApp({ broker: "memory://tuple-doc" });
 * const r = resultFromTuple([["g", null], [[["a", null], null], [["b", [["a", null], null]], null]]], app);
 * assert.ok(r instanceof GroupResult);
 * assert.deepEqual(r.ids, ["a", "b"]);
 * assert.equal(r.results[1].parent?.id, "a");
 * ```
 */
export function resultFromTuple(tuple: unknown, source: ResultSource): ResultHandle {
  if (!Array.isArray(tuple) || tuple.length !== 2) {
    throw new TypeError(`Cannot read result tuple ${JSON.stringify(tuple)}`);
  }
  const [head, nodes] = tuple;
  const [id, parentTuple] = Array.isArray(head) ? head : [head, null];
  if (typeof id !== "string") {
    throw new TypeError(`Cannot read result tuple ${JSON.stringify(tuple)}: no id`);
  }
  const parent = parentTuple ? resultFromTuple(parentTuple, source) : null;
  if (nodes !== null && nodes !== undefined) {
    if (!Array.isArray(nodes)) {
      throw new TypeError(`Cannot read result tuple ${JSON.stringify(tuple)}: bad members`);
    }
    return new GroupResult(id, nodes.map((n) => resultFromTuple(n, source)), source, parent);
  }
  return new AsyncResult(id, () => source.backend(), { parent, source });
}
