/**
 * Signature options: the camelCase options a JS caller gives (`.set({ queue, countdown })`)
 * and the snake_case `apply_async` options Celery stores in a signature's `options` and sends
 * on the wire (`{"queue": "q", "countdown": 5, "task_id": "…"}`), both ways. Pure.
 *
 * Options are kept under Celery's names inside a signature, so a signature that came from
 * Python (in a message's `embed`) keeps every option, known or not, when it is sent on.
 *
 * @module
 */

import type { SendOptions } from "../app.ts";
import type { SignatureDict, TaskEmbed } from "../protocol/task.ts";
import { formatAwareIso, parseIso } from "../protocol/time.ts";

/** Options of a signature, as in Celery's `apply_async` (seconds for time spans). */
export interface SignatureOptions {
  /** Task id to use (a frozen signature has one). @default a new UUID when sent */
  taskId?: string;
  /** Queue to send to. @default the task's queue, else the app's default queue */
  queue?: string;
  /** Run no sooner than this many seconds after it is sent. @default none */
  countdown?: number;
  /** Run no sooner than this time. @default none */
  eta?: Date | string;
  /**
   * Revoke when not started in time: seconds after it is sent, or a time. Prefer seconds: a
   * Python worker that applies a signature whose `expires` is a time string fails (Celery
   * 5.2 compares it with 0). @default none
   */
  expires?: number | Date | string;
  /** Priority 0..9. @default the task's priority, else 0 */
  priority?: number;
  /** Display name. @default none */
  shadow?: string;
  /** Do not store the result. @default the task's setting, else false */
  ignoreResult?: boolean;
  /** Hard time limit in seconds. @default the task's */
  timeLimit?: number;
  /** Soft time limit in seconds. @default the task's */
  softTimeLimit?: number;
  /** Extra message headers. @default none */
  headers?: Record<string, unknown>;
  /** `reply_to` property (for `rpc://` results). @default none */
  replyTo?: string;
  /** Workflow root id. @default the sending task's root, else the task's own id */
  rootId?: string;
  /** Parent task id. @default the sending task, if sent from inside one */
  parentId?: string;
  /** Group id (set by `group` and `chord`). @default none */
  groupId?: string;
  /** Position in a chord header (set by `chord`). @default none */
  groupIndex?: number;
  /** Any other Celery `apply_async` option, under its Celery name, is kept as given. */
  [celeryName: string]: unknown;
}

/** camelCase option names and their Celery names; others are kept as given. */
const WIRE_NAMES: Readonly<Record<string, string>> = {
  taskId: "task_id",
  ignoreResult: "ignore_result",
  timeLimit: "time_limit",
  softTimeLimit: "soft_time_limit",
  replyTo: "reply_to",
  rootId: "root_id",
  parentId: "parent_id",
  groupId: "group_id",
  groupIndex: "group_index",
  linkError: "link_error",
  routingKey: "routing_key",
  addToParent: "add_to_parent",
};

/**
 * Turns caller options into Celery's names and JSON values: `taskId` → `task_id`, a `Date`
 * `eta`/`expires` → an aware ISO string (as kombu writes a datetime), `undefined` dropped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toWireOptions } from "./options.ts";
 * assert.deepEqual(toWireOptions({ queue: "q", taskId: "t1", countdown: 5, timeLimit: undefined }),
 *   { queue: "q", task_id: "t1", countdown: 5 });
 * ```
 */
export function toWireOptions(options: SignatureOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    out[WIRE_NAMES[key] ?? key] = value instanceof Date ? formatAwareIso(value) : value;
  }
  return out;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

