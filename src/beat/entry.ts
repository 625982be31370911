/**
 * Beat entries: what to send (task name, args, kwargs, send options) and when (a schedule).
 * A beat schedule is written like Celery's `beat_schedule`, a record keyed by entry name, or
 * as a list of entries that carry their `name`:
 *
 * ```ts ignore
 * export const beatSchedule = {
 *   "add-every-30s": { task: "tasks.add", schedule: 30, args: [2, 3] },
 *   "nightly-report": {
 *     task: "reports.nightly",
 *     schedule: crontab({ minute: 0, hour: 4 }, { timezone: "Europe/Berlin" }),
 *     options: { queue: "reports", expires: 3600, priority: 5 },
 *   },
 * };
 * ```
 *
 * {@linkcode normalizeBeatSchedule} validates it up front, so a typo fails at start-up with a
 * message naming the entry and the field, not at 04:00.
 *
 * @module
 */

import type { SendOptions } from "../app.ts";
import { type Schedule, type ScheduleLike, toSchedule } from "./schedule.ts";

/** The send options a beat entry may set (Celery's entry `options`). */
export type BeatSendOptions = Pick<SendOptions, "queue" | "expires" | "priority" | "headers">;

/** One entry as written in a beat schedule. */
export interface BeatEntryInput {
  /** Entry name (unique); taken from the record key when the schedule is a record. */
  name?: string;
  /** Task name to send; it need not be registered in this process. */
  task: string;
  /** When: seconds (interval), a 5-field cron string, a `Date`, or every()/crontab()/at(). */
  schedule: ScheduleLike;
  /** Positional arguments. @default [] */
  args?: unknown[];
  /** Keyword arguments. @default {} */
  kwargs?: Record<string, unknown>;
  /** Send options: `queue`, `expires` (seconds after sending, or a `Date`), `priority` 0–9, `headers`. */
  options?: BeatSendOptions;
}

/** A beat schedule: a record keyed by entry name (Celery's form) or a list of named entries. */
export type BeatScheduleInput =
  | Readonly<Record<string, Omit<BeatEntryInput, "name"> & { name?: string }>>
  | readonly BeatEntryInput[];

/** A validated entry. */
export interface BeatEntry {
  /** Entry name. */
  readonly name: string;
  /** Task name. */
  readonly task: string;
  /** The schedule. */
  readonly schedule: Schedule;
  /** Positional arguments. */
  readonly args: readonly unknown[];
  /** Keyword arguments. */
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** Send options. */
  readonly options: Readonly<BeatSendOptions>;
}

