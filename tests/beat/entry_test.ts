import assert from "node:assert/strict";
import { normalizeBeatSchedule } from "../../src/beat/entry.ts";
import { crontab, every } from "../../src/beat/schedule.ts";

Deno.test("normalizeBeatSchedule() reads Celery's record form and the list form alike", () => {
  const record = normalizeBeatSchedule({
    "add-every-30s": { task: "tasks.add", schedule: 30, args: [2, 3] },
    nightly: {
      task: "reports.nightly",
      schedule: "0 4 * * *",
      kwargs: { kind: "full" },
      options: { queue: "reports", expires: 3600, priority: 5 },
    },
    once: { task: "t.once", schedule: new Date(Date.UTC(2030, 0, 1)) },
  });
  const list = normalizeBeatSchedule([
    { name: "add-every-30s", task: "tasks.add", schedule: every(30), args: [2, 3] },
    {
      name: "nightly",
      task: "reports.nightly",
      schedule: crontab({ minute: 0, hour: 4 }),
      kwargs: { kind: "full" },
      options: { queue: "reports", expires: 3600, priority: 5 },
    },
    { name: "once", task: "t.once", schedule: new Date(Date.UTC(2030, 0, 1)) },
  ]);
  for (const entries of [record, list]) {
    assert.deepEqual(entries.map((e) => [e.name, e.task, e.schedule.kind]), [
      ["add-every-30s", "tasks.add", "interval"],
      ["nightly", "reports.nightly", "crontab"],
      ["once", "t.once", "at"],
    ]);
    assert.deepEqual(entries[0]!.args, [2, 3]);
    assert.deepEqual(entries[0]!.kwargs, {});
    assert.deepEqual(entries[1]!.options, { queue: "reports", expires: 3600, priority: 5 });
    assert.ok(Object.isFrozen(entries[1]));
  }
  assert.deepEqual(normalizeBeatSchedule(undefined), []);
  assert.deepEqual(normalizeBeatSchedule({}), []);
});

Deno.test("normalizeBeatSchedule() names the entry and the field on errors", async (t) => {
  const table: [string, unknown, ErrorConstructor, RegExp][] = [
    ["missing task", { a: { schedule: 1 } }, TypeError, /"a": task must be/],
    ["empty task", { a: { task: "", schedule: 1 } }, TypeError, /"a": task must be/],
    ["missing schedule", { a: { task: "t" } }, TypeError, /"a": schedule is required/],
    ["zero interval", { a: { task: "t", schedule: 0 } }, RangeError, /"a": Cannot use interval 0/],
    ["bad crontab", { a: { task: "t", schedule: "61 * * * *" } }, RangeError, /"a":.*minute/],
    [
      "unknown schedule type",
      { a: { task: "t", schedule: true } },
      TypeError,
      /"a": Cannot use schedule/,
    ],
    ["args not a list", { a: { task: "t", schedule: 1, args: 5 } }, TypeError, /"a": args/],
    [
      "kwargs not an object",
      { a: { task: "t", schedule: 1, kwargs: [1] } },
      TypeError,
      /"a": kwargs/,
    ],
    [
      "unknown option",
      { a: { task: "t", schedule: 1, options: { exchange: "x" } } },
      TypeError,
      /unknown option "exchange"/,
    ],
    [
      "priority 10",
      { a: { task: "t", schedule: 1, options: { priority: 10 } } },
      RangeError,
      /priority must be an integer 0-9/,
    ],
    [
      "empty queue",
      { a: { task: "t", schedule: 1, options: { queue: "" } } },
      TypeError,
      /options.queue/,
    ],
    [
      "expires 0",
      { a: { task: "t", schedule: 1, options: { expires: 0 } } },
      RangeError,
      /options.expires/,
    ],
    [
      "headers not an object",
      { a: { task: "t", schedule: 1, options: { headers: "x" } } },
      TypeError,
      /options.headers/,
    ],
    [
      "list entry without name",
      [{ task: "t", schedule: 1 }],
      TypeError,
      /name must be a non-empty string/,
    ],
    [
      "duplicate names",
      [{ name: "a", task: "t", schedule: 1 }, { name: "a", task: "t", schedule: 2 }],
      TypeError,
      /"a": the name is used twice/,
    ],
    [
      "name differs from key",
      { a: { name: "b", task: "t", schedule: 1 } },
      TypeError,
      /differs from its key/,
    ],
    ["not an object", "nope", TypeError, /record of entries or a list/],
  ];
  for (const [name, input, Ctor, pattern] of table) {
    await t.step(name, () => {
      assert.throws(() => normalizeBeatSchedule(input as never), (err: Error) => {
        assert.ok(err instanceof Ctor, `${err.name}: ${err.message}`);
        assert.match(err.message, pattern);
        return true;
      });
    });
  }
});
