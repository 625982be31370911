/**
 * Celery task message protocol v2: {@linkcode encodeTaskMessage} builds the headers,
 * properties and `[args, kwargs, embed]` body a Python Celery 5.2 producer sends;
 * {@linkcode decodeTaskMessage} reads one back and checks every rule a worker relies on.
 * Pure: no clock, no I/O (the current time is an argument).
 *
 * @module
 */

import { DecodeError, InvalidTaskError } from "../errors.ts";
import {
  decodeJsonBody,
  encodeJsonBody,
  JSON_CONTENT_TYPE,
  type TransportMessage,
} from "./message.ts";
import { reprArgs, reprKwargs } from "./repr.ts";
import { formatAwareIso, parseIso } from "./time.ts";

/** A canvas signature as it travels in a message (a plain JSON object). */
export interface SignatureDict {
  /** Task name. */
  task: string;
  /** Positional arguments. */
  args?: unknown[];
  /** Keyword arguments. */
  kwargs?: Record<string, unknown>;
  /** `apply_async` options (`task_id`, `queue`, …). */
  options?: Record<string, unknown>;
  /** `null`, or `chain`/`group`/`chord`/… for composite signatures. */
  subtask_type?: string | null;
  /** An immutable signature does not receive its parent's result. */
  immutable?: boolean;
  /** Any other field is kept. */
  [key: string]: unknown;
}

/** The third body element: workflow links. */
export interface TaskEmbed {
  /** Signatures applied with the result on success. */
  callbacks: SignatureDict[] | null;
  /** Signatures applied on failure. */
  errbacks: SignatureDict[] | null;
  /** Remaining chain steps, reversed (last = next). */
  chain: SignatureDict[] | null;
  /** Chord body, set on chord header members. */
  chord: SignatureDict | null;
}

/** What a producer wants sent; everything but `id`, `task` and `origin` is optional. */
export interface TaskCall {
  /** Task id (a UUID). */
  id: string;
  /** Registered task name. */
  task: string;
  /** Positional arguments. @default [] */
  args?: unknown[];
  /** Keyword arguments. @default {} */
  kwargs?: Record<string, unknown>;
  /** Do not run before this time. @default null */
  eta?: Date | null;
  /** Revoke when not started by this time. @default null */
  expires?: Date | null;
  /** Retry count. @default 0 */
  retries?: number;
  /** `[hard, soft]` time limits in seconds. @default [null, null] */
  timelimit?: [number | null, number | null];
  /** First task of the workflow; empty means `id`, as in Celery. @default id */
  rootId?: string | null;
  /** Task that sent this one. @default null */
  parentId?: string | null;
  /** Group id. @default null */
  group?: string | null;
  /** Position in a chord header. @default null */
  groupIndex?: number | null;
  /** Display name instead of `task`. @default null */
  shadow?: string | null;
  /** Producer node name (`gen<pid>@<host>`). */
  origin: string;
  /** Do not store the result. @default false */
  ignoreResult?: boolean;
  /** Reply queue for the `rpc://` backend. @default "" */
  replyTo?: string;
  /** Message priority 0..9. @default 0 */
  priority?: number;
  /** Workflow links. @default all null */
  embed?: Partial<TaskEmbed>;
  /**
   * Extra headers (from `applyAsync({ headers })`), written after the 16 standard ones as
   * Celery does; they never replace a standard one.
   */
  headers?: Record<string, unknown>;
}

/** A decoded task message, ready for a worker. */
export interface TaskMessage {
  /** Task id. */
  id: string;
  /** Task name. */
  task: string;
  /** Name for logs and events (`shadow` when set). */
  displayName: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** Workflow links. */
  embed: TaskEmbed;
  /** Parsed `eta`, or null. */
  eta: Date | null;
  /** Parsed `expires`, or null. */
  expires: Date | null;
  /** Retry count. */
  retries: number;
  /** `[hard, soft]` seconds. */
  timelimit: [number | null, number | null];
  /** Workflow root. */
  rootId: string | null;
  /** Parent task. */
  parentId: string | null;
  /** Group id. */
  group: string | null;
  /** Chord header position. */
  groupIndex: number | null;
  /** Producer node. */
  origin: string | null;
  /** Client asked not to store the result. */
  ignoreResult: boolean;
  /** `repr` of args as sent. */
  argsrepr: string;
  /** `repr` of kwargs as sent. */
  kwargsrepr: string;
  /** `reply_to` property. */
  replyTo: string | null;
  /** `correlation_id` property. */
  correlationId: string | null;
  /** Message priority. */
  priority: number;
  /** Every header as received, unknown ones included. */
  headers: Record<string, unknown>;
}

