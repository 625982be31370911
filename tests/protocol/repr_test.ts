/**
 * src/protocol/repr.ts against Python itself: python_repr_cases.json holds what Celery 5.2's
 * `saferepr` (argsrepr/kwargsrepr, event results) and Python's `repr` (exception texts)
 * print for a few hundred values (regenerate with python_repr_cases.py), and every
 * argsrepr/kwargsrepr header of the fixtures.
 */

import assert from "node:assert/strict";
import { parseJson } from "../../src/protocol/json.ts";
import {
  pyRepr,
  REPR_MAX_LENGTH,
  REPR_MAX_LEVELS,
  reprArgs,
  reprKwargs,
  safeRepr,
} from "../../src/protocol/repr.ts";
import { amqpMessage, fixtureNames, loadFixture } from "./_fixtures.ts";
import { decodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";
import { decodeTaskMessage } from "../../src/protocol/task.ts";

interface PythonCase {
  kind: "args" | "kwargs" | "saferepr" | "repr";
  json: string;
  python: string;
  maxlen?: number;
}

const TABLE = JSON.parse(
  Deno.readTextFileSync(new URL("./python_repr_cases.json", import.meta.url)),
) as { produced_by: string; cases: PythonCase[] };

function ours(c: PythonCase): string {
  const value = parseJson(c.json);
  switch (c.kind) {
    case "args":
      return reprArgs(value);
    case "kwargs":
      return reprKwargs(value);
    case "saferepr":
      return safeRepr(value, c.maxlen);
    case "repr":
      return pyRepr(value);
  }
}

Deno.test(`every case of python_repr_cases.json (${TABLE.produced_by}) prints as in Python`, () => {
  assert.ok(TABLE.cases.length > 500);
  const kinds = new Set(TABLE.cases.map((c) => c.kind));
  assert.deepEqual([...kinds].sort(), ["args", "kwargs", "repr", "saferepr"]);
  const wrong = TABLE.cases.filter((c) => ours(c) !== c.python);
  assert.deepEqual(
    wrong.slice(0, 3).map((c) => ({ ...c, ours: ours(c) })),
    [],
    `${wrong.length} cases differ`,
  );
});

Deno.test("argsrepr/kwargsrepr of every task fixture are the headers Python wrote", () => {
  let n = 0;
  for (const name of fixtureNames().filter((x) => /^(redis|amqp)-task-/.test(x))) {
    const f = loadFixture(name);
    const message = f.transport === "redis" ? decodeRedisEnvelope(f.raw).message : amqpMessage(f);
    const task = decodeTaskMessage(message);
    assert.equal(reprArgs(task.args), message.headers.argsrepr, name);
    assert.equal(reprKwargs(task.kwargs), message.headers.kwargsrepr, name);
    n++;
  }
  assert.equal(n, 21);
});

Deno.test("saferepr basics: tuples, quotes, unicode, nesting", () => {
  assert.equal(REPR_MAX_LENGTH, 1024);
  assert.equal(REPR_MAX_LEVELS, 3);
  assert.equal(reprArgs([]), "()");
  assert.equal(reprArgs([2]), "(2,)");
  assert.equal(reprArgs([2, 3]), "(2, 3)");
  assert.equal(reprArgs([[6, 8]]), "([6, 8],)");
  assert.equal(reprKwargs({}), "{}");
  assert.equal(reprKwargs({ y: 3 }), "{'y': 3}");
  assert.equal(reprKwargs({ name: "Zoë ☃" }), "{'name': 'Zoë ☃'}", "non-ASCII as is");
  assert.equal(reprArgs(["it's"]), "('it\\'s',)", "only ' is escaped");
  assert.equal(reprArgs(['say "hi"']), `('say "hi"',)`);
  assert.equal(reprArgs(["a\nb\\"]), "('a\nb\\',)", "newline and backslash as is");
  assert.equal(
    reprArgs([null, true, false, 1.5, 2n ** 64n]),
    "(None, True, False, 1.5, 18446744073709551616)",
  );
  assert.equal(reprArgs([[[[1]]]]), "([[[...]]],)");
  assert.equal(reprKwargs({ a: { b: { c: { d: 1 } } } }), "{'a': {'b': {'c': {...}}}}");
  assert.equal(safeRepr({ result: [1, 2] }), "{'result': [1, 2]}");
});

Deno.test("saferepr's 1024-character cut, as Celery cuts", () => {
  const long = reprArgs(["x".repeat(2000)]);
  assert.equal(long, "('" + "x".repeat(1023) + "...', ...");
  assert.equal(long.length, 1034, "Celery's cut can exceed the limit");
  assert.equal(reprArgs(["a".repeat(1019)]).length, 1024, "fits: not cut");
  assert.equal(reprArgs(["a".repeat(1020)]), "('" + "a".repeat(1020) + "',)", "not cut either");
  assert.equal(
    reprKwargs({ k: "v".repeat(2000), z: 1 }),
    "{'k': '" + "v".repeat(1018) + "...', ...}",
    "open brackets are closed",
  );
  assert.equal(safeRepr([1, 2, 3], 4), "[1, , ...]", "Celery drops the token after the cut");
  assert.equal(safeRepr("hello world", 5), "'hello...'");
  assert.equal(safeRepr("hello world", 8), "'hello...'", "cut at the last space");
  // Code points, not UTF-16 units: an emoji counts as one character, as in Python.
  assert.equal(reprArgs(["😀".repeat(1100)]), "('" + "😀".repeat(1023) + "...', ...");
});

Deno.test("JS values print as Python sees them after our JSON encoding", () => {
  const date = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  assert.equal(reprArgs([date]), "('2026-01-02T03:04:05.000Z',)", "toJSON()");
  assert.equal(pyRepr(date), "'2026-01-02T03:04:05.000Z'");
  assert.equal(reprArgs([undefined, () => 1]), "(None, None)", "null in arrays");
  assert.equal(reprKwargs({ a: 1, skip: undefined, f: () => 1 }), "{'a': 1}", "left out");
  assert.equal(
    reprArgs([1e21, 1e-7, 100, 1e20, 0.1 + 0.2]),
    "(1e+21, 1e-07, 100, 100000000000000000000, 0.30000000000000004)",
  );
  assert.equal(reprArgs([NaN, Infinity, -Infinity]), "(nan, inf, -inf)");
  assert.equal(reprArgs([-0]), "(0,)", "JSON writes -0 as 0, an int for Python");
});

Deno.test("pyRepr: Python's repr (exception texts)", () => {
  assert.equal(pyRepr("bad input"), "'bad input'");
  assert.equal(pyRepr("it's"), `"it's"`);
  assert.equal(pyRepr(`both ' and "`), `'both \\' and "'`);
  assert.equal(pyRepr("a\nb\\\r\t"), "'a\\nb\\\\\\r\\t'");
  assert.equal(
    pyRepr("\x00\x7f\x85\xa0\xad\u2028\ufeff😀 é"),
    "'\\x00\\x7f\\x85\\xa0\\xad\\u2028\\ufeff😀 é'",
  );
  assert.equal(pyRepr({ k: [null, true, 1.5] }), "{'k': [None, True, 1.5]}");
  const cyclic: unknown[] = [1];
  cyclic.push(cyclic);
  assert.equal(pyRepr(cyclic), "[1, [...]]", "like Python's recursive list");
  const obj: Record<string, unknown> = { a: 1 };
  obj.self = obj;
  assert.equal(pyRepr(obj), "{'a': 1, 'self': {...}}");
  assert.equal(safeRepr(cyclic), "[1, [1, [1, [...]]]]", "saferepr stops at 3 levels");
});
