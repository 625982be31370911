import assert from "node:assert/strict";
import {
  at,
  crontab,
  type CrontabFields,
  every,
  isDue,
  nextRun,
  previousRun,
  type Schedule,
  toSchedule,
} from "../../src/beat/schedule.ts";

const iso = (d: Date | null | undefined) => d?.toISOString() ?? null;

/** `n` successive runs after `from`. */
function runs(schedule: Schedule, from: string, n: number, tz?: string): (string | null)[] {
  const out: (string | null)[] = [];
  let t: Date | null = new Date(from);
  for (let i = 0; i < n && t; i++) out.push(iso(t = nextRun(schedule, t, tz)));
  return out;
}

/**
 * Drives isDue the way beat does (wake exactly when told, record the slot as lastRunAt) from
 * `from` to `to`, and returns every slot sent.
 */
function simulate(schedule: Schedule, from: string, to: string, tz?: string): string[] {
  const end = Date.parse(to);
  let now = Date.parse(from);
  let last: number | null = null;
  const sent: string[] = [];
  for (let i = 0; i < 10_000 && now <= end; i++) {
    const state = isDue({ schedule }, last, now, tz);
    if (last === null && schedule.kind !== "at") last = now; // beat anchors on first sight
    if (state.due) {
      sent.push(state.slot!.toISOString());
      last = state.slot!.getTime();
    }
    if (!Number.isFinite(state.nextInMs)) break;
    now += Math.max(state.nextInMs, 1);
  }
  return sent;
}

Deno.test("crontab() expands fields with Celery's rules", async (t) => {
  const range = (a: number, b: number, step = 1) => {
    const out: number[] = [];
    for (let i = a; i <= b; i += step) out.push(i);
    return out;
  };
  const table: [keyof CrontabFields, CrontabFields[keyof CrontabFields], number[]][] = [
    ["minute", "*/15", [0, 15, 30, 45]],
    ["minute", "1,13,30-45,50-59/2", [1, 13, ...range(30, 45), ...range(50, 58, 2)]],
    ["minute", 7, [7]],
    ["minute", [30, 0, 30], [0, 30]],
    ["minute", " 0 , 30 ", [0, 30]],
    ["hour", "*/4", [0, 4, 8, 12, 16, 20]],
    ["hour", "0,8-17/2", [0, 8, 10, 12, 14, 16]],
    ["hour", "22-2", [0, 1, 2, 22, 23]], // wraps around
    ["hour", "22-3/2", [0, 2, 22]], // [22,23,0,1,2,3][::2]
    ["dayOfWeek", "*", range(0, 6)],
    ["dayOfWeek", "*/2", [0, 2, 4, 6]],
    ["dayOfWeek", "mon-fri", [1, 2, 3, 4, 5]],
    ["dayOfWeek", "sun", [0]],
    ["dayOfWeek", "Sunday,SAT", [0, 6]],
    ["dayOfWeek", "fri-mon", [0, 1, 5, 6]],
    ["dayOfMonth", "*/2", range(1, 31, 2)], // from the minimum: 1,3,5,…
    ["dayOfMonth", "*/3", range(1, 31, 3)],
    ["dayOfMonth", "1-7,15-21", [...range(1, 7), ...range(15, 21)]],
    ["monthOfYear", "*/2", [1, 3, 5, 7, 9, 11]],
    ["monthOfYear", "2-12/2", [2, 4, 6, 8, 10, 12]],
    ["monthOfYear", "*/3", [1, 4, 7, 10]],
  ];
  for (const [field, spec, expected] of table) {
    await t.step(`${field}=${JSON.stringify(spec)}`, () => {
      assert.deepEqual(crontab({ [field]: spec })[field], expected);
    });
  }
});

