/**
 * Schedule math for beat: pure functions of (schedule, last run, now). No I/O, no clock.
 *
 * Three kinds of schedule:
 *
 * 1. {@linkcode every}: an interval in seconds (Celery's `schedule(run_every)`; a number in a
 *    beat schedule means this). Due when `lastRunAt + every <= now`.
 * 2. {@linkcode crontab}: Celery's `crontab(minute, hour, day_of_week, day_of_month,
 *    month_of_year)`, evaluated in an IANA time zone. Where Celery differs from Vixie cron,
 *    Celery wins: day of month **and** day of week must both match, Sunday is 0 (7 is
 *    invalid), `*\/s` steps from the field's minimum (day of month `*\/2` = 1,3,5…), ranges
 *    `a-b` with `b < a` wrap around, no `L`, `#`, `?` or `W`. Fields are expanded here into
 *    sets; `npm:croner` then walks the calendar in the time zone (AND logic, Sunday = 0).
 * 3. {@linkcode at}: once, at a time.
 *
 * Daylight saving time (crontab only) follows Vixie cron, as croner does:
 *
 * - A **fixed-time** crontab (neither its minute nor its hour field uses `*` or a step, e.g.
 *   `minute=30, hour=2` or `minute=0, hour="2,14"`) runs once per matching local day: a time
 *   that does not exist (spring forward) runs at the first valid time after the gap, a time
 *   that happens twice (fall back) runs at its first occurrence only.
 * - Any other crontab (`minute="*\/15"`, `hour="*"`) is an interval in disguise: times in a gap
 *   are skipped (they do not exist) and a repeated time runs on both occurrences.
 *
 * Catch-up (see {@linkcode isDue}): however many runs were missed, an entry is due **once**,
 * for the latest missed slot, and the next one is the first slot after `now` (Celery's
 * behaviour: last_run_at moves to now).
 *
 * @module
 */

import { Cron } from "npm:croner@^11";

/** An interval schedule; build it with {@linkcode every}. */
export interface IntervalSchedule {
  /** Discriminant. */
  readonly kind: "interval";
  /** The interval in milliseconds (> 0). */
  readonly everyMs: number;
}

/** The fields of a crontab; each is a Celery cron field (string), a number or a list. */
export interface CrontabFields {
  /** Minutes 0–59. @default "*" */
  minute?: string | number | readonly number[];
  /** Hours 0–23. @default "*" */
  hour?: string | number | readonly number[];
  /** Days of week 0–6, Sunday = 0; names (`mon`, `Monday`) allowed. @default "*" */
  dayOfWeek?: string | number | readonly number[];
  /** Days of month 1–31. @default "*" */
  dayOfMonth?: string | number | readonly number[];
  /** Months 1–12 (numbers only, as in Celery). @default "*" */
  monthOfYear?: string | number | readonly number[];
}

/** A crontab schedule, fields expanded; build it with {@linkcode crontab}. */
export interface CrontabSchedule {
  /** Discriminant. */
  readonly kind: "crontab";
  /** Matching minutes, sorted. */
  readonly minute: readonly number[];
  /** Matching hours, sorted. */
  readonly hour: readonly number[];
  /** Matching days of week (Sunday = 0), sorted. */
  readonly dayOfWeek: readonly number[];
  /** Matching days of month, sorted. */
  readonly dayOfMonth: readonly number[];
  /** Matching months, sorted. */
  readonly monthOfYear: readonly number[];
  /** True when neither minute nor hour uses `*` or a step (see the DST rules above). */
  readonly fixedTime: boolean;
  /** IANA time zone; unset means the beat's (default UTC). */
  readonly timezone?: string;
  /** The fields as written, Celery's order: `minute hour day_of_week day_of_month month`. */
  readonly text: string;
}

/** A one-off schedule; build it with {@linkcode at}. */
export interface OneOffSchedule {
  /** Discriminant. */
  readonly kind: "at";
  /** When, in unix milliseconds. */
  readonly atMs: number;
}

/** Any schedule. */
export type Schedule = IntervalSchedule | CrontabSchedule | OneOffSchedule;

/**
 * What a schedule may be written as in a beat schedule: a {@linkcode Schedule}, a number of
 * seconds (interval), a 5-field cron string (`"m h dom mon dow"`, standard cron order) or a
 * `Date` (one-off).
 */
