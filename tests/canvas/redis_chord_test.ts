/**
 * Chords and saved groups on a real redis-server (Redis broker and backend, in-process
 * worker): the commands on `celery-taskset-meta-<gid>*` seen by `MONITOR` are compared with
 * the sequence captured from Python Celery 5.2 (redis-result-chord-join.json), keys are
 * gone once the body ran, `resultExpires` reaches every key, a failed member fails the body
 * with ChordError, and `GroupResult.save()` writes Python's record.
 */

import assert from "node:assert/strict";
import { chord, createApp, type GroupResult, TaskFailedError, Worker } from "../../mod.ts";
import { Logger } from "../../src/log.ts";
import { monitor, parseMonitorLine } from "../helpers/redis_monitor.ts";
import { startRedis, type TestRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const FIXTURES = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);
const fixture = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(name, FIXTURES)));

Deno.test("redis chord test helper: MONITOR lines are read back to their arguments", () => {
  assert.deepEqual(
    parseMonitorLine('1700000000.1 [1 127.0.0.1:5] "SET" "k" "{\\"a\\": \\"\\xc3\\xa9\\\\\\n\\"}"'),
    { db: 1, lua: false, args: ["SET", "k", '{"a": "é\\\n"}'] },
  );
  assert.equal(parseMonitorLine("OK"), null);
});

async function withRedis(fn: (redis: TestRedis) => Promise<void>): Promise<void> {
  const redis = await startRedis();
  try {
    await fn(redis);
  } finally {
    await redis.stop();
  }
}

function setupApp(redis: TestRedis, resultExpires?: number) {
  const app = createApp({ broker: redis.url(0), backend: redis.url(1), resultExpires });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const xsum = app.task("tasks.xsum", (v: number[]) => v.reduce((a, b) => a + b, 0));
  const fail = app.task("tasks.fail", (m: string): never => {
    throw Object.assign(new Error(m), { name: "ValueError" });
  });
  return { app, add, xsum, fail };
}

Deno.test("redis chord: MONITOR shows Celery's exact commands on the chord keys, in order", async () => {
  await withRedis(async (redis) => {
    const mon = await monitor(redis);
    const { app, add, xsum } = setupApp(redis);
    const worker = new Worker(app, { concurrency: 1, logLevel: "critical", fetchTimeoutMs: 100 });
    try {
      await worker.start();
      const result = await chord([add.s(3, 3), add.s(4, 4)], xsum.s()).applyAsync();
      assert.equal(await result.get({ timeout: 10 }), 14);
      const header = result.parent as GroupResult;
      const gid = header.id;
      const prefix = `celery-taskset-meta-${gid}`;
      await waitFor(
        () => mon.commands.some((c) => /^del$/i.test(c.args[0]!) && c.args[1] === `${prefix}.s`),
        { message: "the chord keys deleted" },
      );
      const ours = mon.commands
        .filter((c) => c.db === 1 && c.args.slice(1).some((a) => a.startsWith(prefix)))
        .map((c) => [c.args[0]!.toUpperCase(), ...c.args.slice(1)]);
      const f = fixture("redis-result-chord-join.json");
      const [id0, id1] = header.ids;
      const theirs = (f.commands as string[][])
        // The capture tool's own GET of .s (it recorded redis-result-chord-size) is not Celery's.
        .filter((c, i) => !(i === 2 && c[0] === "GET"))
        .map((c) =>
          c.map((a) =>
            a.replaceAll(f.group_id, gid)
              .replaceAll("25529022-4fcb-483d-8e77-4a0f45d4ead8", id0!)
              .replaceAll("9fbedb2e-2ccd-47c6-b79c-4c36d9dfe272", id1!)
          )
        );
      assert.deepEqual(ours, theirs);
      // Nothing of the chord is left; the results stay.
      assert.equal((await redis.cli("-n", "1", "KEYS", `${prefix}*`)).trim(), "");
      assert.equal(
        Number((await redis.cli("-n", "1", "EXISTS", `celery-task-meta-${result.id}`)).trim()),
        1,
      );
    } finally {
      await worker.stop();
      await app.close();
      await mon.close();
    }
  });
});