Deno.test("crontab() rejects what Celery rejects", async (t) => {
  const table: [string, () => unknown][] = [
    ["day of week 7 (Sunday is 0)", () => crontab({ dayOfWeek: 7 })],
    ["day of week '7'", () => crontab({ dayOfWeek: "0-7" })],
    ["minute 60", () => crontab({ minute: "60" })],
    ["hour 24", () => crontab({ hour: 24 })],
    ["day of month 0", () => crontab({ dayOfMonth: "0" })],
    ["month 13", () => crontab({ monthOfYear: "13" })],
    ["month names", () => crontab({ monthOfYear: "jan" })],
    ["weekday names outside day of week", () => crontab({ minute: "mon" })],
    ["unknown weekday name", () => crontab({ dayOfWeek: "xyz" })],
    ["numeric step start", () => crontab({ minute: "5/2" })],
    ["step 0", () => crontab({ minute: "*/0" })],
    ["empty step", () => crontab({ minute: "1-5/" })],
    ["empty part", () => crontab({ minute: "1,,2" })],
    ["negative number", () => crontab({ minute: "-1" })],
    ["L", () => crontab({ dayOfMonth: "L" })],
    ["?", () => crontab({ dayOfWeek: "?" })],
    ["#", () => crontab({ dayOfWeek: "1#2" })],
    ["empty list", () => crontab({ minute: [] })],
    ["fraction", () => crontab({ minute: 1.5 })],
    ["30 February", () => crontab({ dayOfMonth: 30, monthOfYear: 2 })],
    ["six fields", () => crontab("0 0 * * * *")],
    ["unknown zone", () => crontab({}, { timezone: "Mars/Olympus" })],
  ];
  for (const [name, fn] of table) {
    await t.step(name, () => assert.throws(fn, RangeError));
  }
  assert.throws(() => crontab({ minute: {} as never }), TypeError);
});