export type ScheduleLike = Schedule | number | string | Date;

/**
 * An interval schedule of `seconds` (fractions allowed).
 *
 * @throws {RangeError} When `seconds` is not a finite number > 0.
 *
 * @example Every 30 seconds
 * ```ts
 * import assert from "node:assert/strict";
 * import { every } from "./schedule.ts";
 * assert.equal(every(30).everyMs, 30_000);
 * ```
 */
export function every(seconds: number): IntervalSchedule {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds <= 0) {
    throw new RangeError(`Cannot use interval ${seconds}: it must be a number of seconds > 0`);
  }
  return Object.freeze({ kind: "interval", everyMs: Math.round(seconds * 1000) || 1 });
}

/**
 * A one-off schedule at `when` (a `Date`, unix milliseconds or an ISO 8601 string with offset).
 *
 * @throws {RangeError} When `when` is not a valid time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { at } from "./schedule.ts";
 * assert.equal(at("2030-01-01T00:00:00Z").atMs, Date.UTC(2030, 0, 1));
 * ```
 */
export function at(when: Date | number | string): OneOffSchedule {
  const ms = when instanceof Date
    ? when.getTime()
    : typeof when === "number"
    ? when
    : Date.parse(when);
  if (!Number.isFinite(ms)) {
    throw new RangeError(`Cannot use one-off time ${JSON.stringify(String(when))}: invalid date`);
  }
  return Object.freeze({ kind: "at", atMs: ms });
}

const WEEKDAYS: Record<string, number> = {
  sun: 0,
  mon: 1,
  tue: 2,
  wed: 3,
  thu: 4,
  fri: 5,
  sat: 6,
};

interface FieldInfo {
  name: string;
  min: number;
  count: number;
  names: boolean;
}

const FIELDS = {
  minute: { name: "minute", min: 0, count: 60, names: false },
  hour: { name: "hour", min: 0, count: 24, names: false },
  dayOfWeek: { name: "dayOfWeek", min: 0, count: 7, names: true },
  dayOfMonth: { name: "dayOfMonth", min: 1, count: 31, names: false },
  monthOfYear: { name: "monthOfYear", min: 1, count: 12, names: false },
} as const satisfies Record<keyof CrontabFields, FieldInfo>;

function fieldError(field: FieldInfo, spec: unknown, why: string): RangeError {
  return new RangeError(
    `Cannot parse crontab field ${field.name} ${JSON.stringify(spec)}: ${why}`,
  );
}

function checkValue(field: FieldInfo, spec: unknown, n: number): number {
  const max = field.min + field.count - 1;
  if (!Number.isInteger(n)) throw fieldError(field, spec, `${n} is not an integer`);
  if (n < field.min || n > max) {
    throw fieldError(field, spec, `${n} is out of range ${field.min}-${max}`);
  }
  return n;
}

function parseNumber(field: FieldInfo, spec: string, token: string): number {
  if (/^\d+$/.test(token)) return checkValue(field, spec, Number(token));
  if (field.names && /^[a-z]{3,}$/i.test(token)) {
    // Celery matches weekday names on their first three letters, case-insensitive.
    const day = WEEKDAYS[token.slice(0, 3).toLowerCase()];
    if (day !== undefined) return day;
  }
  throw fieldError(field, spec, `${JSON.stringify(token)} is not a number`);
}

