/**
 * src/protocol/result.ts: result records built from scratch for every state the fixtures
 * show, compared with what Python stored (field order, values, date_done form).
 */

import assert from "node:assert/strict";
import { DecodeError } from "../../src/errors.ts";
import { serializeException } from "../../src/protocol/exception.ts";
import {
  buildResultMeta,
  decodeResultMeta,
  encodeResultMeta,
  EXCEPTION_STATES,
  READY_STATES,
  type ResultInput,
  revokedException,
  States,
} from "../../src/protocol/result.ts";
import { loadFixture, pythonIsoMs } from "./_fixtures.ts";

const NOW = new Date(Date.UTC(2026, 10, 23, 7, 53, 25, 562));

/** Our record for the same outcome, compared with the fixture in full (date_done aside). */
function sameAsPython(name: string, input: ResultInput): void {
  const f = loadFixture(name);
  const python = decodeResultMeta(f.raw);
  const ours = buildResultMeta(input, NOW);
  assert.deepEqual(Object.keys(ours), Object.keys(python), `${name}: field order`);
  assert.deepEqual({ ...ours, date_done: null }, { ...python, date_done: null }, name);
  if (python.date_done === null) assert.equal(ours.date_done, null, name);
  else assert.equal(ours.date_done, "2026-11-23T07:53:25.562000", name);
  // What we store reads back the same (bigints exact).
  assert.deepEqual(decodeResultMeta(encodeResultMeta(ours)), ours, name);
}

Deno.test("SUCCESS records: plain, dict with a big integer, chain links, group member", () => {
  sameAsPython("redis-result-success", {
    taskId: "5a2b12e8-ea13-4fdb-84f5-76e8d4ba7f87",
    status: "SUCCESS",
    result: 5,
  });
  sameAsPython("redis-result-success-dict", {
    taskId: "da9c5194-200a-459f-a888-323d13176349",
    status: States.SUCCESS,
    result: {
      name: "Zoë ☃",
      n: 1,
      f: 1.5,
      big: 9007199254740993n,
      none: null,
      list: [1, "a", null, true],
      nested: { k: [1.25] },
    },
  });
  sameAsPython("redis-result-chain-first", {
    taskId: "95906849-8581-4f09-86a6-630d2c606e51",
    status: "SUCCESS",
    result: 3,
    children: [[["89cbfc94-41f2-40a6-a54a-d065b9b710e0", null], null]],
  });
  sameAsPython("redis-result-chain-last", {
    taskId: "48a00845-59e1-4966-ac79-cfe3fb88a8a8",
    status: "SUCCESS",
    result: 113,
    parentId: "89cbfc94-41f2-40a6-a54a-d065b9b710e0",
    groupId: null,
  });
  sameAsPython("redis-result-chord-body", {
    taskId: "3b30845f-e61b-4aba-be67-27e3fe5884a9",
    status: "SUCCESS",
    result: 14,
    parentId: "9fbedb2e-2ccd-47c6-b79c-4c36d9dfe272",
  });
  sameAsPython("redis-result-group-member", {
    taskId: "2c0fa7b0-0106-443d-b88a-88f1f7c328f0",
    status: "SUCCESS",
    result: 2,
    groupId: "54f39a95-4ddb-4a71-ab32-1b8d2e867252",
  });
  sameAsPython("redis-result-retried-success", {
    taskId: "52e2fad4-ac2a-44b9-add7-8ff659bba8c8",
    status: "SUCCESS",
    result: 7,
    parentId: "52e2fad4-ac2a-44b9-add7-8ff659bba8c8",
  });
});

Deno.test("FAILURE: the exception dict of ValueError('bad input') and the traceback text", () => {
  const f = loadFixture("redis-result-failure");
  const error = Object.assign(new Error("bad input"), { name: "ValueError" });
  sameAsPython("redis-result-failure", {
    taskId: "961726fe-42b7-46f2-a647-7782ae74bf5d",
    status: "FAILURE",
    result: serializeException(error),
    traceback: f.decoded.traceback,
  });
  assert.deepEqual(Object.keys(f.decoded.result), ["exc_type", "exc_message", "exc_module"]);
});