Deno.test("crontab() string form is 'minute hour day-of-month month day-of-week'", () => {
  const c = crontab("30 4 1-7 */3 mon");
  assert.deepEqual(c.minute, [30]);
  assert.deepEqual(c.hour, [4]);
  assert.deepEqual(c.dayOfMonth, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(c.monthOfYear, [1, 4, 7, 10]);
  assert.deepEqual(c.dayOfWeek, [1]);
  assert.equal(c.text, "30 4 mon 1-7 */3"); // Celery's repr order: m h dw dM MY
});

Deno.test("crontab() marks fixed-time entries (no * and no step in minute and hour)", () => {
  assert.equal(crontab({ minute: 30, hour: 2 }).fixedTime, true);
  assert.equal(crontab({ minute: "0", hour: "2,14" }).fixedTime, true);
  assert.equal(crontab({ minute: [0, 30], hour: [1, 2] }).fixedTime, true);
  assert.equal(crontab({ minute: 30, hour: 2, dayOfWeek: "*/2" }).fixedTime, true);
  assert.equal(crontab({ minute: 30 }).fixedTime, false);
  assert.equal(crontab({ minute: "*/15", hour: 2 }).fixedTime, false);
  assert.equal(crontab({ minute: 0, hour: "0-23/2" }).fixedTime, false);
});

Deno.test("every() / at() / toSchedule() validate their input", () => {
  assert.equal(every(0.25).everyMs, 250);
  assert.throws(() => every(0), RangeError);
  assert.throws(() => every(-1), RangeError);
  assert.throws(() => every(NaN), RangeError);
  assert.throws(() => every(Infinity), RangeError);
  assert.equal(at(new Date(5)).atMs, 5);
  assert.equal(at("2026-01-01T00:00:00+01:00").atMs, Date.UTC(2025, 11, 31, 23));
  assert.throws(() => at("not a date"), RangeError);
  assert.equal(toSchedule(every(5)).kind, "interval");
  assert.equal(toSchedule(crontab()).kind, "crontab");
  assert.equal(toSchedule(at(0)).kind, "at");
  assert.throws(() => toSchedule({ kind: "solar" } as never), TypeError);
  assert.throws(() => toSchedule(null as never), TypeError);
});

Deno.test("nextRun() crontab in UTC: table", async (t) => {
  const table: [string, Schedule, string, string[]][] = [
    ["every minute", crontab(), "2026-01-01T10:00:00Z", [
      "2026-01-01T10:01:00.000Z",
      "2026-01-01T10:02:00.000Z",
    ]],
    ["strictly after, seconds dropped", crontab(), "2026-01-01T10:00:59.999Z", [
      "2026-01-01T10:01:00.000Z",
    ]],
    ["hourly at :00 across midnight", crontab({ minute: 0 }), "2026-01-01T22:30:00Z", [
      "2026-01-01T23:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
    ]],
    ["daily 04:00 across the year end", crontab({ minute: 0, hour: 4 }), "2026-12-31T05:00:00Z", [
      "2027-01-01T04:00:00.000Z",
    ]],
    // Celery ANDs day of month and day of week (Vixie cron would OR them).
    [
      "Friday the 13th",
      crontab({ minute: 0, hour: 0, dayOfMonth: 13, dayOfWeek: "fri" }),
      "2026-01-01T00:00:00Z",
      ["2026-02-13T00:00:00.000Z", "2026-03-13T00:00:00.000Z", "2026-11-13T00:00:00.000Z"],
    ],
    [
      "first Monday of the month",
      crontab({ minute: 0, hour: 9, dayOfMonth: "1-7", dayOfWeek: 1 }),
      "2026-01-01T00:00:00Z",
      ["2026-01-05T09:00:00.000Z", "2026-02-02T09:00:00.000Z", "2026-03-02T09:00:00.000Z"],
    ],
    ["Sunday is 0", crontab({ minute: 0, hour: 0, dayOfWeek: 0 }), "2026-01-01T00:00:00Z", [
      "2026-01-04T00:00:00.000Z",
    ]],
    // Month ends.
    [
      "the 31st skips short months",
      crontab({ minute: 0, hour: 0, dayOfMonth: 31 }),
      "2026-01-31T00:00:00Z",
      [
        "2026-03-31T00:00:00.000Z",
        "2026-05-31T00:00:00.000Z",
        "2026-07-31T00:00:00.000Z",
        "2026-08-31T00:00:00.000Z",
      ],
    ],
    [
      "*/2 days: the 31st then the 1st",
      crontab({ minute: 0, hour: 0, dayOfMonth: "*/2" }),
      "2026-01-30T00:00:00Z",
      [
        "2026-01-31T00:00:00.000Z",
        "2026-02-01T00:00:00.000Z",
        "2026-02-03T00:00:00.000Z",
      ],
    ],
    [
      "28-31 February: only existing days",
      crontab({ minute: 0, hour: 0, dayOfMonth: "28-31", monthOfYear: 2 }),
      "2026-01-01T00:00:00Z",
      [
        "2026-02-28T00:00:00.000Z",
        "2027-02-28T00:00:00.000Z",
        "2028-02-28T00:00:00.000Z",
        "2028-02-29T00:00:00.000Z",
        "2029-02-28T00:00:00.000Z",
      ],
    ],
    // Leap day.
    [
      "29 February: leap years only",
      crontab({ minute: 0, hour: 12, dayOfMonth: 29, monthOfYear: 2 }),
      "2024-02-29T12:00:00Z",
      [
        "2028-02-29T12:00:00.000Z",
        "2032-02-29T12:00:00.000Z",
      ],
    ],
    [
      "29 February that is a Monday",
      crontab({ minute: 0, hour: 0, dayOfMonth: 29, monthOfYear: 2, dayOfWeek: "mon" }),
      "2026-01-01T00:00:00Z",
      [
        "2044-02-29T00:00:00.000Z",
      ],
    ],
    [
      "quarterly",
      crontab({ minute: 0, hour: 0, dayOfMonth: 1, monthOfYear: "*/3" }),
      "2026-01-01T00:00:00Z",
      [
        "2026-04-01T00:00:00.000Z",
        "2026-07-01T00:00:00.000Z",
        "2026-10-01T00:00:00.000Z",
        "2027-01-01T00:00:00.000Z",
      ],
    ],
    ["hour range that wraps", crontab({ minute: 0, hour: "23-1" }), "2026-01-01T12:00:00Z", [
      "2026-01-01T23:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
      "2026-01-02T01:00:00.000Z",
      "2026-01-02T23:00:00.000Z",
    ]],
  ];
  for (const [name, schedule, from, expected] of table) {
    await t.step(name, () => assert.deepEqual(runs(schedule, from, expected.length), expected));
  }
});

Deno.test("nextRun() crontab in time zones: table", async (t) => {
  const table: [string, Schedule, string, string, string[]][] = [
    [
      "New York 09:00 across DST start",
      crontab("0 9 * * *"),
      "America/New_York",
      "2026-03-06T00:00:00Z",
      [
        "2026-03-06T14:00:00.000Z", // EST
        "2026-03-07T14:00:00.000Z",
        "2026-03-08T13:00:00.000Z", // EDT
      ],
    ],
    ["Kolkata (+05:30) 09:00", crontab("0 9 * * *"), "Asia/Kolkata", "2026-01-01T00:00:00Z", [
      "2026-01-01T03:30:00.000Z",
    ]],
    [
      "Kathmandu (+05:45) midnight",
      crontab({ minute: 0, hour: 0 }),
      "Asia/Kathmandu",
      "2026-01-01T00:00:00Z",
      [
        "2026-01-01T18:15:00.000Z",
      ],
    ],
    [
      "the zone decides the day of week",
      crontab({ minute: 0, hour: 0, dayOfWeek: "mon" }),
      "Pacific/Auckland",
      "2026-01-01T00:00:00Z",
      [
        "2026-01-04T11:00:00.000Z", // Monday 00:00 NZDT = Sunday 11:00 UTC
      ],
    ],
    [
      "the zone decides the month end",
      crontab({ minute: 0, hour: 0, dayOfMonth: 31 }),
      "America/Los_Angeles",
      "2026-01-01T00:00:00Z",
      [
        "2026-01-31T08:00:00.000Z",
        "2026-03-31T07:00:00.000Z", // PDT by then
      ],
    ],
    [
      "a schedule's own zone beats the default",
      crontab({ minute: 0, hour: 9 }, { timezone: "Asia/Tokyo" }),
      "America/New_York",
      "2026-01-01T00:00:00Z",
      ["2026-01-02T00:00:00.000Z"], // 09:00 JST; New York is not used
    ],
  ];
  for (const [name, schedule, tz, from, expected] of table) {
    await t.step(name, () => assert.deepEqual(runs(schedule, from, expected.length, tz), expected));
  }
});

Deno.test("nextRun() daylight saving: fixed-time entries run once per day", async (t) => {
  const daily0230 = crontab({ minute: 30, hour: 2 });
  await t.step("Berlin spring forward: 02:30 does not exist, runs at 03:00 CEST once", () => {
    assert.deepEqual(runs(daily0230, "2026-03-28T12:00:00Z", 3, "Europe/Berlin"), [
      "2026-03-29T01:00:00.000Z", // 03:00 CEST, the first valid time after the gap
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
      "2026-03-31T00:30:00.000Z",
    ]);
  });
  await t.step("Berlin fall back: 02:30 happens twice, runs at the first only", () => {
    assert.deepEqual(runs(daily0230, "2026-10-24T12:00:00Z", 3, "Europe/Berlin"), [
      "2026-10-25T00:30:00.000Z", // 02:30 CEST (the second 02:30 CET is 01:30 UTC: skipped)
      "2026-10-26T01:30:00.000Z", // 02:30 CET
      "2026-10-27T01:30:00.000Z",
    ]);
  });
  await t.step("New York spring forward at 02:30 runs at 03:00 EDT", () => {
    assert.deepEqual(runs(daily0230, "2026-03-07T12:00:00Z", 2, "America/New_York"), [
      "2026-03-08T07:00:00.000Z",
      "2026-03-09T06:30:00.000Z",
    ]);
  });
  await t.step("a list of hours is fixed-time too", () => {
    assert.deepEqual(
      runs(crontab({ minute: 30, hour: "2,14" }), "2026-03-28T23:45:00Z", 3, "Europe/Berlin"),
      [
        "2026-03-29T01:00:00.000Z",
        "2026-03-29T12:30:00.000Z",
        "2026-03-30T00:30:00.000Z",
      ],
    );
  });
  await t.step("Lord Howe's 30-minute shift: 02:15 does not exist, runs at 02:30", () => {
    // 2026-10-04 02:00 LHST (+10:30) becomes 02:30 LHDT (+11:00).
    assert.deepEqual(
      runs(crontab({ minute: 15, hour: 2 }), "2026-10-03T00:00:00Z", 2, "Australia/Lord_Howe"),
      [
        "2026-10-03T15:30:00.000Z",
        "2026-10-04T15:15:00.000Z",
      ],
    );
  });
});

Deno.test("nextRun() daylight saving: wildcard entries follow elapsed time", async (t) => {
  await t.step("every 15 minutes skips the Berlin gap (02:00–02:59 do not exist)", () => {
    assert.deepEqual(
      runs(crontab({ minute: "*/15" }), "2026-03-29T00:40:00Z", 3, "Europe/Berlin"),
      [
        "2026-03-29T00:45:00.000Z", // 01:45 CET
        "2026-03-29T01:00:00.000Z", // 03:00 CEST
        "2026-03-29T01:15:00.000Z",
      ],
    );
  });
  await t.step("hourly at :30 runs on both 02:30s of the fall-back night (an hour apart)", () => {
    assert.deepEqual(runs(crontab({ minute: 30 }), "2026-10-24T23:00:00Z", 4, "Europe/Berlin"), [
      "2026-10-24T23:30:00.000Z", // 01:30 CEST
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T01:30:00.000Z", // 02:30 CET
      "2026-10-25T02:30:00.000Z", // 03:30 CET
    ]);
  });
});

Deno.test("nextRun() / previousRun() for intervals and one-offs", () => {
  assert.equal(iso(nextRun(every(10), Date.UTC(2026, 0, 1))), "2026-01-01T00:00:10.000Z");
  const once = at("2026-06-01T00:00:00Z");
  assert.equal(iso(nextRun(once, Date.UTC(2026, 0, 1))), "2026-06-01T00:00:00.000Z");
  assert.equal(nextRun(once, Date.UTC(2026, 5, 1)), null);
  assert.equal(iso(previousRun(once, Date.UTC(2026, 5, 1))), "2026-06-01T00:00:00.000Z");
  assert.equal(previousRun(once, Date.UTC(2026, 4, 1)), null);
  assert.equal(previousRun(every(10), Date.UTC(2026, 0, 1)), null);
  assert.equal(
    iso(
      previousRun(
        crontab({ minute: 30, hour: 2 }),
        Date.parse("2026-10-25T02:00:00Z"),
        "Europe/Berlin",
      ),
    ),
    "2026-10-25T00:30:00.000Z",
  );
});

Deno.test("isDue() interval: table", async (t) => {
  const e = { schedule: every(60) };
  const T = Date.UTC(2026, 0, 1, 12, 0, 0);
  const table: [string, number | null, number, boolean, number, string?][] = [
    ["first sight: not due, check in one interval", null, T, false, 60_000],
    ["not yet", T, T + 59_999, false, 1],
    ["exactly due", T, T + 60_000, true, 60_000, "2026-01-01T12:01:00.000Z"],
    [
      "a little late: slot keeps its phase",
      T,
      T + 60_250,
      true,
      59_750,
      "2026-01-01T12:01:00.000Z",
    ],
    [
      "down for an hour: due once, latest slot",
      T,
      T + 3_600_000 + 5_000,
      true,
      55_000,
      "2026-01-01T13:00:00.000Z",
    ],
    ["last run in the future (clock went back): wait", T + 30_000, T, false, 90_000],
  ];
  for (const [name, last, now, due, nextInMs, slot] of table) {
    await t.step(name, () => {
      const s = isDue(e, last, now);
      assert.equal(s.due, due);
      assert.equal(s.nextInMs, nextInMs);
      assert.equal(iso(s.slot), slot ?? null);
    });
  }
});

Deno.test("isDue() crontab: table", async (t) => {
  const hourly = { schedule: crontab({ minute: 0 }) };
  const T = Date.UTC(2026, 0, 1, 12, 0, 0);
  const table: [string, number | null, number, boolean, number, string?][] = [
    ["first sight: not due, next at the next slot", null, T + 1_000, false, 3_599_000],
    ["first sight exactly on a slot: the slot is not sent", null, T, false, 3_600_000],
    ["not yet", T, T + 1_800_000, false, 1_800_000],
    ["due exactly on time", T, T + 3_600_000, true, 3_600_000, "2026-01-01T13:00:00.000Z"],
    ["due 10 ms late", T, T + 3_600_010, true, 3_599_990, "2026-01-01T13:00:00.000Z"],
    [
      "down for three days: once, for the latest slot",
      T,
      T + 3 * 86_400_000 + 120_000,
      true,
      3_480_000,
      "2026-01-04T12:00:00.000Z",
    ],
  ];
  for (const [name, last, now, due, nextInMs, slot] of table) {
    await t.step(name, () => {
      const s = isDue(hourly, last, now);
      assert.equal(s.due, due);
      assert.equal(s.nextInMs, nextInMs);
      assert.equal(iso(s.slot), slot ?? null);
    });
  }
});

Deno.test("isDue() one-off: table", async (t) => {
  const T = Date.UTC(2026, 5, 1);
  const once = { schedule: at(T) };
  const table: [string, number | null, number, boolean, number, string?][] = [
    ["before its time", null, T - 5_000, false, 5_000],
    ["at its time", null, T, true, Infinity, "2026-06-01T00:00:00.000Z"],
    [
      "past and never run (beat was down): runs once",
      null,
      T + 86_400_000,
      true,
      Infinity,
      "2026-06-01T00:00:00.000Z",
    ],
    ["already run", T, T + 1, false, Infinity],
    [
      "ran at an earlier time, then moved later: runs again",
      T - 86_400_000,
      T,
      true,
      Infinity,
      "2026-06-01T00:00:00.000Z",
    ],
  ];
  for (const [name, last, now, due, nextInMs, slot] of table) {
    await t.step(name, () => {
      const s = isDue(once, last, now);
      assert.equal(s.due, due);
      assert.equal(s.nextInMs, nextInMs);
      assert.equal(iso(s.slot), slot ?? null);
    });
  }
});

Deno.test("isDue() driven like beat: Berlin daily 02:30 fires exactly once per day across both DST changes", () => {
  const daily = crontab({ minute: 30, hour: 2 });
  assert.deepEqual(
    simulate(daily, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z", "Europe/Berlin"),
    [
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:00:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ],
  );
  assert.deepEqual(
    simulate(daily, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z", "Europe/Berlin"),
    [
      "2026-10-24T00:30:00.000Z",
      "2026-10-25T00:30:00.000Z",
      "2026-10-26T01:30:00.000Z",
    ],
  );
});

Deno.test("isDue() driven like beat: every 15 minutes over the fall-back night keeps 15-minute spacing", () => {
  const sent = simulate(
    crontab({ minute: "*/15" }),
    "2026-10-24T23:50:00Z",
    "2026-10-25T02:05:00Z",
    "Europe/Berlin",
  );
  assert.equal(sent.length, 9); // 00:00Z … 02:00Z, both 02:xx hours included
  for (let i = 1; i < sent.length; i++) {
    assert.equal(Date.parse(sent[i]!) - Date.parse(sent[i - 1]!), 15 * 60_000);
  }
});

Deno.test("isDue() driven like beat: an interval keeps its phase and never drifts", () => {
  const sent = simulate(every(7), "2026-01-01T00:00:00.123Z", "2026-01-01T00:01:00Z");
  assert.equal(sent.length, 8);
  assert.equal(sent[0], "2026-01-01T00:00:07.123Z");
  assert.equal(sent.at(-1), "2026-01-01T00:00:56.123Z");
});