function expandRange(field: FieldInfo, spec: string, from: string, to?: string): number[] {
  const a = parseNumber(field, spec, from);
  if (to === undefined) return [a];
  const b = parseNumber(field, spec, to);
  const out: number[] = [];
  if (b < a) {
    // Celery wraps around the field's end: hour "22-2" = 22,23,0,1,2.
    for (let i = a; i < field.min + field.count; i++) out.push(i);
    for (let i = field.min; i <= b; i++) out.push(i);
  } else {
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

function parseStep(field: FieldInfo, spec: string, step: string): number {
  if (!/^\d+$/.test(step) || Number(step) < 1) {
    throw fieldError(field, spec, `step ${JSON.stringify(step)} must be an integer >= 1`);
  }
  return Number(step);
}

function parsePart(field: FieldInfo, spec: string, part: string): number[] {
  let m: RegExpExecArray | null;
  if ((m = /^(\w+)-(\w+)\/(.*)$/.exec(part))) {
    const step = parseStep(field, spec, m[3]!);
    return expandRange(field, spec, m[1]!, m[2]!).filter((_, i) => i % step === 0);
  }
  if ((m = /^(\w+)-(\w+)$/.exec(part))) return expandRange(field, spec, m[1]!, m[2]!);
  if ((m = /^\*\/(.*)$/.exec(part))) {
    // `*/s` starts at the field's minimum (Celery): day of month */2 = 1,3,5,...
    const step = parseStep(field, spec, m[1]!);
    const out: number[] = [];
    for (let i = field.min; i < field.min + field.count; i += step) out.push(i);
    return out;
  }
  if (part === "*") {
    return expandRange(field, spec, String(field.min), String(field.min + field.count - 1));
  }
  if (part.includes("/")) {
    throw fieldError(field, spec, `a step needs "*" or a range before it, as in "*/5" or "1-9/2"`);
  }
  return expandRange(field, spec, part);
}

/** Expands one field into its sorted set of values and says whether it was "wild". */
function expandField(
  field: FieldInfo,
  spec: string | number | readonly number[] | undefined,
): { values: number[]; wild: boolean; text: string } {
  const value = spec ?? "*";
  let values: number[];
  let wild = false;
  if (typeof value === "number") {
    values = [checkValue(field, value, value)];
  } else if (typeof value === "string") {
    const parts = value.split(",").map((p) => p.trim());
    values = [];
    for (const part of parts) {
      if (!part) throw fieldError(field, value, "empty part");
      values.push(...parsePart(field, value, part));
    }
    wild = value.includes("*") || value.includes("/");
  } else if (Array.isArray(value)) {
    values = value.map((n) => checkValue(field, value, n));
  } else {
    throw new TypeError(
      `Cannot use crontab field ${field.name}: expected a string, a number or a list of numbers`,
    );
  }
  if (values.length === 0) throw fieldError(field, value, "it matches nothing");
  values = [...new Set(values)].sort((a, b) => a - b);
  const text = typeof value === "string"
    ? value.replaceAll(/\s+/g, "")
    : typeof value === "number"
    ? String(value)
    : values.join(",");
  return { values, wild, text };
}

/** Options of {@linkcode crontab}. */
export interface CrontabOptions {
  /** IANA time zone the fields are read in. @default the beat's time zone (UTC) */
  timezone?: string;
}

/**
 * Validates an IANA time zone name.
 *
 * @throws {RangeError} When the runtime does not know the zone.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTimeZone } from "./schedule.ts";
 * assert.equal(checkTimeZone("Europe/Berlin"), "Europe/Berlin");
 * assert.throws(() => checkTimeZone("Mars/Olympus"), RangeError);
 * ```
 */
export function checkTimeZone(timezone: string): string {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch {
    throw new RangeError(`Cannot use time zone ${JSON.stringify(timezone)}: unknown IANA zone`);
  }
  return timezone;
}

/**
 * A crontab schedule with Celery's semantics (see the module doc).
 *
 * `fields` is either Celery's keyword fields (`{ minute: "0", hour: "*\/3", dayOfWeek:
 * "mon-fri" }`, each defaulting to `*`) or a 5-field string in standard cron order
 * `"minute hour day-of-month month day-of-week"`, read with Celery's rules.
 *
 * @throws {RangeError} For a field that Celery would reject (out of range, bad step, `7` as
 *   a day of week, `L`/`#`/`?`), an unknown time zone, or fields that never match a real
 *   date (30 February).
 *
 * @example Every Monday at 07:30 in Berlin, and every 15 minutes
 * ```ts
 * import assert from "node:assert/strict";
 * import { crontab, nextRun } from "./schedule.ts";
 * const monday = crontab({ minute: 30, hour: 7, dayOfWeek: "mon" }, { timezone: "Europe/Berlin" });
 * // 2026-01-01 is a Thursday; the next Monday is the 5th, 07:30 CET = 06:30 UTC.
 * assert.equal(nextRun(monday, new Date("2026-01-01T00:00:00Z"))?.toISOString(), "2026-01-05T06:30:00.000Z");
 * const quarter = crontab("*\/15 * * * *");
 * assert.deepEqual(quarter.minute, [0, 15, 30, 45]);
 * ```
 */
export function crontab(
  fields: CrontabFields | string = {},
  options: CrontabOptions = {},
): CrontabSchedule {
  let f: CrontabFields;
  if (typeof fields === "string") {
    const parts = fields.trim().split(/\s+/);
    if (parts.length !== 5) {
      throw new RangeError(
        `Cannot parse crontab ${
          JSON.stringify(fields)
        }: expected 5 fields "minute hour day-of-month month day-of-week"`,
      );
    }
    f = {
      minute: parts[0],
      hour: parts[1],
      dayOfMonth: parts[2],
      monthOfYear: parts[3],
      dayOfWeek: parts[4],
    };
  } else if (fields && typeof fields === "object") {
    f = fields;
  } else {
    throw new TypeError("Cannot build crontab: fields must be an object or a 5-field string");
  }
  const minute = expandField(FIELDS.minute, f.minute);
  const hour = expandField(FIELDS.hour, f.hour);
  const dayOfWeek = expandField(FIELDS.dayOfWeek, f.dayOfWeek);
  const dayOfMonth = expandField(FIELDS.dayOfMonth, f.dayOfMonth);
  const monthOfYear = expandField(FIELDS.monthOfYear, f.monthOfYear);
  if (options.timezone !== undefined) checkTimeZone(options.timezone);
  const schedule: CrontabSchedule = Object.freeze({
    kind: "crontab",
    minute: Object.freeze(minute.values),
    hour: Object.freeze(hour.values),
    dayOfWeek: Object.freeze(dayOfWeek.values),
    dayOfMonth: Object.freeze(dayOfMonth.values),
    monthOfYear: Object.freeze(monthOfYear.values),
    fixedTime: !minute.wild && !hour.wild,
    ...(options.timezone !== undefined ? { timezone: options.timezone } : {}),
    text: [minute.text, hour.text, dayOfWeek.text, dayOfMonth.text, monthOfYear.text].join(" "),
  });
  if (!possibleDay(schedule)) {
    throw new RangeError(
      `Cannot use crontab "${schedule.text}": its day of month and month never meet (e.g. 30 February)`,
    );
  }
  return schedule;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Whether some (day of month, month) exists; weekdays then always meet within 28 years. */
function possibleDay(s: CrontabSchedule): boolean {
  return s.monthOfYear.some((m) => s.dayOfMonth.some((d) => d <= DAYS_IN_MONTH[m - 1]!));
}

/**
 * Turns what a beat schedule may hold into a {@linkcode Schedule}: numbers are seconds, strings
 * are 5-field crontabs, `Date`s are one-offs.
 *
 * @throws {TypeError} For any other value.
 * @throws {RangeError} For a bad value of the right type.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toSchedule } from "./schedule.ts";
 * assert.equal(toSchedule(10).kind, "interval");
 * assert.equal(toSchedule("0 4 * * *").kind, "crontab");
 * assert.equal(toSchedule(new Date(0)).kind, "at");
 * ```
 */
export function toSchedule(value: ScheduleLike): Schedule {
  if (typeof value === "number") return every(value);
  if (typeof value === "string") return crontab(value);
  if (value instanceof Date) return at(value);
  if (value && typeof value === "object") {
    switch ((value as Schedule).kind) {
      case "interval":
        return every((value as IntervalSchedule).everyMs / 1000);
      case "at":
        return at((value as OneOffSchedule).atMs);
      case "crontab": {
        const c = value as CrontabSchedule;
        if (Array.isArray(c.minute) && typeof c.fixedTime === "boolean") return c;
      }
    }
  }
  throw new TypeError(
    `Cannot use schedule ${
      String(value)
    }: expected seconds, a cron string, a Date, or every()/crontab()/at()`,
  );
}

const crons = new WeakMap<CrontabSchedule, Map<string, Cron>>();

function list(values: readonly number[], count: number): string {
  return values.length === count ? "*" : values.join(",");
}

/** The croner instance for a crontab in a zone (cached; croner objects are immutable here). */
function cronFor(schedule: CrontabSchedule, timezone: string): Cron {
  let byZone = crons.get(schedule);
  if (!byZone) crons.set(schedule, byZone = new Map());
  let cron = byZone.get(timezone);
  if (!cron) {
    // Seconds: "0" for fixed-time jobs; "*/60" (also only second 0) marks the others as
    // interval jobs for croner's DST handling with fixedTimeRule "no-wildcard".
    const pattern = [
      schedule.fixedTime ? "0" : "*/60",
      schedule.minute.join(","),
      schedule.hour.join(","),
      list(schedule.dayOfMonth, 31),
      list(schedule.monthOfYear, 12),
      list(schedule.dayOfWeek, 7),
    ].join(" ");
    cron = new Cron(pattern, {
      timezone,
      paused: true,
      mode: "6-part",
      domAndDow: true, // Celery: day of month AND day of week
      alternativeWeekdays: false, // Sunday = 0
      fixedTimeRule: "no-wildcard",
    });
    byZone.set(timezone, cron);
  }
  return cron;
}

function ms(value: Date | number): number {
  return value instanceof Date ? value.getTime() : value;
}

function zoneOf(schedule: CrontabSchedule, timezone: string | undefined): string {
  return schedule.timezone ?? timezone ?? "UTC";
}

/**
 * The first run strictly after `after`, or `null` when there is none (a one-off in the past).
 * For an interval, that is `after + every` (`after` taken as the last run).
 *
 * @param timezone Zone for a crontab that names none. @default "UTC"
 *
 * @example Daily 02:30 in Berlin across the spring-forward gap (runs at 03:00, once)
 * ```ts
 * import assert from "node:assert/strict";
 * import { crontab, nextRun } from "./schedule.ts";
 * const daily = crontab({ minute: 30, hour: 2 });
 * const next = nextRun(daily, new Date("2025-03-29T12:00:00Z"), "Europe/Berlin");
 * assert.equal(next?.toISOString(), "2025-03-30T01:00:00.000Z"); // 03:00 CEST
 * ```
 */
export function nextRun(
  schedule: Schedule,
  after: Date | number,
  timezone?: string,
): Date | null {
  const t = ms(after);
  switch (schedule.kind) {
    case "interval":
      return new Date(t + schedule.everyMs);
    case "at":
      return schedule.atMs > t ? new Date(schedule.atMs) : null;
    case "crontab":
      return cronFor(schedule, zoneOf(schedule, timezone)).nextRun(new Date(t));
  }
}

/**
 * The latest run at or before `atOrBefore`, or `null` when there is none. For an interval
 * there is no fixed grid without an anchor, so this is `null`; use {@linkcode isDue}.
 *
 * @param timezone Zone for a crontab that names none. @default "UTC"
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crontab, previousRun } from "./schedule.ts";
 * const hourly = crontab({ minute: 0 });
 * assert.equal(previousRun(hourly, new Date("2026-01-01T10:00:00Z"))?.toISOString(), "2026-01-01T10:00:00.000Z");
 * assert.equal(previousRun(hourly, new Date("2026-01-01T10:59:59Z"))?.toISOString(), "2026-01-01T10:00:00.000Z");
 * ```
 */
export function previousRun(
  schedule: Schedule,
  atOrBefore: Date | number,
  timezone?: string,
): Date | null {
  const t = ms(atOrBefore);
  switch (schedule.kind) {
    case "interval":
      return null;
    case "at":
      return schedule.atMs <= t ? new Date(schedule.atMs) : null;
    case "crontab": {
      const cron = cronFor(schedule, zoneOf(schedule, timezone));
      // croner's previous runs are strictly before the reference; +1 ms makes it inclusive.
      return cron.previousRuns(1, new Date(t + 1))[0] ?? null;
    }
  }
}

/** What {@linkcode isDue} answers. */
export interface DueState {
  /** Send now. */
  due: boolean;
  /**
   * Milliseconds from `now` until this entry should be looked at again: the next run after
   * the one being sent when `due`, else the next run. `Infinity` when it never runs again.
   */
  nextInMs: number;
  /**
   * When `due`: the scheduled time being sent (the latest slot at or before `now`). It is what
   * beat records as the entry's `lastRunAt`, and identifies the run: at most one send per
   * (entry, slot).
   */
  slot?: Date;
}

/** The part of a beat entry that {@linkcode isDue} reads. */
export interface Scheduled {
  /** The schedule. */
  schedule: Schedule;
}

/**
 * Whether an entry is due, given the scheduled time of its last run (`null`: never ran).
 *
 * - Interval: due when `lastRunAt + every <= now`; the slot is the latest
 *   `lastRunAt + k·every <= now` (so the grid keeps its phase and does not drift).
 *   `lastRunAt = null` means first sight: not due, next check in `every` (beat then records
 *   `now` as the anchor, as Celery starts an entry's clock when it loads it).
 * - Crontab: due when the first run after `lastRunAt` is `<= now`; the slot is the latest
 *   run `<= now`. First sight (`null`): not due, next check at the next run.
 * - One-off: due when its time has come and `lastRunAt` is `null` or before it; never again
 *   after that.
 *
 * However many slots were missed (beat was down), the answer is one `due` for the latest
 * one: Celery's catch-up policy ("run once if any was missed").
 *
 * @param timezone Zone for a crontab that names none. @default "UTC"
 *
 * @example Catch up once after downtime
 * ```ts
 * import assert from "node:assert/strict";
 * import { every, isDue } from "./schedule.ts";
 * const entry = { schedule: every(60) };
 * const last = Date.UTC(2026, 0, 1, 0, 0, 0);
 * // Ten minutes and five seconds later: ten runs missed, due once, for the 00:10 slot.
 * const state = isDue(entry, last, last + 605_000);
 * assert.equal(state.due, true);
 * assert.equal(state.slot?.toISOString(), "2026-01-01T00:10:00.000Z");
 * assert.equal(state.nextInMs, 55_000);
 * ```
 */
export function isDue(
  entry: Scheduled,
  lastRunAt: Date | number | null,
  now: Date | number,
  timezone?: string,
): DueState {
  const t = ms(now);
  const last = lastRunAt === null ? null : ms(lastRunAt);
  const schedule = entry.schedule;
  switch (schedule.kind) {
    case "interval": {
      const e = schedule.everyMs;
      if (last === null) return { due: false, nextInMs: e };
      if (last + e > t) return { due: false, nextInMs: last + e - t };
      const slot = last + Math.floor((t - last) / e) * e;
      return { due: true, nextInMs: slot + e - t, slot: new Date(slot) };
    }
    case "at": {
      const done = last !== null && last >= schedule.atMs;
      if (done) return { due: false, nextInMs: Infinity };
      if (schedule.atMs > t) return { due: false, nextInMs: schedule.atMs - t };
      return { due: true, nextInMs: Infinity, slot: new Date(schedule.atMs) };
    }
    case "crontab": {
      const zone = zoneOf(schedule, timezone);
      const next = nextRun(schedule, last ?? t, zone);
      if (next === null) return { due: false, nextInMs: Infinity };
      if (last === null || next.getTime() > t) {
        return { due: false, nextInMs: next.getTime() - t };
      }
      // Latest slot <= now, and never before the first missed one (guards DST corner cases).
      const latest = previousRun(schedule, t, zone);
      const slot = latest && latest.getTime() > next.getTime() ? latest : next;
      const after = nextRun(schedule, Math.max(slot.getTime(), t), zone);
      return {
        due: true,
        nextInMs: after === null ? Infinity : after.getTime() - t,
        slot,
      };
    }
  }
}

/**
 * A short human description, for logs and the banner.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crontab, describeSchedule, every } from "./schedule.ts";
 * assert.equal(describeSchedule(every(90)), "every 90s");
 * assert.equal(describeSchedule(crontab({ minute: 0, hour: 4 })), "<crontab: 0 4 * * * (m/h/dw/dM/MY) UTC>");
 * ```
 */
export function describeSchedule(schedule: Schedule, timezone?: string): string {
  switch (schedule.kind) {
    case "interval":
      return `every ${schedule.everyMs / 1000}s`;
    case "at":
      return `once at ${new Date(schedule.atMs).toISOString()}`;
    case "crontab":
      return `<crontab: ${schedule.text} (m/h/dw/dM/MY) ${zoneOf(schedule, timezone)}>`;
  }
}
