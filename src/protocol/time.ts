/**
 * The three time formats of the Celery wire: aware ISO-8601 with six fraction digits for
 * `eta`/`expires` headers, naive UTC ISO for result `date_done`, unix float seconds for events.
 *
 * @module
 */

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** Python's `datetime` range: years 1 to 9999. */
function checkRange(date: Date): void {
  const year = date.getUTCFullYear();
  if (Number.isNaN(year) || year < 1 || year > 9999) {
    throw new RangeError(`Cannot format ${date} as an ISO time: outside years 1 to 9999`);
  }
}

function isoBase(date: Date): string {
  return `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1)}-${
    pad(date.getUTCDate())
  }T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
}

/**
 * Formats a time as Python's aware `datetime.isoformat()` in UTC, always with six fraction
 * digits and `+00:00` (the form every Celery version parses; Python itself drops a zero
 * fraction, `2031-01-01T12:00:00+00:00`, which parses to the same time).
 *
 * @throws {RangeError} For an invalid date or a year outside 1..9999.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAwareIso } from "./time.ts";
 * assert.equal(formatAwareIso(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 67))),
 *   "2026-01-02T03:04:05.067000+00:00");
 * ```
 */
export function formatAwareIso(date: Date): string {
  checkRange(date);
  return `${isoBase(date)}.${pad(date.getUTCMilliseconds(), 3)}000+00:00`;
}

/**
 * Formats a time as Python's naive UTC `isoformat()` (result `date_done`): no offset, and
 * no fraction when it is zero.
 *
 * @throws {RangeError} For an invalid date or a year outside 1..9999.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatNaiveIso } from "./time.ts";
 * assert.equal(formatNaiveIso(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 0))), "2026-01-02T03:04:05");
 * assert.equal(formatNaiveIso(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 7))), "2026-01-02T03:04:05.007000");
 * ```
 */
export function formatNaiveIso(date: Date): string {
  checkRange(date);
  const ms = date.getUTCMilliseconds();
  return ms === 0 ? isoBase(date) : `${isoBase(date)}.${pad(ms, 3)}000`;
}

// Celery's own parser (celery.utils.iso8601) takes 1- or 2-digit month and day, any
// separator before the time, optional seconds and fraction, and `Z` or `+HH:MM`; it reads
// the fraction as whole microseconds (`.5` = 5 µs) and refuses more than six digits. This
// one reads the fraction as a fraction, of any length, and also takes `+HHMM` and `+HH`.
const ISO_RE =
  /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

/**
 * Parses an ISO-8601 time as Celery sends it: `+00:00` or `Z` offsets, naive times (UTC, as
 * in Celery), a date alone (midnight UTC), and any number of fraction digits (read as a
 * fraction, kept to the millisecond). Returns `undefined` for text that is not such a time,
 * including impossible dates and times (`2026-02-30`, `25:00`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIso } from "./time.ts";
 * assert.equal(parseIso("2026-11-23T06:23:39.669930+00:00")?.getTime(), Date.UTC(2026, 10, 23, 6, 23, 39, 669));
 * assert.equal(parseIso("2026-11-23T06:23:39.5Z")?.getTime(), Date.UTC(2026, 10, 23, 6, 23, 39, 500));
 * assert.equal(parseIso("2026-11-23T06:23:39")?.getTime(), Date.UTC(2026, 10, 23, 6, 23, 39));
 * assert.equal(parseIso("yesterday"), undefined);
 * ```
 */
export function parseIso(text: string): Date | undefined {
  const m = ISO_RE.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = +y!, month = +mo!, day = +d!;
  const hour = h ? +h : 0, minute = mi ? +mi : 0, second = s ? +s : 0;
  const ms = frac ? Number(frac.slice(0, 3).padEnd(3, "0")) : 0;
  if (year < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  if (tz && tz.toUpperCase() !== "Z") {
    const sign = tz[0] === "-" ? -1 : 1;
    const digits = tz.slice(1).replace(":", "");
    const offsetHours = Number(digits.slice(0, 2));
    const offsetMinutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (offsetHours > 23 || offsetMinutes > 59) return undefined;
    return new Date(date.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000);
  }
  return date;
}