const EMPTY_EMBED: TaskEmbed = { callbacks: null, errbacks: null, chain: null, chord: null };

/**
 * Builds a protocol v2 task message exactly as Python Celery 5.2 does: the 16 headers in
 * Celery's order, `correlation_id` = id, a 3-element body, `expiration` (relative ms) when
 * `expires` is set.
 *
 * @param call What to send.
 * @param now The current time (only used for the `expiration` property).
 * @returns The message, with no delivery info yet.
 * @throws {TypeError} When `id`, `task` or the argument shapes are wrong.
 * @throws {RangeError} When `eta` or `expires` is an invalid date.
 *
 * @example Encode tasks.add(2, 3)
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeTaskMessage } from "./task.ts";
 * const msg = encodeTaskMessage({ id: "t1", task: "tasks.add", args: [2, 3], origin: "gen1@host" }, new Date());
 * assert.equal(msg.headers.argsrepr, "(2, 3)");
 * assert.equal(msg.properties.correlation_id, "t1");
 * ```
 */
export function encodeTaskMessage(call: TaskCall, now: Date): TransportMessage {
  if (typeof call.id !== "string" || !call.id) {
    throw new TypeError("Cannot encode task: 'id' must be a non-empty string");
  }
  if (typeof call.task !== "string" || !call.task) {
    throw new TypeError("Cannot encode task: 'task' must be a non-empty string");
  }
  const args = call.args ?? [];
  const kwargs = call.kwargs ?? {};
  if (!Array.isArray(args)) {
    throw new TypeError(`Cannot encode task "${call.task}": args must be an array`);
  }
  if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs)) {
    throw new TypeError(`Cannot encode task "${call.task}": kwargs must be an object`);
  }
  const headers: Record<string, unknown> = {
    lang: "py",
    task: call.task,
    id: call.id,
    shadow: call.shadow ?? null,
    eta: call.eta ? formatAwareIso(call.eta) : null,
    expires: call.expires ? formatAwareIso(call.expires) : null,
    group: call.group ?? null,
    group_index: call.groupIndex ?? null,
    retries: call.retries ?? 0,
    timelimit: call.timelimit ?? [null, null],
    root_id: call.rootId || call.id,
    parent_id: call.parentId ?? null,
    argsrepr: reprArgs(args),
    kwargsrepr: reprKwargs(kwargs),
    origin: call.origin,
    ignore_result: call.ignoreResult ?? false,
  };
  // Celery appends apply_async(headers=...) after its own 16 (dict.update order).
  if (call.headers) {
    for (const [key, value] of Object.entries(call.headers)) {
      if (!(key in headers)) headers[key] = value;
    }
  }
  // Python's order: correlation_id, reply_to, delivery_mode, [expiration], priority.
  const properties: Record<string, unknown> = {
    correlation_id: call.id,
    reply_to: call.replyTo ?? "",
    delivery_mode: 2,
  };
  if (call.expires) {
    properties.expiration = String(Math.max(0, call.expires.getTime() - now.getTime()));
  }
  properties.priority = call.priority ?? 0;
  const embed: TaskEmbed = { ...EMPTY_EMBED, ...call.embed };
  return {
    headers,
    properties,
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: encodeJsonBody([args, kwargs, embed]),
  };
}