const OPTION_KEYS = new Set(["queue", "expires", "priority", "headers"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function checkOptions(name: string, options: unknown): BeatSendOptions {
  if (options === undefined) return {};
  if (!isPlainObject(options)) {
    throw new TypeError(`Cannot use beat entry "${name}": options must be an object`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) {
      throw new TypeError(
        `Cannot use beat entry "${name}": unknown option "${key}" (use queue, expires, priority, headers)`,
      );
    }
  }
  const { queue, expires, priority, headers } = options as BeatSendOptions;
  if (queue !== undefined && (typeof queue !== "string" || !queue)) {
    throw new TypeError(
      `Cannot use beat entry "${name}": options.queue must be a non-empty string`,
    );
  }
  if (
    expires !== undefined &&
    !(expires instanceof Date ? Number.isFinite(expires.getTime()) : expires > 0)
  ) {
    throw new RangeError(
      `Cannot use beat entry "${name}": options.expires must be seconds > 0 or a Date, got ${expires}`,
    );
  }
  if (
    priority !== undefined &&
    !(Number.isInteger(priority) && priority >= 0 && priority <= 9)
  ) {
    throw new RangeError(
      `Cannot use beat entry "${name}": options.priority must be an integer 0-9, got ${priority}`,
    );
  }
  if (headers !== undefined && !isPlainObject(headers)) {
    throw new TypeError(`Cannot use beat entry "${name}": options.headers must be an object`);
  }
  const out: BeatSendOptions = {};
  if (queue !== undefined) out.queue = queue;
  if (expires !== undefined) out.expires = expires;
  if (priority !== undefined) out.priority = priority;
  if (headers !== undefined) out.headers = { ...headers };
  return out;
}

function normalizeEntry(name: string, input: unknown): BeatEntry {
  if (typeof name !== "string" || !name) {
    throw new TypeError("Cannot use beat entry: its name must be a non-empty string");
  }
  if (!isPlainObject(input)) {
    throw new TypeError(`Cannot use beat entry "${name}": it must be an object`);
  }
  const { task, schedule, args, kwargs, options } = input as unknown as BeatEntryInput;
  if (typeof task !== "string" || !task) {
    throw new TypeError(`Cannot use beat entry "${name}": task must be a non-empty task name`);
  }
  if (schedule === undefined) {
    throw new TypeError(`Cannot use beat entry "${name}": schedule is required`);
  }
  let parsed: Schedule;
  try {
    parsed = toSchedule(schedule);
  } catch (err) {
    const e = err as Error;
    const Ctor = e instanceof RangeError ? RangeError : TypeError;
    throw new Ctor(`Cannot use beat entry "${name}": ${e.message}`, { cause: err });
  }
  if (args !== undefined && !Array.isArray(args)) {
    throw new TypeError(`Cannot use beat entry "${name}": args must be an array`);
  }
  if (kwargs !== undefined && !isPlainObject(kwargs)) {
    throw new TypeError(`Cannot use beat entry "${name}": kwargs must be an object`);
  }
  return Object.freeze({
    name,
    task,
    schedule: parsed,
    args: Object.freeze([...(args ?? [])]),
    kwargs: Object.freeze({ ...(kwargs ?? {}) }),
    options: Object.freeze(checkOptions(name, options)),
  });
}

/**
 * Validates a beat schedule and returns its entries, in the order written.
 *
 * @throws {TypeError} For a missing or mistyped field, an unknown option, or a duplicate name.
 * @throws {RangeError} For a bad value (interval ≤ 0, bad crontab field, priority > 9).
 *
 * @example Celery's record form and the list form give the same entries
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeBeatSchedule } from "./entry.ts";
 * import { crontab } from "./schedule.ts";
 * const entries = normalizeBeatSchedule({
 *   "add-every-30s": { task: "tasks.add", schedule: 30, args: [2, 3] },
 *   "nightly": { task: "reports.nightly", schedule: crontab({ minute: 0, hour: 4 }), options: { queue: "reports" } },
 * });
 * assert.deepEqual(entries.map((e) => e.name), ["add-every-30s", "nightly"]);
 * assert.equal(entries[0]!.schedule.kind, "interval");
 * assert.throws(() => normalizeBeatSchedule([{ name: "x", task: "t", schedule: 0 }]), RangeError);
 * ```
 */
export function normalizeBeatSchedule(input: BeatScheduleInput | undefined | null): BeatEntry[] {
  if (input === undefined || input === null) return [];
  const pairs: [string, unknown][] = Array.isArray(input)
    ? input.map((e: BeatEntryInput) => [e?.name as string, e])
    : isPlainObject(input)
    ? Object.entries(input).map(([key, value]) => {
      const named = (value as { name?: unknown })?.name;
      if (named !== undefined && named !== key) {
        throw new TypeError(
          `Cannot use beat entry "${key}": its name field "${String(named)}" differs from its key`,
        );
      }
      return [key, value];
    })
    : (() => {
      throw new TypeError("Cannot use beat schedule: it must be a record of entries or a list");
    })();
  const seen = new Set<string>();
  return pairs.map(([name, value]) => {
    const entry = normalizeEntry(name, value);
    if (seen.has(entry.name)) {
      throw new TypeError(`Cannot use beat entry "${entry.name}": the name is used twice`);
    }
    seen.add(entry.name);
    return entry;
  });
}
