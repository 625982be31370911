/**
 * Turns a delivery into a runnable request, or says why it cannot run.
 *
 * Duties:
 * 1. decode the message (protocol v2 only);
 * 2. find the registered task;
 * 3. classify: run now, run later (ETA), revoke (expired), or reject (undecodable,
 *    invalid, unknown task), each with the task id when there is one.
 *
 * @module
 */

import { DecodeError, InvalidTaskError, TaskNotRegisteredError } from "../errors.ts";
import type { Delivery } from "../brokers/broker.ts";
import { decodeTaskMessage, type TaskMessage } from "../protocol/task.ts";
import type { Task } from "../task.ts";

/** A decoded message whose task is registered here. */
export interface Request {
  /** The decoded message. */
  message: TaskMessage;
  /** The registered task. */
  task: Task;
  /** Where it came from. */
  delivery: Delivery;
}

/** What to do with one delivery. */
export type Triage =
  | { kind: "run"; request: Request }
  | { kind: "later"; request: Request; eta: Date }
  | { kind: "expired"; request: Request }
  | {
    kind: "reject";
    error: DecodeError | TaskNotRegisteredError;
    /** Task id when known (a FAILURE result is stored for it). */
    taskId?: string;
    /** The decoded message when it decoded. */
    message?: TaskMessage;
  };

/**
 * Classifies one delivery.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { triage } from "./request.ts";
 * const delivery = { message: null, decodeError: undefined, queue: "q", raw: "x", redelivered: false,
 *   ack: async () => {}, requeue: async () => {}, deadLetter: async () => {} };
 * assert.equal(triage(delivery, new Map(), new Date()).kind, "reject");
 * ```
 */
export function triage(delivery: Delivery, tasks: ReadonlyMap<string, Task>, now: Date): Triage {
  if (!delivery.message) {
    return {
      kind: "reject",
      error: delivery.decodeError ?? new DecodeError("Cannot decode message", delivery.raw),
    };
  }
  let message: TaskMessage;
  try {
    message = decodeTaskMessage(delivery.message);
  } catch (err) {
    if (err instanceof InvalidTaskError) return { kind: "reject", error: err, taskId: err.taskId };
    if (err instanceof DecodeError) return { kind: "reject", error: err };
    throw err;
  }
  const task = tasks.get(message.task);
  if (!task) {
    return {
      kind: "reject",
      error: new TaskNotRegisteredError(message.task),
      taskId: message.id,
      message,
    };
  }
  const request: Request = { message, task, delivery };
  if (message.expires && message.expires.getTime() <= now.getTime()) {
    return { kind: "expired", request };
  }
  if (message.eta && message.eta.getTime() > now.getTime()) {
    return { kind: "later", request, eta: message.eta };
  }
  return { kind: "run", request };
}
