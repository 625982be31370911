/**
 * The task a worker is running right now, as Celery's `current_worker_task`: a task sent
 * from inside another (its body, or the worker applying its callbacks and next chain step)
 * gets `parent_id` = the running task's id and `root_id` = its root, and is listed in the
 * running task's `children` (Celery's result tuples, stored in its result record).
 *
 * Carried by `AsyncLocalStorage`, so it follows the task's `await`s and nothing else.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { TaskMessage } from "../protocol/task.ts";

/** The running task, as a sender sees it. */
export interface TaskScope {
  /** Its id: the `parent_id` of what it sends. */
  readonly id: string;
  /** Its workflow root: the `root_id` of what it sends. */
  readonly rootId: string;
  /** Result tuples of what it sent (`[[id, null], null]`, or a group's tuple). */
  readonly children: unknown[];
}

const storage = new AsyncLocalStorage<TaskScope>();
const scopes = new WeakMap<TaskMessage, TaskScope>();

function scopeOf(message: TaskMessage): TaskScope {
  let scope = scopes.get(message);
  if (!scope) {
    scope = { id: message.id, rootId: message.rootId || message.id, children: [] };
    scopes.set(message, scope);
  }
  return scope;
}

/**
 * Runs `fn` as the task of `message`: what it sends (also after `await`s) gets this task as
 * parent and root, and is recorded as a child. Entering again for the same message object
 * (the worker applying its workflow) shares the children list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentTaskScope, runInTaskScope } from "./current.ts";
 * const message = { id: "t1", rootId: "r1" } as never;
 * const seen = await runInTaskScope(message, async () => {
 *   await Promise.resolve();
 *   return currentTaskScope();
 * });
 * assert.deepEqual([seen?.id, seen?.rootId], ["t1", "r1"]);
 * assert.equal(currentTaskScope(), undefined);
 * ```
 */
export function runInTaskScope<T>(message: TaskMessage, fn: () => T): T {
  return storage.run(scopeOf(message), fn);
}

/**
 * The task running in this async context, or `undefined` outside a task.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentTaskScope } from "./current.ts";
 * assert.equal(currentTaskScope(), undefined);
 * ```
 */
export function currentTaskScope(): TaskScope | undefined {
  return storage.getStore();
}

/**
 * The result tuples of what the task of `message` sent so far (Celery's `children`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { childrenOf, currentTaskScope, runInTaskScope } from "./current.ts";
 * const message = { id: "t1", rootId: null } as never;
 * runInTaskScope(message, () => currentTaskScope()!.children.push([["c1", null], null]));
 * assert.deepEqual(childrenOf(message), [[["c1", null], null]]);
 * ```
 */
export function childrenOf(message: TaskMessage): unknown[] {
  return scopes.get(message)?.children.slice() ?? [];
}
