import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import {
  createBeatStore,
  decodeState,
  encodeState,
  FileBeatStore,
  MemoryBeatData,
  MemoryBeatStore,
} from "../../src/beat/store.ts";

const S1 = { lastRunAt: Date.UTC(2026, 0, 1), totalRunCount: 1, lastSentAt: Date.UTC(2026, 0, 1) };
const S2 = { lastRunAt: Date.UTC(2026, 0, 2), totalRunCount: 2, lastSentAt: null };

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-beat-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("encodeState()/decodeState() round-trip; bad text decodes to null", () => {
  for (const s of [S1, S2]) assert.deepEqual(decodeState(encodeState(s)), s);
  for (const bad of ["", "x", "{}", '{"lastRunAt":"nope","totalRunCount":1,"lastSentAt":null}']) {
    assert.equal(decodeState(bad), null, bad);
  }
  assert.equal(
    decodeState('{"lastRunAt":"2026-01-01T00:00:00.000Z","totalRunCount":-1,"lastSentAt":null}'),
    null,
  );
});

Deno.test("FileBeatStore.commit() compares and sets, and survives a reopen", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state.json`;
    const a = new FileBeatStore(path);
    await a.open();
    assert.equal((await a.load()).size, 0);
    assert.equal(await a.acquire(), true);
    const r1 = await a.commit("e", null, S1);
    assert.equal(r1.status, "ok");
    const raw1 = r1.status === "ok" ? r1.stored.raw : "";
    const stale = await a.commit("e", null, S2);
    assert.equal(stale.status, "conflict");
    assert.deepEqual(stale.status === "conflict" ? stale.current?.state : null, S1);
    assert.equal((await a.commit("e", raw1, S2)).status, "ok");
    await a.close();
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), [
      "state.json",
    ]);
    const b = new FileBeatStore(path);
    await b.open();
    assert.deepEqual((await b.load()).get("e")?.state, S2);
    await b.close();
  });
});

Deno.test("FileBeatStore.open() refuses a file that is not a state file, and leaves it", async () => {
  await withTempDir(async (dir) => {
    for (const text of ["not json", '{"some":"thing"}']) {
      const path = `${dir}/state.json`;
      await Deno.writeTextFile(path, text);
      await assert.rejects(() => new FileBeatStore(path).open(), ConfigError);
      assert.equal(await Deno.readTextFile(path), text);
    }
  });
});

Deno.test("FileBeatStore.commit() that cannot write throws and keeps the previous state", async () => {
  await withTempDir(async (dir) => {
    const store = new FileBeatStore(`${dir}/missing-dir/state.json`);
    await store.open();
    await assert.rejects(() => store.commit("e", null, S1), Deno.errors.NotFound);
    assert.equal((await store.load()).size, 0);
    await store.close();
  });
});

Deno.test("MemoryBeatStore: the lease expires, can be taken over, and is released only by its holder", async () => {
  const data = new MemoryBeatData();
  const a = new MemoryBeatStore(data);
  const b = new MemoryBeatStore(data);
  assert.equal(await a.acquire(60_000), true);
  assert.equal(await b.acquire(60_000), false);
  await b.release(); // not the holder: no effect
  assert.equal(await b.acquire(60_000), false);
  data.lease!.expiresAt = Date.now() - 1; // a stopped renewing
  assert.equal((await a.commit("e", null, S1, 60_000)).status, "not-leader");
  assert.equal(await b.acquire(60_000), true);
  assert.equal(await a.acquire(60_000), false);
  await b.release();
  assert.equal(data.lease, null);
});

Deno.test("createBeatStore() picks the store by spec", async () => {
  assert.ok(await createBeatStore("memory://") instanceof MemoryBeatStore);
  const file = await createBeatStore("file:///tmp/some%20dir/state.json");
  assert.ok(file instanceof FileBeatStore);
  assert.equal((file as FileBeatStore).path, "/tmp/some dir/state.json");
  assert.equal(((await createBeatStore("beat.json")) as FileBeatStore).path, "beat.json");
  await assert.rejects(() => createBeatStore("amqp://guest:secret@host//"), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.doesNotMatch(err.message, /secret/);
    return true;
  });
});
