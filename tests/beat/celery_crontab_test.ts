/**
 * Cross-checks celeriac's crontab against Python Celery 5.2's own `celery.schedules.crontab`
 * (Debian's python3-celery): the same field strings must expand to the same sets, and give
 * the same next run after a given time (UTC, where Celery's arithmetic is exact).
 */
import assert from "node:assert/strict";
import { crontab, type CrontabFields, nextRun } from "../../src/beat/schedule.ts";
import { runChild } from "../helpers/process.ts";
import { PYTHON } from "../helpers/python_celery.ts";

interface Case {
  fields: CrontabFields;
  after: string;
}

const CASES: Case[] = [
  { fields: {}, after: "2026-01-01T10:00:00Z" },
  { fields: { minute: "*/15" }, after: "2026-01-01T10:07:00Z" },
  { fields: { minute: "0", hour: "*/3" }, after: "2026-01-01T22:00:00Z" },
  { fields: { minute: "30", hour: "4" }, after: "2026-12-31T05:00:00Z" },
  { fields: { minute: "1,13,30-45,50-59/2", hour: "8-17/2" }, after: "2026-01-01T17:59:00Z" },
  { fields: { minute: "0", hour: "22-2" }, after: "2026-01-01T12:00:00Z" },
  { fields: { minute: "0", hour: "22-3/2" }, after: "2026-01-01T12:00:00Z" },
  { fields: { minute: "0", hour: "9", dayOfWeek: "mon-fri" }, after: "2026-01-02T10:00:00Z" },
  { fields: { minute: "0", hour: "0", dayOfWeek: "sunday" }, after: "2026-01-01T00:00:00Z" },
  { fields: { minute: "0", hour: "0", dayOfWeek: "*/2" }, after: "2026-01-01T00:00:00Z" },
  { fields: { minute: "0", hour: "0", dayOfWeek: "fri-mon" }, after: "2026-01-06T00:00:00Z" },
  { fields: { minute: "0", hour: "0", dayOfMonth: "*/2" }, after: "2026-01-31T00:00:00Z" },
  { fields: { minute: "0", hour: "0", dayOfMonth: "*/3" }, after: "2026-01-29T00:00:00Z" },
  { fields: { minute: "0", hour: "0", dayOfMonth: "31" }, after: "2026-01-31T00:00:00Z" },
  // Day of month AND day of week (Vixie cron would OR them).
  {
    fields: { minute: "0", hour: "0", dayOfMonth: "13", dayOfWeek: "fri" },
    after: "2026-03-14T00:00:00Z",
  },
  {
    fields: { minute: "0", hour: "9", dayOfMonth: "1-7", dayOfWeek: "1" },
    after: "2026-01-06T00:00:00Z",
  },
  {
    fields: { minute: "0", hour: "0", dayOfMonth: "1", monthOfYear: "*/3" },
    after: "2026-02-01T00:00:00Z",
  },
  { fields: { minute: "0", hour: "0", monthOfYear: "2-12/2" }, after: "2026-01-15T00:00:00Z" },
  {
    fields: { minute: "0", hour: "12", dayOfMonth: "29", monthOfYear: "2" },
    after: "2024-02-29T12:00:00Z",
  },
];

const SCRIPT = `
import json, sys
from datetime import datetime, timezone
from celery import Celery
from celery.schedules import crontab

app = Celery("crosscheck", set_as_current=False)
app.conf.timezone = "UTC"
app.conf.enable_utc = True
out = []
for case in json.loads(sys.stdin.read()):
    f = case["fields"]
    last = datetime.fromisoformat(case["after"].replace("Z", "+00:00"))
    c = crontab(
        minute=f.get("minute", "*"), hour=f.get("hour", "*"),
        day_of_week=f.get("dayOfWeek", "*"), day_of_month=f.get("dayOfMonth", "*"),
        month_of_year=f.get("monthOfYear", "*"), app=app, nowfun=lambda: last,
    )
    base, delta, _now = c.remaining_delta(last)
    nxt = (base + delta).astimezone(timezone.utc)
    out.append({
        "minute": sorted(c.minute), "hour": sorted(c.hour), "dayOfWeek": sorted(c.day_of_week),
        "dayOfMonth": sorted(c.day_of_month), "monthOfYear": sorted(c.month_of_year),
        "next": nxt.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    })
print(json.dumps(out))
`;

Deno.test("crontab() expands fields and finds the next run exactly as Celery 5.2 does (UTC)", async () => {
  const result = await runChild(PYTHON, {
    args: ["-c", SCRIPT],
    stdin: JSON.stringify(CASES),
    env: { PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
    timeoutMs: 30_000,
    label: "celery crontab",
  });
  assert.equal(result.code, 0, result.stderr);
  const celery = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>[];
  assert.equal(celery.length, CASES.length);
  CASES.forEach((c, i) => {
    const ours = crontab(c.fields);
    const label = JSON.stringify(c);
    const expected = celery[i]!;
    assert.deepEqual(
      {
        minute: ours.minute,
        hour: ours.hour,
        dayOfWeek: ours.dayOfWeek,
        dayOfMonth: ours.dayOfMonth,
        monthOfYear: ours.monthOfYear,
        next: nextRun(ours, new Date(c.after), "UTC")?.toISOString(),
      },
      expected,
      label,
    );
  });
});

Deno.test("crontab() rejects the same day-of-week 7 and bad steps as Celery 5.2", async () => {
  const specs = ["7", "0-7", "*/0", "5/2", "1,,2"];
  const result = await runChild(PYTHON, {
    args: [
      "-c",
      `
import json, sys
from celery.schedules import crontab
out = []
for spec in json.loads(sys.stdin.read()):
    try:
        crontab(day_of_week=spec)
        out.append(True)
    except Exception:
        out.append(False)
print(json.dumps(out))
`,
    ],
    stdin: JSON.stringify(specs),
    env: { PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
    timeoutMs: 30_000,
    label: "celery crontab errors",
  });
  assert.equal(result.code, 0, result.stderr);
  const accepted = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as boolean[];
  assert.deepEqual(accepted, specs.map(() => false));
  for (const spec of specs) assert.throws(() => crontab({ dayOfWeek: spec }), RangeError, spec);
});