Deno.test("REVOKED (expired): TaskRevokedError('expired') from celery.exceptions", () => {
  sameAsPython("redis-result-revoked-expired", {
    taskId: "4ebb3d89-6956-467e-bb54-471b61e6295a",
    status: "REVOKED",
    result: revokedException("expired"),
  });
  assert.deepEqual(revokedException("terminated"), {
    exc_type: "TaskRevokedError",
    exc_message: ["terminated"],
    exc_module: "celery.exceptions",
  });
});

Deno.test("RETRY: not ready, so date_done is null; children hold the republished task", () => {
  const f = loadFixture("redis-result-retry-state");
  assert.equal(f.command[0], "SETEX");
  sameAsPython("redis-result-retry-state", {
    taskId: "52e2fad4-ac2a-44b9-add7-8ff659bba8c8",
    status: "RETRY",
    result: {
      exc_type: "ValueError",
      exc_message: ["first attempt fails"],
      exc_module: "builtins",
    },
    traceback: f.decoded.traceback,
    children: [[["52e2fad4-ac2a-44b9-add7-8ff659bba8c8", null], null]],
  });
});

Deno.test("extended fields come in Celery's order whatever the caller's order", () => {
  const meta = buildResultMeta({
    taskId: "t",
    status: "SUCCESS",
    result: 1,
    groupId: "g",
    parentId: "p",
    extended: {
      queue: "celery",
      retries: 0,
      worker: "w1@h",
      kwargs: {},
      args: [1],
      name: "tasks.add",
    },
  }, NOW);
  assert.deepEqual(Object.keys(meta), [
    "status",
    "result",
    "traceback",
    "children",
    "date_done",
    "group_id",
    "parent_id",
    "name",
    "args",
    "kwargs",
    "worker",
    "retries",
    "queue",
    "task_id",
  ]);
});

Deno.test("date_done only for ready states, as naive UTC isoformat", () => {
  for (const status of ["PENDING", "RECEIVED", "STARTED", "RETRY", "REJECTED", "PROGRESS"]) {
    assert.equal(buildResultMeta({ taskId: "t", status, result: null }, NOW).date_done, null);
  }
  for (const status of READY_STATES) {
    assert.equal(
      buildResultMeta({ taskId: "t", status, result: null }, NOW).date_done,
      "2026-11-23T07:53:25.562000",
    );
  }
  const whole = buildResultMeta(
    { taskId: "t", status: "SUCCESS", result: 1 },
    new Date(Date.UTC(2026, 10, 23, 7, 53, 25)),
  );
  assert.equal(whole.date_done, "2026-11-23T07:53:25", "no fraction when it is zero");
  assert.deepEqual([...READY_STATES].sort(), ["FAILURE", "REVOKED", "SUCCESS"]);
  assert.deepEqual([...EXCEPTION_STATES].sort(), ["FAILURE", "RETRY", "REVOKED"]);
  assert.equal(pythonIsoMs(whole.date_done!), Date.UTC(2026, 10, 23, 7, 53, 25));
});

Deno.test("decodeResultMeta: defaults for sparse records; refuses what is not a record", () => {
  const meta = decodeResultMeta('{"status": "PENDING", "task_id": "x"}');
  assert.deepEqual(meta, {
    status: "PENDING",
    task_id: "x",
    result: null,
    traceback: null,
    children: [],
    date_done: null,
  });
  for (const text of ["nope", "", "null", "[]", "2", '{"result": 1}', '{"status": 1}']) {
    assert.throws(() => decodeResultMeta(text), (err: unknown) => {
      assert.ok(err instanceof DecodeError, text);
      assert.equal(err.raw, text);
      return true;
    }, text);
  }
  // Python's json may write NaN in a result.
  assert.ok(Number.isNaN(decodeResultMeta('{"status": "SUCCESS", "result": NaN}').result));
});