function num(value: unknown): number | undefined {
  if (typeof value === "bigint") return Number(value);
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function time(value: unknown, name: string): Date | undefined {
  if (value instanceof Date) return value;
  if (typeof value !== "string" || !value) return undefined;
  const parsed = parseIso(value);
  if (!parsed) {
    throw new TypeError(
      `Cannot read signature option '${name}': ${JSON.stringify(value)} is not an ISO-8601 time`,
    );
  }
  return parsed;
}

/**
 * Adds `link` callbacks and `linkError` errbacks (signatures or their dicts, one or a list)
 * to a message's embed, after any it has: Celery's `apply_async(link=…, link_error=…)`.
 *
 * @throws {TypeError} When a link is not a signature.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { embedWithLinks } from "./options.ts";
 * const cb = { task: "tasks.log", args: [], kwargs: {}, options: {}, subtask_type: null, immutable: false };
 * assert.deepEqual(embedWithLinks(undefined, cb, undefined), { callbacks: [cb] });
 * assert.equal(embedWithLinks(undefined, undefined, undefined), undefined);
 * ```
 */
export function embedWithLinks(
  embed: Partial<TaskEmbed> | undefined,
  link: unknown,
  linkError: unknown,
): Partial<TaskEmbed> | undefined {
  const callbacks = signatureList(link, "link");
  const errbacks = signatureList(linkError, "linkError");
  if (!callbacks && !errbacks) return embed;
  const out: Partial<TaskEmbed> = { ...embed };
  if (callbacks) out.callbacks = [...(embed?.callbacks ?? []), ...callbacks];
  if (errbacks) out.errbacks = [...(embed?.errbacks ?? []), ...errbacks];
  return out;
}

/** A `link`/`link_error` value (one signature or a list) as a list of signature dicts. */
function signatureList(value: unknown, name: string): SignatureDict[] | null {
  if (value === undefined || value === null) return null;
  const list = Array.isArray(value) ? value : [value];
  if (!list.length) return null;
  return list.map((item) => signatureDictOf(item, name));
}

function signatureDictOf(value: unknown, name: string): SignatureDict {
  const dict = toJsonValue(value);
  if (
    dict === null || typeof dict !== "object" || Array.isArray(dict) ||
    typeof (dict as SignatureDict).task !== "string"
  ) {
    throw new TypeError(
      `Cannot read signature option '${name}': ${JSON.stringify(dict)} is not a signature`,
    );
  }
  return dict as SignatureDict;
}

/** Plain JSON form: objects with `toJSON` (signatures) are turned into their dicts. */
function toJsonValue(value: unknown): unknown {
  if (value !== null && typeof value === "object") {
    const withJson = value as { toJSON?: () => unknown };
    if (typeof withJson.toJSON === "function" && !(value instanceof Date)) {
      return withJson.toJSON();
    }
  }
  return value;
}

/**
 * What to send for a signature with these (Celery-named) options: `task_id` → `taskId`,
 * `group_id`/`group_index` → the `group`/`group_index` headers, `link`/`link_error`/`chain`/
 * `chord` → the message's `embed`, `time_limit`/`soft_time_limit` → `timeLimit`,
 * `routing_key` → the queue when no `queue` is given. Options that mean nothing to a
 * celeriac producer (`exchange`, `serializer`, `compression`, …) are ignored.
 *
 * @throws {TypeError} When `eta`/`expires` is a string that is not an ISO time, or
 *   `link`/`link_error`/`chain`/`chord` holds something that is not a signature.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sendOptionsFromWire } from "./options.ts";
 * const send = sendOptionsFromWire({ task_id: "t1", group_id: "g1", group_index: 0, queue: "q" });
 * assert.deepEqual([send.taskId, send.group, send.groupIndex, send.queue], ["t1", "g1", 0, "q"]);
 * ```
 */
export function sendOptionsFromWire(options: Record<string, unknown>): SendOptions {
  const send: SendOptions = {};
  const taskId = str(options.task_id);
  if (taskId) send.taskId = taskId;
  const queue = str(options.queue) ?? str(options.routing_key);
  if (queue) send.queue = queue;
  const countdown = num(options.countdown);
  if (countdown !== undefined) send.countdown = countdown;
  const eta = time(options.eta, "eta");
  if (eta) send.eta = eta;
  const expires = num(options.expires) ?? time(options.expires, "expires");
  if (expires !== undefined) send.expires = expires;
  const priority = num(options.priority);
  if (priority !== undefined) send.priority = priority;
  const shadow = str(options.shadow);
  if (shadow) send.shadow = shadow;
  if (typeof options.ignore_result === "boolean") send.ignoreResult = options.ignore_result;
  const hard = num(options.time_limit);
  const soft = num(options.soft_time_limit);
  if (hard !== undefined || soft !== undefined) send.timeLimit = [hard ?? null, soft ?? null];
  if (options.headers && typeof options.headers === "object" && !Array.isArray(options.headers)) {
    send.headers = options.headers as Record<string, unknown>;
  }
  const replyTo = str(options.reply_to);
  if (replyTo) send.replyTo = replyTo;
  const rootId = str(options.root_id);
  if (rootId) send.rootId = rootId;
  const parentId = str(options.parent_id);
  if (parentId) send.parentId = parentId;
  const group = str(options.group_id);
  if (group) send.group = group;
  const groupIndex = num(options.group_index);
  if (groupIndex !== undefined) send.groupIndex = groupIndex;
  const retries = num(options.retries);
  if (retries !== undefined) send.retries = retries;
  if (options.add_to_parent === false) send.addToParent = false;
  const embed: Partial<TaskEmbed> = {};
  const callbacks = signatureList(options.link, "link");
  if (callbacks) embed.callbacks = callbacks;
  const errbacks = signatureList(options.link_error, "link_error");
  if (errbacks) embed.errbacks = errbacks;
  if (Array.isArray(options.chain)) {
    embed.chain = options.chain.map((step) => signatureDictOf(step, "chain"));
  }
  if (options.chord !== undefined && options.chord !== null) {
    embed.chord = signatureDictOf(options.chord, "chord");
  }
  if (Object.keys(embed).length) send.embed = embed;
  return send;
}