Deno.test("redis chord: the app's resultExpires reaches result keys and chord keys", async () => {
  await withRedis(async (redis) => {
    const mon = await monitor(redis);
    const { app, add, xsum } = setupApp(redis, 120);
    const worker = new Worker(app, { logLevel: "critical", fetchTimeoutMs: 100 });
    try {
      await worker.start();
      const result = await chord([add.s(1, 1), add.s(2, 2)], xsum.s()).applyAsync();
      assert.equal(await result.get({ timeout: 10 }), 6);
      const ttl = Number(
        (await redis.cli("-n", "1", "TTL", `celery-task-meta-${result.id}`)).trim(),
      );
      assert.ok(ttl > 100 && ttl <= 120, `result ttl ${ttl}`);
      const gid = (result.parent as GroupResult).id;
      await waitFor(() =>
        mon.commands.some((c) => /^del$/i.test(c.args[0]!) && c.args[1]!.includes(gid))
      );
      const expiries = mon.commands
        .filter((c) => /^(setex|expire)$/i.test(c.args[0]!) && c.args[1]!.includes(gid))
        .map((c) => c.args[2]);
      assert.ok(expiries.length >= 7, `expiries ${expiries}`);
      assert.ok(expiries.every((s) => s === "120"), `expiries ${expiries}`);
      // The URL parameter wins over the app's setting.
      const other = createApp({
        broker: redis.url(0),
        backend: `${redis.url(1)}?expires=60`,
        resultExpires: 120,
      });
      const backend = await other.backend();
      assert.equal((backend as unknown as { expires: number }).expires, 60);
      await other.close();
    } finally {
      await worker.stop();
      await app.close();
      await mon.close();
    }
  });
});

Deno.test("redis chord: a failed member fails the body with ChordError; keys are cleaned up", async () => {
  await withRedis(async (redis) => {
    const { app, add, xsum, fail } = setupApp(redis);
    const worker = new Worker(app, { logLevel: "critical", fetchTimeoutMs: 100 });
    try {
      await worker.start();
      const result = await chord([add.s(1, 1), fail.s("bad member")], xsum.s()).applyAsync();
      const err = await result.get({ timeout: 10 }).then(
        () => assert.fail("expected ChordError"),
        (e) => e,
      );
      assert.ok(err instanceof TaskFailedError);
      assert.equal(err.excType, "ChordError");
      const gid = (result.parent as GroupResult).id;
      await waitFor(async () =>
        (await redis.cli("-n", "1", "KEYS", `celery-taskset-meta-${gid}*`)).trim() === ""
      );
    } finally {
      await worker.stop();
      await app.close();
    }
  });
});

Deno.test("redis groups: save() writes Python's celery-taskset-meta record (SETEX + PUBLISH); restore reads it", async () => {
  await withRedis(async (redis) => {
    const { app, add } = setupApp(redis);
    const worker = new Worker(app, {
      logLevel: "critical",
      fetchTimeoutMs: 100,
      logger: new Logger("critical"),
    });
    try {
      await worker.start();
      const { group, GroupResult } = await import("../../mod.ts");
      const result = await group(add.s(1, 1), add.s(2, 2)).applyAsync();
      assert.deepEqual(await result.get({ timeout: 10 }), [2, 4]);
      await result.save();
      const raw =
        (await redis.cli("-n", "1", "--no-raw", "GET", `celery-taskset-meta-${result.id}`))
          .trim();
      const f = fixture("redis-result-group.json");
      const expected = f.raw.replaceAll(f.group_id, result.id)
        .replaceAll(f.member_ids[0], result.ids[0])
        .replaceAll(f.member_ids[1], result.ids[1]);
      assert.equal(JSON.parse(raw), expected, "byte for byte Python's record");
      const ttl = Number(
        (await redis.cli("-n", "1", "TTL", `celery-taskset-meta-${result.id}`)).trim(),
      );
      assert.ok(ttl > 86000, `ttl ${ttl}`);
      const restored = await GroupResult.restore(app, result.id);
      assert.deepEqual(await restored?.get({ timeout: 5 }), [2, 4]);
      await result.delete();
      assert.equal(await GroupResult.restore(app, result.id), null);
    } finally {
      await worker.stop();
      await app.close();
    }
  });
});
