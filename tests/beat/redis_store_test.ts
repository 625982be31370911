/**
 * RedisBeatStore against a real redis-server (started on a free loopback port per test):
 * the lease (SET NX PX, compare-and-set renew and release, expiry) and the atomic
 * lease-check + compare-and-set commit; and a beat that outlives a Redis restart.
 */
import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { Beat } from "../../src/beat/beat.ts";
import { beatKeys, RedisBeatStore } from "../../src/beat/redis_store.ts";
import { Logger } from "../../src/log.ts";
import { createBeatStore, type EntryState } from "../../src/beat/store.ts";
import { BrokerConnectionError } from "../../src/errors.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const S1: EntryState = { lastRunAt: Date.UTC(2026, 0, 1), totalRunCount: 1, lastSentAt: null };
const S2: EntryState = { lastRunAt: Date.UTC(2026, 0, 2), totalRunCount: 2, lastSentAt: 7 };

Deno.test("RedisBeatStore: lease, atomic commit, conflicts, release", async () => {
  const redis = await startRedis();
  const a = new RedisBeatStore(redis.url(3), { keyPrefix: "t.beat" });
  const b = await createBeatStore(redis.url(3), { keyPrefix: "t.beat" }) as RedisBeatStore;
  try {
    await a.open();
    await b.open();
    assert.equal(a.highlyAvailable, true);
    assert.deepEqual(a.keys, beatKeys("t.beat"));
    assert.deepEqual(a.keys, { lease: "t.beat.lease", state: "t.beat.state" });
    assert.match(a.description, /^redis redis:\/\/127\.0\.0\.1:\d+\/3 key t\.beat\.state$/);

    // Only one holds the lease; the holder renews it.
    assert.equal(await a.acquire(10_000), true);
    assert.equal(await b.acquire(10_000), false);
    assert.equal((await redis.cli("-n", "3", "GET", "t.beat.lease")).trim(), a.token);
    assert.equal(await a.acquire(10_000), true);
    const pttl = Number(await redis.cli("-n", "3", "PTTL", "t.beat.lease"));
    assert.ok(pttl > 9_000 && pttl <= 10_000, `pttl ${pttl}`);

    // Commit: only the holder, only from the expected state.
    assert.deepEqual(await b.commit("e", null, S1, 10_000), { status: "not-leader" });
    const ok = await a.commit("e", null, S1, 10_000);
    assert.equal(ok.status, "ok");
    const raw1 = ok.status === "ok" ? ok.stored.raw : "";
    assert.equal((await redis.cli("-n", "3", "HGET", "t.beat.state", "e")).trim(), raw1);
    const stale = await a.commit("e", null, S2, 10_000);
    assert.equal(stale.status, "conflict");
    assert.deepEqual(stale.status === "conflict" ? stale.current : null, {
      state: S1,
      raw: raw1,
    });
    assert.equal((await a.commit("e", raw1, S2, 10_000)).status, "ok");
    assert.deepEqual((await b.load()).get("e")?.state, S2);

    // Release by a non-holder does nothing; by the holder frees the lease for b.
    await b.release();
    assert.equal(await b.acquire(10_000), false);
    await a.release();
    assert.equal(await b.acquire(10_000), true);
    assert.deepEqual(await a.commit("e", null, S1, 10_000), { status: "not-leader" });
  } finally {
    await a.close();
    await b.close();
    await redis.stop();
  }
});

Deno.test("RedisBeatStore: an unrenewed lease expires and another store takes it", async () => {
  const redis = await startRedis();
  const a = new RedisBeatStore(redis.url());
  const b = new RedisBeatStore(redis.url());
  try {
    await a.open();
    await b.open();
    assert.equal(await a.acquire(300), true);
    assert.equal(await b.acquire(300), false);
    await waitFor(() => b.acquire(300), { timeoutMs: 3_000, intervalMs: 50 });
    assert.equal(await a.acquire(300), false, "a cannot renew a lease it lost");
    assert.deepEqual(await a.commit("e", null, S1, 300), { status: "not-leader" });
  } finally {
    await a.close();
    await b.close();
    await redis.stop();
  }
});

Deno.test("RedisBeatStore.open() fails with BrokerConnectionError when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const store = new RedisBeatStore(`redis://127.0.0.1:${port}/0`);
  try {
    await assert.rejects(() => store.open(), BrokerConnectionError);
  } finally {
    await store.close();
  }
});

Deno.test("Beat on Redis keeps going across a Redis restart (sends again once it is back)", async () => {
  const redis = await startRedis();
  const app = createApp({ broker: redis.url(0), backend: null });
  const logs: string[] = [];
  const beat = new Beat(app, {
    schedule: { tick: { task: "t.tick", schedule: 0.3 } },
    leaseTtlMs: 1_500,
    retryMs: 100,
    logger: new Logger("info", (line) => logs.push(line)),
  });
  const queued = async () => Number((await redis.cli("LLEN", "celery")).trim());
  try {
    await beat.start();
    await waitFor(async () => (await queued()) >= 2, { timeoutMs: 10_000, intervalMs: 50 });
    await redis.restart(); // empty again: no queue, no state, no lease
    await waitFor(async () => (await queued()) >= 2, {
      timeoutMs: 15_000,
      intervalMs: 50,
      message: "sends after the restart",
    });
    assert.equal(beat.isLeader, true);
  } finally {
    await beat.stop();
    await app.close();
    await redis.stop();
  }
});
