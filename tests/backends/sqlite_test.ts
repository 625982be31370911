/**
 * The embedded SQLite result backend: store/get/forget, SUCCESS is final, expiry, waits
 * (same-process wake-up, polling another connection's write, timeout, signal, close), and the
 * factory.
 */

import assert from "node:assert/strict";
import { createBackend } from "../../src/backends/mod.ts";
import { SqliteBackend } from "../../src/backends/sqlite.ts";
import { ConfigError, ResultTimeoutError } from "../../src/errors.ts";
import { buildResultMeta, encodeResultMeta } from "../../src/protocol/result.ts";
import { tempStore } from "../helpers/temp_store.ts";
import { runBackendContract } from "./contract.ts";

function meta(taskId: string, status: string, result: unknown) {
  return buildResultMeta({ taskId, status, result }, new Date());
}

Deno.test("sqlite backend: stores, reads, keeps SUCCESS final, forgets; big integers stay exact", async () => {
  await using store = await tempStore();
  const backend = new SqliteBackend(store.url);
  await backend.connect();
  try {
    assert.equal(await backend.get("t1"), null);
    await backend.store(meta("t1", "STARTED", null));
    assert.equal((await backend.get("t1"))!.status, "STARTED");
    await backend.store(meta("t1", "SUCCESS", 9007199254740993n));
    await backend.store(meta("t1", "FAILURE", { exc_type: "X", exc_message: [], exc_module: "m" }));
    const got = await backend.get("t1");
    assert.equal(got!.status, "SUCCESS");
    assert.equal(got!.result, 9007199254740993n);
    assert.equal(got!.task_id, "t1");
    await backend.forget("t1");
    assert.equal(await backend.get("t1"), null);
  } finally {
    await backend.close();
  }
});

Deno.test("sqlite backend: records expire after `expires` seconds", async () => {
  await using store = await tempStore();
  const backend = new SqliteBackend(`${store.url}?expires=0.05`);
  await backend.connect();
  try {
    await backend.store(meta("short", "SUCCESS", 1));
    assert.equal((await backend.get("short"))!.result, 1);
    await assert.rejects(backend.waitFor("never", { timeoutMs: 100 }), ResultTimeoutError);
    assert.equal(await backend.get("short"), null, "expired");
  } finally {
    await backend.close();
  }
});

Deno.test("sqlite backend: waitFor wakes on a same-process store, polls another connection's write", async () => {
  await using store = await tempStore();
  const writer = new SqliteBackend(store.url);
  const reader = new SqliteBackend(store.url);
  await writer.connect();
  await reader.connect();
  try {
    // Not ready yet: a STARTED record does not end the wait.
    await writer.store(meta("a", "STARTED", null));
    const waitA = reader.waitFor("a", { timeoutMs: 10_000 });
    await writer.store(meta("a", "SUCCESS", "done"));
    assert.equal((await waitA).result, "done");

    const waitB = reader.waitFor("b", { timeoutMs: 10_000 });
    const started = performance.now();
    const text = encodeResultMeta(meta("b", "FAILURE", { exc_type: "E", exc_message: [] }));
    store.exec(
      `INSERT INTO celeriac_results VALUES ('b', 'FAILURE', '${text}', ${Date.now() + 60_000})`,
    );
    assert.equal((await waitB).status, "FAILURE");
    assert.ok(performance.now() - started < 1000);
  } finally {
    await writer.close();
    await reader.close();
  }
});

Deno.test("sqlite backend: waitFor times out, honours its signal, and rejects when closed", async () => {
  await using store = await tempStore();
  const backend = new SqliteBackend(store.url);
  await backend.connect();
  try {
    const started = performance.now();
    const err = await backend.waitFor("x", { timeoutMs: 120 }).catch((e) => e);
    assert.ok(err instanceof ResultTimeoutError);
    assert.ok(performance.now() - started >= 100);

    const controller = new AbortController();
    const aborted = backend.waitFor("x", { signal: controller.signal });
    controller.abort(new Error("stop waiting"));
    await assert.rejects(aborted, /stop waiting/);
    await assert.rejects(
      backend.waitFor("x", { signal: AbortSignal.abort(new Error("pre")) }),
      /pre/,
    );

    const closing = backend.waitFor("x");
    await backend.close();
    await assert.rejects(closing, /closed/);
  } finally {
    await backend.close();
  }
});

Deno.test("sqlite backend: URL factory and parameters", async () => {
  await using store = await tempStore();
  const backend = await createBackend(`${store.url}?expires=60`);
  assert.ok(backend instanceof SqliteBackend);
  assert.equal(backend.kind, "sqlite");
  assert.equal(backend.expires, 60);
  assert.equal(new SqliteBackend(store.url).expires, 86400);
  await assert.rejects(createBackend(`${store.url}?owner=x`), ConfigError);
  await assert.rejects(createBackend(`${store.url}?expires=-1`), ConfigError);
});

runBackendContract("sqlite", async () => {
  const store = await tempStore();
  const backend = new SqliteBackend(store.url);
  await backend.connect();
  return {
    backend,
    async cleanup() {
      await backend.close();
      await store.cleanup();
    },
  };
});

Deno.test("sqlite backend: chord accounting across two connections; one join, in group_index order", async () => {
  await using store = await tempStore();
  const a = new SqliteBackend(store.url);
  const b = new SqliteBackend(store.url);
  await a.connect();
  await b.connect();
  const part = (taskId: string, groupIndex: number | null, result: unknown) => ({
    groupId: "g1",
    taskId,
    groupIndex,
    state: "SUCCESS",
    result,
  });
  try {
    await a.setChordSize("g1", 3);
    assert.equal(await a.chordPartReturn(part("t2", 2, 20)), null);
    assert.equal(await b.chordPartReturn(part("tn", null, 99)), null);
    // A redelivered member counts once.
    assert.equal(await b.chordPartReturn(part("t2", 2, 20)), null);
    const join = await a.chordPartReturn(part("t0", 0, 0));
    assert.deepEqual(join, {
      kind: "parts",
      parts: [
        { taskId: "t0", state: "SUCCESS", result: 0 },
        { taskId: "t2", state: "SUCCESS", result: 20 },
        { taskId: "tn", state: "SUCCESS", result: 99 }, // null group_index sorts last
      ],
    });
    await b.deleteChord("g1");
    assert.deepEqual(store.all("SELECT count(*) AS n FROM celeriac_chord_parts"), [{ n: 0 }]);
    assert.deepEqual(store.all("SELECT count(*) AS n FROM celeriac_chords"), [{ n: 0 }]);

    // A saved header group wins over the parts (nested groups), as on Redis.
    const tuple = [["g2", null], [[["m1", null], null]]];
    await a.saveGroup("g2", tuple);
    assert.deepEqual(await b.restoreGroup("g2"), tuple);
    await b.setChordSize("g2", 1);
    assert.deepEqual(await a.chordPartReturn({ ...part("m1", 0, 1), groupId: "g2" }), {
      kind: "saved",
      tuple,
    });
    await a.forgetGroup("g2");
    assert.equal(await b.restoreGroup("g2"), null);
  } finally {
    await a.close();
    await b.close();
  }
});