function optionalString(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function readTime(
  headers: Record<string, unknown>,
  name: "eta" | "expires",
  raw: Uint8Array,
  id: string,
): Date | null {
  const value = headers[name];
  if (value === null || value === undefined || value === "") return null;
  // Unix seconds (not what Python sends; accepted), rounded to the millisecond.
  if (typeof value === "number" && Number.isFinite(value)) {
    return new Date(Math.round(value * 1000));
  }
  const parsed = typeof value === "string" ? parseIso(value) : undefined;
  if (!parsed) {
    throw new InvalidTaskError(
      `Cannot read header '${name}' of task "${id}": ${
        JSON.stringify(value)
      } is not an ISO-8601 time`,
      raw,
      id,
    );
  }
  return parsed;
}

function readTimelimit(value: unknown): [number | null, number | null] {
  if (!Array.isArray(value)) return [null, null];
  const pick = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  return [pick(value[0]), pick(value[1])];
}

/**
 * Decodes and validates a protocol v2 task message.
 *
 * @throws {InvalidTaskError} When the `task` or `id` header is missing (protocol v1 is not
 *   accepted), the body is not `[args, kwargs, embed]`, or `eta`/`expires` cannot be parsed.
 * @throws {DecodeError} When the body cannot be decompressed or parsed.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeTaskMessage, encodeTaskMessage } from "./task.ts";
 * const msg = encodeTaskMessage({ id: "t1", task: "tasks.add", args: [2, 3], origin: "gen1@h" }, new Date());
 * assert.deepEqual(decodeTaskMessage(msg).args, [2, 3]);
 * ```
 */
export function decodeTaskMessage(message: TransportMessage): TaskMessage {
  const headers = message.headers ?? {};
  const raw = message.body;
  const id = headers["id"];
  const task = headers["task"];
  if (typeof task !== "string" || !task) {
    throw new InvalidTaskError(
      "Cannot decode task message: header 'task' is missing (protocol v1 messages are not accepted)",
      raw,
      typeof id === "string" ? id : undefined,
    );
  }
  if (typeof id !== "string" || !id) {
    throw new InvalidTaskError(`Cannot decode task message "${task}": header 'id' is missing`, raw);
  }
  let body: unknown;
  try {
    body = decodeJsonBody(message);
  } catch (err) {
    if (err instanceof DecodeError) {
      throw new InvalidTaskError(`${err.message} (task "${task}" id "${id}")`, raw, id, {
        cause: err,
      });
    }
    throw err;
  }
  if (!Array.isArray(body) || body.length !== 3) {
    throw new InvalidTaskError(
      `Cannot decode task message "${id}": body must be [args, kwargs, embed]`,
      raw,
      id,
    );
  }
  const [args, kwargs, embedRaw] = body;
  if (
    !Array.isArray(args) || !isPlainObject(kwargs) ||
    !(embedRaw === null || isPlainObject(embedRaw))
  ) {
    throw new InvalidTaskError(
      `Cannot decode task message "${id}": body must be [array, object, object]`,
      raw,
      id,
    );
  }
  const embed: TaskEmbed = { ...EMPTY_EMBED, ...(embedRaw as Partial<TaskEmbed> | null) };
  const props = message.properties ?? {};
  const shadow = optionalString(headers["shadow"]);
  const retries = headers["retries"];
  const groupIndex = headers["group_index"];
  const priority = props["priority"];
  return {
    id,
    task,
    displayName: shadow || task,
    args,
    kwargs,
    embed,
    eta: readTime(headers, "eta", raw, id),
    expires: readTime(headers, "expires", raw, id),
    retries: typeof retries === "number" ? retries : 0,
    timelimit: readTimelimit(headers["timelimit"]),
    rootId: optionalString(headers["root_id"]),
    parentId: optionalString(headers["parent_id"]),
    group: optionalString(headers["group"]),
    groupIndex: typeof groupIndex === "number" ? groupIndex : null,
    origin: optionalString(headers["origin"]),
    ignoreResult: headers["ignore_result"] === true,
    argsrepr: optionalString(headers["argsrepr"]) ?? reprArgs(args),
    kwargsrepr: optionalString(headers["kwargsrepr"]) ?? reprKwargs(kwargs),
    replyTo: optionalString(props["reply_to"]),
    correlationId: optionalString(props["correlation_id"]),
    priority: typeof priority === "number" ? priority : 0,
    headers,
  };
}
