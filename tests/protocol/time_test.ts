/**
 * src/protocol/time.ts: the ISO forms of eta/expires headers and of result date_done.
 */

import assert from "node:assert/strict";
import { formatAwareIso, formatNaiveIso, parseIso } from "../../src/protocol/time.ts";
import { fixtureNames, loadFixture } from "./_fixtures.ts";

const T = Date.UTC(2026, 10, 23, 6, 23, 39, 669);

Deno.test("formatAwareIso: six fraction digits and +00:00, always", () => {
  assert.equal(formatAwareIso(new Date(T)), "2026-11-23T06:23:39.669000+00:00");
  assert.equal(
    formatAwareIso(new Date(Date.UTC(2031, 0, 1, 12))),
    "2031-01-01T12:00:00.000000+00:00",
  );
  assert.equal(
    formatAwareIso(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 7))),
    "2026-01-02T03:04:05.007000+00:00",
  );
  const y50 = new Date(0);
  y50.setUTCFullYear(50, 0, 1);
  assert.equal(formatAwareIso(y50), "0050-01-01T00:00:00.000000+00:00", "4-digit year");
  for (
    const bad of [new Date(NaN), new Date(Date.UTC(10000, 0, 1)), new Date(Date.UTC(-1, 0, 1))]
  ) {
    assert.throws(() => formatAwareIso(bad), RangeError);
    assert.throws(() => formatNaiveIso(bad), RangeError);
  }
});

Deno.test("formatNaiveIso: Python's naive isoformat (no offset, no zero fraction)", () => {
  assert.equal(formatNaiveIso(new Date(T)), "2026-11-23T06:23:39.669000");
  assert.equal(formatNaiveIso(new Date(Date.UTC(2026, 10, 23, 6, 23, 39))), "2026-11-23T06:23:39");
  // The same shape as every date_done Python stored in the fixtures.
  for (const name of fixtureNames().filter((n) => n.startsWith("redis-result-"))) {
    const done = loadFixture(name).decoded?.date_done;
    if (typeof done !== "string") continue;
    assert.match(done, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$/, name);
    const ours = formatNaiveIso(parseIso(done)!);
    assert.equal(ours, done.replace(/(\.\d{3})\d{3}$/, "$1000"), name);
  }
});

Deno.test("parseIso: every form Celery peers send", () => {
  const cases: [string, number][] = [
    ["2026-11-23T06:23:39.669930+00:00", T],
    ["2026-11-23T06:23:39.669930Z", T],
    ["2026-11-23T06:23:39.669930z", T],
    ["2026-11-23T06:23:39.669930", T], // naive = UTC
    ["2026-11-23 06:23:39.669930", T],
    ["2026-11-23T08:23:39.669+02:00", T],
    ["2026-11-23T01:23:39.669-05:00", T],
    ["2026-11-23T08:23:39.669+0200", T],
    ["2026-11-23T08:23:39.669+02", T],
    ["2026-11-23T11:53:39.669+05:30", T],
    ["2026-11-23T06:23:39.6699+00:00", T],
    ["2026-11-23T06:23:39.669930123+00:00", T], // 9 digits
    ["2026-11-23T06:23:39.669930123456Z", T], // more: still a fraction
    ["2026-11-23T06:23:39,669Z", T],
    ["  2026-11-23T06:23:39.669Z  ", T],
    ["2026-11-23T06:23:39.6Z", Date.UTC(2026, 10, 23, 6, 23, 39, 600)], // 1 digit = 0.6 s
    ["2026-11-23T06:23:39.06Z", Date.UTC(2026, 10, 23, 6, 23, 39, 60)],
    ["2026-11-23T06:23:39.000001+00:00", Date.UTC(2026, 10, 23, 6, 23, 39)],
    ["2026-11-23T06:23:39+00:00", Date.UTC(2026, 10, 23, 6, 23, 39)],
    ["2026-11-23T06:23Z", Date.UTC(2026, 10, 23, 6, 23)],
    ["2026-11-23", Date.UTC(2026, 10, 23)],
    ["2026-1-5T00:00:00", Date.UTC(2026, 0, 5)],
    ["2028-02-29T23:59:59.999Z", Date.UTC(2028, 1, 29, 23, 59, 59, 999)],
  ];
  for (const [text, ms] of cases) assert.equal(parseIso(text)?.getTime(), ms, text);
  const y50 = parseIso("0050-06-01T00:00:00Z");
  assert.equal(y50?.getUTCFullYear(), 50, "not 1950");
});

Deno.test("parseIso: text that is not a real time", () => {
  for (
    const text of [
      "",
      "yesterday",
      "2026",
      "2026-11",
      "2026-13-01T00:00:00",
      "2026-02-30T00:00:00",
      "2027-02-29",
      "2026-11-23T24:00:00",
      "2026-11-23T23:60:00",
      "2026-11-23T23:59:60",
      "2026-11-23T06:23:39.Z",
      "2026-11-23T06:23:39+25:00",
      "2026-11-23T06:23:39+05:75",
      "2026-11-23T06:23:39 UTC",
      "0000-01-01T00:00:00",
      "2026-11-23T06:23:39.669930+00:00 trailing",
    ]
  ) assert.equal(parseIso(text), undefined, text);
});

Deno.test("parse then format gives back Python's eta text (to the millisecond)", () => {
  for (
    const text of [
      "2026-11-23T07:54:23.703095+00:00",
      "2026-11-23T07:53:18.714540+00:00",
      "2031-01-01T12:00:00+00:00",
    ]
  ) {
    const ours = formatAwareIso(parseIso(text)!);
    assert.match(ours, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    assert.equal(parseIso(ours)?.getTime(), parseIso(text)?.getTime());
  }
});
