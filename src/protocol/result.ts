/**
 * Result records as Celery's key/value backends store them
 * (`celery-task-meta-<id>`): field order, states and time format as Python writes them.
 *
 * @module
 */

import { DecodeError } from "../errors.ts";
import type { SerializedException } from "./exception.ts";
import { parseJson, stringifyJson } from "./json.ts";
import { formatNaiveIso } from "./time.ts";

/** Task states, as Celery names them. */
export const States = {
  /** Unknown or waiting (no record stored). */
  PENDING: "PENDING",
  /** A worker received it. */
  RECEIVED: "RECEIVED",
  /** A worker started it (only with track-started). */
  STARTED: "STARTED",
  /** It returned a value. */
  SUCCESS: "SUCCESS",
  /** It raised, or could not be run. */
  FAILURE: "FAILURE",
  /** It asked to be retried. */
  RETRY: "RETRY",
  /** It was revoked or expired. */
  REVOKED: "REVOKED",
  /** It was rejected. */
  REJECTED: "REJECTED",
} as const;

/** States after which a result never changes. */
export const READY_STATES: ReadonlySet<string> = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
/** States whose `result` is a serialized exception. */
export const EXCEPTION_STATES: ReadonlySet<string> = new Set(["FAILURE", "RETRY", "REVOKED"]);

/** One stored result record (`celery-task-meta-<id>`), in Celery's snake_case. */
export interface ResultMeta {
  /** The state. */
  status: string;
  /** Return value, serialized exception, or state metadata. */
  result: unknown;
  /** Traceback text or null. */
  traceback: string | null;
  /** Result tuples of tasks sent from inside this task. */
  children: unknown[];
  /** Naive UTC ISO time for ready states, else null. */
  date_done: string | null;
  /** Group id when the task belonged to a group. */
  group_id?: string;
  /** Parent task id when there was one. */
  parent_id?: string;
  /** Extended fields (`result_extended`), when enabled. */
  name?: string;
  /** Extended: args. */
  args?: unknown[];
  /** Extended: kwargs. */
  kwargs?: Record<string, unknown>;
  /** Extended: worker node name. */
  worker?: string;
  /** Extended: retries. */
  retries?: number;
  /** Extended: queue (delivery routing key). */
  queue?: string;
  /** The task id, always last. */
  task_id: string;
}

/** What a worker knows when it stores a result. */
export interface ResultInput {
  /** Task id. */
  taskId: string;
  /** New state. */
  status: string;
  /** Value or serialized exception. */
  result: unknown;
  /** Traceback text. */
  traceback?: string | null;
  /** Group id of the request. */
  groupId?: string | null;
  /** Parent id of the request. */
  parentId?: string | null;
  /** Child result tuples. */
  children?: unknown[];
  /** Extended fields, written only when given. */
  extended?: {
    name: string;
    args: unknown[];
    kwargs: Record<string, unknown>;
    worker: string;
    retries: number;
    queue: string;
  };
}

/**
 * Builds a result record with Celery's field order: `status, result, traceback, children,
 * date_done`, then `group_id` and `parent_id` when set, the extended fields
 * (`name, args, kwargs, worker, retries, queue`) when given, and `task_id` last.
 * `date_done` is set for ready states only.
 *
 * @param input What happened.
 * @param now The current time (for `date_done`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildResultMeta } from "./result.ts";
 * const meta = buildResultMeta({ taskId: "t1", status: "SUCCESS", result: 5 }, new Date(0));
 * assert.deepEqual(Object.keys(meta), ["status", "result", "traceback", "children", "date_done", "task_id"]);
 * ```
 */
export function buildResultMeta(input: ResultInput, now: Date): ResultMeta {
  const meta: ResultMeta = {
    status: input.status,
    result: input.result ?? null,
    traceback: input.traceback ?? null,
    children: input.children ?? [],
    date_done: READY_STATES.has(input.status) ? formatNaiveIso(now) : null,
  } as ResultMeta;
  if (input.groupId) meta.group_id = input.groupId;
  if (input.parentId) meta.parent_id = input.parentId;
  if (input.extended) {
    // Celery's order, whatever the order of the caller's object.
    const { name, args, kwargs, worker, retries, queue } = input.extended;
    Object.assign(meta, { name, args, kwargs, worker, retries, queue });
  }
  meta.task_id = input.taskId;
  return meta;
}

/**
 * Serializes a result record (compact JSON; Python reads any JSON).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeResultMeta, decodeResultMeta } from "./result.ts";
 * const text = encodeResultMeta({ status: "SUCCESS", result: 1, traceback: null, children: [], date_done: null, task_id: "t" });
 * assert.equal(decodeResultMeta(text).result, 1);
 * ```
 */
export function encodeResultMeta(meta: ResultMeta): string {
  return stringifyJson(meta);
}

/**
 * Parses a stored result record.
 *
 * @throws {DecodeError} When the text is not a result record.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeResultMeta } from "./result.ts";
 * assert.equal(decodeResultMeta('{"status": "PENDING", "result": null, "task_id": "x"}').status, "PENDING");
 * ```
 */
export function decodeResultMeta(text: string): ResultMeta {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch (cause) {
    throw new DecodeError("Cannot parse result record as JSON", text, { cause });
  }
  if (
    value === null || typeof value !== "object" || typeof (value as ResultMeta).status !== "string"
  ) {
    throw new DecodeError("Cannot decode result record: it has no 'status'", text);
  }
  const meta = value as ResultMeta;
  meta.result ??= null;
  meta.traceback ??= null;
  meta.children ??= [];
  meta.date_done ??= null;
  return meta;
}

/** The Celery exception used for revoked and expired tasks. */
export function revokedException(
  reason: "revoked" | "expired" | "terminated",
): SerializedException {
  return { exc_type: "TaskRevokedError", exc_message: [reason], exc_module: "celery.exceptions" };
}
