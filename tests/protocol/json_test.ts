/**
 * src/protocol/json.ts: JSON as Python writes it (exact big integers, NaN/Infinity), and the
 * guard against V8's mis-read of escaped object keys.
 */

import assert from "node:assert/strict";
import { parseJson, parseJsonFast, stringifyJson } from "../../src/protocol/json.ts";

Deno.test("integers above 2^53 round-trip exactly; others stay numbers", () => {
  const text =
    '{"big": 9007199254740993, "neg": -9007199254740993, "edge": 9007199254740992, "safe": 9007199254740991, "small": 1, "float": 1.5, "e": 1e400, "f": 12345678901234567890.0}';
  const value = parseJson(text);
  assert.equal(value.big, 9007199254740993n);
  assert.equal(value.neg, -9007199254740993n);
  assert.equal(value.edge, 9007199254740992n);
  assert.equal(value.safe, 9007199254740991);
  assert.equal(value.small, 1);
  assert.equal(value.float, 1.5);
  assert.equal(value.e, Infinity, "a float literal stays a float");
  assert.equal(value.f, 12345678901234567000);
  assert.equal(
    stringifyJson({ big: value.big, neg: value.neg, small: 1 }),
    '{"big":9007199254740993,"neg":-9007199254740993,"small":1}',
  );
  assert.equal(stringifyJson([2n ** 64n]), "[18446744073709551616]");
});

Deno.test("Python's NaN, Infinity and -Infinity are read; strings holding those words are not", () => {
  const value = parseJson(
    '{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN", "d": "x \\" NaN", "big": 9007199254740993}',
  );
  assert.ok(Number.isNaN(value.a));
  assert.deepEqual(value.b, [Infinity, -Infinity]);
  assert.equal(value.c, "NaN");
  assert.equal(value.d, 'x " NaN');
  assert.equal(value.big, 9007199254740993n);
  assert.equal(stringifyJson([NaN, Infinity]), "[null,null]", "written as JSON.stringify does");
  for (const bad of ["[NaNa]", "[nan]", "[Infinity", "NaN x", "[-NaN]", "[+Infinity]"]) {
    assert.throws(() => parseJson(bad), SyntaxError, bad);
  }
});

Deno.test("invalid JSON throws SyntaxError", () => {
  for (const bad of ["", "{", "[1,]", "{'a': 1}", "[1] 2", '{"a" 1}', "tru", "[01]", '"\t"']) {
    assert.throws(() => parseJson(bad), SyntaxError, JSON.stringify(bad));
    assert.throws(() => parseJsonFast(bad), SyntaxError, JSON.stringify(bad));
  }
});

// V8 15.0 (Deno 2.9): once an object with a key holding a backslash (say {"k": 1, "\\": 2})
// has been parsed anywhere in the process, JSON.parse returns that key for a later object
// with the same previous keys whose next key is written with an escape and has the same
// decoded length ("\u00e9" ⇒ "\\"). Python escapes every non-ASCII character.
Deno.test("escaped keys are read right even after V8 learned a backslash key", () => {
  const cases: [string, string, unknown][] = [
    ['{"k": 1, "\\\\": 2}', '{"k": 1, "\\u00e9": 2}', { k: 1, "é": 2 }],
    ['{"k": 1, "\\\\": 2}', '{"k": 1, "\\n": 2}', { k: 1, "\n": 2 }],
    ['{"k": 1, "x\\\\": 2}', '{"k": 1, "x\\u00e9": 2}', { k: 1, "xé": 2 }],
    ['{"k": 1, "\\\\u": 2}', '{"k": 1, "\\u00e9u": 9007199254740993}', {
      k: 1,
      "éu": 9007199254740993n,
    }],
    ['{"a": {"k": 1, "\\\\": 2}}', '[{"a": {"k": 1, "\\u2603": [1, {"z": "\\\\"}]}}]', [{
      a: { k: 1, "☃": [1, { z: "\\" }] },
    }]],
    ['{"k": 1, "\\\\": 2}', '{"k": 1, "\\\\": 3, "\\u00e9": NaN}', { k: 1, "\\": 3, "é": NaN }],
  ];
  for (const [poison, victim, expected] of cases) {
    JSON.parse(poison);
    assert.deepEqual(parseJson(victim), expected, victim);
    if (!victim.includes("NaN") && !victim.includes("9007199254740993")) {
      assert.deepEqual(parseJsonFast(victim), expected, victim);
    }
  }
});

