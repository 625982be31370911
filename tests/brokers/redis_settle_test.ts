/**
 * The Redis broker's SETTLE script: a result store carried with its ack (`Delivery.ackWith`)
 * runs in one script, the store first, in the backend's own db; a failed script acks nothing
 * and gives the message back; acks issued before a fetch reach Redis before its FETCH (the
 * `acksBeforeFetch` promise the worker relies on). One redis-server for the file, flushed
 * before each test, stopped by the last test.
 */
import assert from "node:assert/strict";
import { RedisBackend } from "../../src/backends/redis.ts";
import { RedisBroker } from "../../src/brokers/redis/broker.ts";
import { buildResultMeta } from "../../src/protocol/result.ts";
import { encodeTaskMessage } from "../../src/protocol/task.ts";
import { monitor, type MonitoredCommand } from "../helpers/redis_monitor.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const r = await startRedis();

async function fresh() {
  await r.cli("FLUSHALL");
  const broker = new RedisBroker(r.url(0), { restoreIntervalMs: 0 });
  const backend = new RedisBackend(r.url(1), { expires: 600 });
  await broker.connect();
  await backend.connect();
  const mon = await monitor(r);
  return {
    broker,
    backend,
    mon,
    async cleanup() {
      await mon.close();
      await Promise.all([broker.close(), backend.close()]);
    },
  };
}

async function publish(broker: RedisBroker, ...ids: string[]): Promise<void> {
  for (const id of ids) {
    await broker.publish(
      encodeTaskMessage({ id, task: "tasks.add", origin: "gen1@h" }, new Date()),
      {
        exchange: "",
        routingKey: "celery",
      },
    );
  }
}

/** Publishes one task and fetches it: its delivery, recorded as unacked. */
async function publishAndFetch(broker: RedisBroker, id: string) {
  await publish(broker, id);
  const [d] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
  assert.ok(d, `task ${id} fetched`);
  return d;
}

function meta(taskId: string, status: string, result: unknown) {
  return buildResultMeta(
    { taskId, status, result, traceback: null, children: [], groupId: null, parentId: null },
    new Date(),
  );
}

/** The commands of the script whose invocation is the last non-Lua command before `i`. */
function scriptAround(commands: MonitoredCommand[], i: number): MonitoredCommand[] {
  let start = i;
  while (start > 0 && commands[start]!.lua) start--;
  let end = i;
  while (end + 1 < commands.length && commands[end + 1]!.lua) end++;
  return commands.slice(start, end + 1);
}

Deno.test("redis settle: ackWith stores in the backend's db, then acks, in one script", async () => {
  const { broker, backend, mon, cleanup } = await fresh();
  try {
    const d = await publishAndFetch(broker, "t1");
    const [tag] = (await r.cli("HKEYS", "unacked")).trim().split("\n");
    const waiting = backend.waitFor("t1", { timeoutMs: 5000 });
    await d.ackWith!(backend.resultWrite(meta("t1", "SUCCESS", 42)));

    assert.equal((await waiting).result, 42, "waiters are woken (PUBLISH)");
    assert.equal(broker.unackedCount, 0);
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
    assert.equal((await r.cli("ZCARD", "unacked_index")).trim(), "0");
    assert.equal((await r.cli("-n", "0", "EXISTS", "celery-task-meta-t1")).trim(), "0");
    const ttl = Number(await r.cli("-n", "1", "TTL", "celery-task-meta-t1"));
    assert.ok(ttl > 0 && ttl <= 600, `expiry of the backend (${ttl})`);

    const hdel = await waitFor(() =>
      mon.commands.findIndex((c) =>
        c.args[0] === "HDEL" && c.args.includes(tag!)
      ) + 1
    ) - 1;
    const script = scriptAround(mon.commands, hdel).map((c) => `${c.db} ${c.args[0]}`);
    assert.match(script[0]!, /^0 EVAL/, "one script from the broker's connection");
    assert.deepEqual(script.slice(1), [
      "1 SELECT",
      "1 MGET",
      "1 SETEX",
      "1 PUBLISH",
      "0 SELECT",
      "0 ZREM",
      "0 HDEL",
    ]);
  } finally {
    await cleanup();
  }
});

Deno.test("redis settle: a stored SUCCESS is kept; the ack still lands", async () => {
  const { broker, backend, cleanup } = await fresh();
  try {
    const d = await publishAndFetch(broker, "t1");
    await backend.store(meta("t1", "SUCCESS", "first"));
    await d.ackWith!(backend.resultWrite(meta("t1", "FAILURE", { exc_type: "X" })));
    const stored = await backend.get("t1");
    assert.deepEqual([stored?.status, stored?.result], ["SUCCESS", "first"]);
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
  } finally {
    await cleanup();
  }
});

