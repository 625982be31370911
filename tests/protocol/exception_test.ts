/**
 * src/protocol/exception.ts: exceptions in Celery's JSON form, read from the fixtures and
 * written so that a Python client rebuilds them.
 */

import assert from "node:assert/strict";
import {
  CELERIAC_EXC_MODULE,
  formatTraceback,
  readException,
  serializeException,
} from "../../src/protocol/exception.ts";
import { decodeResultMeta } from "../../src/protocol/result.ts";
import { loadFixture } from "./_fixtures.ts";

Deno.test("readException of the FAILURE, RETRY and REVOKED fixtures", () => {
  assert.deepEqual(
    readException(decodeResultMeta(loadFixture("redis-result-failure").raw).result),
    {
      exc_type: "ValueError",
      exc_message: ["bad input"],
      exc_module: "builtins",
    },
  );
  assert.deepEqual(
    readException(decodeResultMeta(loadFixture("redis-result-retry-state").raw).result),
    { exc_type: "ValueError", exc_message: ["first attempt fails"], exc_module: "builtins" },
  );
  assert.deepEqual(
    readException(decodeResultMeta(loadFixture("redis-result-revoked-expired").raw).result),
    { exc_type: "TaskRevokedError", exc_message: ["expired"], exc_module: "celery.exceptions" },
  );
  const f = loadFixture("redis-result-failure");
  assert.match(
    f.decoded.traceback,
    /^Traceback \(most recent call last\):\n[\s\S]*ValueError: bad input\n$/,
  );
});

Deno.test("readException tolerates older forms and refuses non-exceptions", () => {
  assert.deepEqual(readException({ exc_type: "KeyError", exc_message: "k" }), {
    exc_type: "KeyError",
    exc_message: ["k"],
    exc_module: "builtins",
  });
  assert.deepEqual(readException({ exc_type: "E", exc_message: null, exc_module: "m" }), {
    exc_type: "E",
    exc_message: [],
    exc_module: "m",
  });
  for (const value of [null, 5, "ValueError", [], { result: 1 }, { exc_type: 1 }]) {
    assert.equal(readException(value), undefined);
  }
});

Deno.test("serializeException: Python builtins under builtins, others under celeriac", () => {
  assert.deepEqual(serializeException(new TypeError("t")), {
    exc_type: "TypeError",
    exc_message: ["t"],
    exc_module: "builtins",
  });
  assert.deepEqual(serializeException(new RangeError("r")), {
    exc_type: "RangeError",
    exc_message: ["r"],
    exc_module: CELERIAC_EXC_MODULE,
  });
  // A name that is a Python builtin function, not an exception, must not point at builtins.
  assert.equal(
    serializeException(Object.assign(new Error("x"), { name: "print" })).exc_module,
    "celeriac",
  );
  assert.deepEqual(
    serializeException(Object.assign(new Error("tasks.nope"), {
      excType: "NotRegistered",
      excModule: "celery.exceptions",
      excArgs: ["tasks.nope"],
    })),
    { exc_type: "NotRegistered", exc_message: ["tasks.nope"], exc_module: "celery.exceptions" },
  );
  assert.deepEqual(serializeException("plain"), {
    exc_type: "Error",
    exc_message: ["plain"],
    exc_module: "celeriac",
  });
  assert.match(formatTraceback(new Error("boom")) ?? "", /boom/);
  assert.equal(formatTraceback("not an error"), null);
});