Deno.test("the careful reader agrees with JSON.parse on every JSON feature", () => {
  // A backslash key forces the careful reader for the whole text.
  const doc = {
    "\\": true,
    s: 'a"b\\c/d\b\f\n\r\t\u0000\u001f é ☃ 😀 \ud800',
    n: [0, -0, 1, -1, 1.5, -2.5e-7, 1e21, 1.7976931348623157e308, 5e-324, 9007199254740991],
    nested: { a: [[], {}, [null, true, false]], "": "", " ": " " },
    "1": "one",
    "0": "zero",
  };
  const text = JSON.stringify(doc, null, 2).replace(/é/g, "\\u00e9")
    .replace("{", '{"__proto__": {"polluted": true},');
  const ours = parseJson(text);
  const v8 = JSON.parse(text);
  assert.deepEqual(ours, v8);
  assert.deepEqual(Object.keys(ours), Object.keys(v8), "key order (integer keys first)");
  assert.ok(Object.hasOwn(ours, "__proto__"), "__proto__ is an own key, as with JSON.parse");
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.ok(Object.is(parseJson('{"\\\\": -0}')["\\"], -0), "-0 as JSON.parse reads it");
  assert.deepEqual(parseJson(' {"\\\\" : [ 1 , 2 ] } '), { "\\": [1, 2] }, "whitespace");
  assert.deepEqual(parseJson('{"a": 1, "a": 2, "\\\\": 0}'), { a: 2, "\\": 0 }, "last wins");
  for (const bad of ['{"\\\\": 1,}', '{"\\\\": "\\x"}', '{"\\\\": "\\u12"}', '{"\\\\": 01}']) {
    assert.throws(() => parseJson(bad), SyntaxError, bad);
  }
});

Deno.test("parseJson reads texts without a 16-digit run with plain JSON.parse, still exact", () => {
  // 15 digits are always safe; 2^53 + 1 and its negative need the exact path.
  assert.deepEqual(parseJson("[999999999999999, -999999999999999, 1e300, 0.1234567890123]"), [
    999999999999999,
    -999999999999999,
    1e300,
    0.1234567890123,
  ]);
  assert.deepEqual(parseJson("[9007199254740993, -9007199254740993]"), [
    9007199254740993n,
    -9007199254740993n,
  ]);
  assert.equal(parseJson("-9007199254740993"), -9007199254740993n);
  assert.equal(parseJson("9007199254740991"), 9007199254740991, "2^53 - 1 is safe");
  // A 16-digit run anywhere (here in a string) takes the exact path; the result is the same.
  assert.deepEqual(
    parseJson('{"id": "1234567890123456", "n": 7, "big": [[-18446744073709551617]]}'),
    {
      id: "1234567890123456",
      n: 7,
      big: [[-18446744073709551617n]],
    },
  );
  assert.deepEqual(parseJson('{"__proto__": 1}'), JSON.parse('{"__proto__": 1}'));
  // The V8 escaped-key guard applies on both paths.
  JSON.parse('{"k": 1, "\\\\": 2}');
  assert.deepEqual(parseJson('{"k": 1, "\\u00e9": 2}'), { k: 1, "é": 2 });
  JSON.parse('{"k": 1, "\\\\": 2}');
  assert.deepEqual(parseJson('{"k": 1, "\\u00e9": 9007199254740993}'), {
    k: 1,
    "é": 9007199254740993n,
  });
});

Deno.test("stringifyJson: plain JSON.stringify unless a bigint forces the replacer", () => {
  const date = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  assert.equal(
    stringifyJson({ a: [1, "x", null], d: date }),
    JSON.stringify({ a: [1, "x", null], d: date }),
  );
  assert.equal(
    stringifyJson({ d: date, deep: [{ n: -(2n ** 70n) }], s: "é" }),
    `{"d":"2026-01-02T03:04:05.000Z","deep":[{"n":-1180591620717411303424}],"s":"é"}`,
  );
  assert.equal(stringifyJson(undefined), undefined);
  const cyclic: Record<string, unknown> = { big: 1n };
  cyclic.self = cyclic;
  assert.throws(() => stringifyJson(cyclic), TypeError);
  assert.throws(() => stringifyJson({ self: cyclic }), TypeError);
});