Deno.test("redis settle: a write for another server is not carried", async () => {
  const { broker, cleanup } = await fresh();
  try {
    const d = await publishAndFetch(broker, "t1");
    const elsewhere = new RedisBackend(`redis://127.0.0.1:${r.port === 1 ? 2 : 1}/1`);
    assert.equal(d.ackWith!(elsewhere.resultWrite(meta("t1", "SUCCESS", 1))), null);
    assert.equal(broker.unackedCount, 1, "nothing settled: the caller stores and acks itself");
    await d.ack();
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
  } finally {
    await cleanup();
  }
});

Deno.test("redis settle: a script that fails acks nothing and gives the message back", async () => {
  const { broker, backend, cleanup } = await fresh();
  try {
    const d = await publishAndFetch(broker, "t1");
    // A write for a db the server does not have: its SELECT fails inside the script.
    const write = { ...backend.resultWrite(meta("t1", "SUCCESS", 1)), db: 99 };
    await assert.rejects(d.ackWith!(write)!, /DB index is out of range/);
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
    assert.equal(await broker.queueSize("celery"), 1, "back in its queue");
    const [again] = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
    assert.equal(again!.message?.headers.id, "t1");
    assert.equal(again!.redelivered, true);
    await again!.ack();
  } finally {
    await cleanup();
  }
});

Deno.test("redis settle: one MGET per run of results in one db, each stored in its db", async () => {
  const { broker, backend, mon, cleanup } = await fresh();
  try {
    await publish(broker, "t1", "t2", "t3", "t4");
    const got = await broker.fetch(["celery"], { max: 4, timeoutMs: 100 });
    assert.equal(got.length, 4);
    const dbs = [1, 1, 2, 1];
    // Issued together: one SETTLE script carries all four.
    await Promise.all(got.map((d, i) => {
      const id = d.message!.headers.id as string;
      return d.ackWith!({ ...backend.resultWrite(meta(id, "SUCCESS", i)), db: dbs[i]! })!;
    }));
    for (const [i, db] of dbs.entries()) {
      const stored = await r.cli("-n", String(db), "GET", `celery-task-meta-t${i + 1}`);
      assert.equal(JSON.parse(stored).result, i, `t${i + 1} in db ${db}`);
    }
    assert.equal((await r.cli("HLEN", "unacked")).trim(), "0");
    await waitFor(() => mon.commands.some((c) => c.lua && c.args[0] === "HDEL")); // MONITOR lags
    const script = mon.commands.filter((c) => c.lua && /^(SELECT|M?GET)$/.test(c.args[0]!))
      .map((c) => `${c.db} ${c.args.join(" ")}`);
    assert.deepEqual(script, [
      "1 SELECT 1",
      "1 MGET celery-task-meta-t1 celery-task-meta-t2",
      "2 SELECT 2",
      "2 MGET celery-task-meta-t3",
      "1 SELECT 1",
      "1 MGET celery-task-meta-t4",
      "0 SELECT 0",
    ]);
  } finally {
    await cleanup();
  }
});

Deno.test("redis settle: acks issued before a fetch reach Redis before its FETCH", async () => {
  const { broker, mon, cleanup } = await fresh();
  try {
    await publish(broker, "t1", "t2", "t3");
    const [d1, d2] = await broker.fetch(["celery"], { max: 2, timeoutMs: 100 });
    const tags = (await r.cli("HKEYS", "unacked")).trim().split("\n");
    assert.equal(tags.length, 2);
    const first = d1!.ack();
    // Let the first ack go out, so the second queues behind a batch in flight.
    await Promise.resolve();
    await Promise.resolve();
    const second = d2!.ack();
    const fetched = await broker.fetch(["celery"], { max: 1, timeoutMs: 100 });
    await Promise.all([first, second]);
    assert.equal(fetched.length, 1);

    // The FETCH script's pops come after both acks' ZREMs (without flushing the queued ack
    // first, the second one would follow the FETCH, behind the batch in flight).
    // Two FETCHes, one `RPOP celery <count>` each (the test server has RPOP count).
    await waitFor(() => mon.commands.filter((c) => c.args[0] === "RPOP").length >= 2);
    const lastPop = mon.commands.findLastIndex((c) => c.args[0] === "RPOP");
    for (const tag of tags) {
      const at = mon.commands.findIndex((c) => c.args[0] === "ZREM" && c.args.includes(tag));
      assert.ok(at >= 0 && at < lastPop, `ack of ${tag} at ${at}, FETCH pops at ${lastPop}`);
    }
    await fetched[0]!.ack();
  } finally {
    await cleanup();
  }
});

Deno.test("redis settle: stop the test redis-server", () => r.stop());
