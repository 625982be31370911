/**
 * The incident, end to end on a real redis-server: queue `celery` is flooded with 2,000
 * slow tasks while 20 login-SMS tasks wait (10 behind the flood, 10 on a queue nobody
 * consumes). Recovered from another process with control.ts only (no redis-cli):
 *
 * 1. `inspect active` shows the pool busy with the flood;
 * 2. `control add_consumer sms` makes the worker take the stranded queue: 10 SMS done;
 * 3. `control rate_limit tasks.slow 1/m` stops new slow tasks from starting;
 * 4. `control revoke --task-name tasks.slow` takes every waiting slow message out of the
 *    queue (REVOKED) and revokes the held ones: the 10 SMS behind the flood run at once;
 * 5. `control cancel_consumer sms` puts the queues back.
 *
 * Then the counts add up: every slow task is SUCCESS (ran before or during the incident) or
 * REVOKED (exactly those the revoke reported), every SMS is SUCCESS, nothing is left queued
 * or unacked, and nothing ran twice. A second part checks `purge --task-name` on a queue of
 * mixed tasks: the others stay byte for byte, in order.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { runChild } from "../helpers/process.ts";
import {
  type CeleryUrls,
  REPO_ROOT,
  startCeleriacWorker,
  type WorkerProcess,
} from "../helpers/python_celery.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const NODE = "w1@incident";
const SLOW = 2000;
const URGENT = 10;

/** `deno run -A control.ts <args> --broker <url>` from another process. */
async function controlTs(broker: string, ...args: string[]) {
  const r = await runChild(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/control.ts`, ...args, "--broker", broker],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    timeoutMs: 60_000,
    label: `control.ts ${args.join(" ")}`,
  });
  assert.equal(r.code, 0, `control.ts ${args.join(" ")}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

// deno-lint-ignore no-explicit-any
async function controlJson(broker: string, ...args: string[]): Promise<any> {
  return JSON.parse(await controlTs(broker, ...args, "--json", "-d", NODE, "-t", "10"));
}

Deno.test("control incident: a flooded queue recovered remotely, nothing else lost (Redis)", async () => {
  const redis = await startRedis();
  const urls: CeleryUrls = { broker: redis.url(0), backend: redis.url(1) };
  const app = createApp({ broker: urls.broker, backend: urls.backend });
  let worker: WorkerProcess | undefined;
  try {
    // The flood, then the urgent tasks: 10 behind it, 10 on a queue nobody consumes.
    const slow: string[] = [];
    for (let i = 0; i < SLOW; i++) {
      slow.push((await app.sendTask("tasks.slow", [1500])).id);
    }
    const behind = [];
    const stranded = [];
    for (let i = 0; i < URGENT; i++) behind.push(await app.sendTask("tasks.sms", [i]));
    for (let i = 0; i < URGENT; i++) {
      stranded.push(await app.sendTask("tasks.sms", [100 + i], {}, { queue: "sms" }));
    }
    assert.equal(await redis.cli("LLEN", "celery"), `${SLOW + URGENT}\n`);

    worker = await startCeleriacWorker({
      ...urls,
      app: "tests/fixtures/control_incident_app.ts",
      name: NODE,
      concurrency: 4,
    });

    // 1. The pool is busy with the flood.
    const active = await waitFor(async () => {
      const reply = await controlJson(urls.broker, "inspect", "active");
      return reply[NODE].length === 4 && reply[NODE];
    }, { timeoutMs: 20_000, intervalMs: 50, message: "4 slow tasks running" });
    assert.ok(active.every((r: { name: string }) => r.name === "tasks.slow"));

    // 2. The stranded queue: consume it.
    assert.deepEqual(await controlJson(urls.broker, "control", "add_consumer", "sms"), [
      { [NODE]: { ok: "add consumer sms" } },
    ]);
    for (const r of stranded) assert.equal(typeof await r.get({ timeout: 15 }), "number");

    // 3. No new slow task starts (rate-limited ones are held, not run).
    assert.deepEqual(await controlJson(urls.broker, "control", "rate_limit", "tasks.slow", "1/m"), [
      { [NODE]: { ok: "new rate limit set successfully" } },
    ]);

    // 4. Revoke every waiting slow task: the SMS behind the flood run right away.
    const started = performance.now();
    const [revoke] = await controlJson(
      urls.broker,
      "control",
      "revoke",
      "--task-name",
      "tasks.slow",
    );
    const report = revoke[NODE];
    // The worker's queues: celery, and sms since step 2.
    assert.match(
      report.ok,
      /^tasks\.slow: revoked \d+ waiting in celery, sms, \d+ held, \d+ still running$/,
    );
    assert.deepEqual(report.queues, ["celery", "sms"]);
    for (const r of behind) assert.equal(typeof await r.get({ timeout: 15 }), "number");
    const urgentMs = performance.now() - started;
    assert.ok(urgentMs < 15_000, `the SMS waited ${urgentMs} ms after the revoke`);

    // 5. Back to normal.
    assert.deepEqual(await controlJson(urls.broker, "control", "cancel_consumer", "sms"), [
      { [NODE]: { ok: "no longer consuming from sms" } },
    ]);
    const queues = await controlJson(urls.broker, "inspect", "active_queues");
    assert.deepEqual(queues[NODE].map((q: { name: string }) => q.name), ["celery"]);

    // The slow tasks still running when the revoke came finish; then count.
    await waitFor(
      async () => (await controlJson(urls.broker, "inspect", "active"))[NODE].length === 0,
      {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: "the worker idle",
      },
    );
    const backend = (await app.backend())!;
    const states = new Map<string, number>();
    let revoked = 0;
    for (const id of slow) {
      const status = (await backend.get(id))?.status ?? "PENDING";
      states.set(status, (states.get(status) ?? 0) + 1);
      if (status === "REVOKED") revoked++;
    }
    assert.equal(revoked, report.waiting + report.held, JSON.stringify(Object.fromEntries(states)));
    assert.equal(
      (states.get("SUCCESS") ?? 0) + revoked,
      SLOW,
      `every slow task is done or revoked: ${JSON.stringify(Object.fromEntries(states))}`,
    );
    assert.ok(report.waiting > SLOW / 2, "most of the flood was still waiting");
    for (const r of [...behind, ...stranded]) {
      assert.equal((await backend.get(r.id))?.status, "SUCCESS");
    }
    assert.equal(await redis.cli("LLEN", "celery"), "0\n");
    assert.equal(await redis.cli("LLEN", "sms"), "0\n");
    assert.equal(await redis.cli("HLEN", "unacked"), "0\n");
    const stats = await controlJson(urls.broker, "inspect", "stats");
    const total = stats[NODE].total;
    assert.equal(total["tasks.sms"], 2 * URGENT, "each SMS ran once");
    assert.equal(total["tasks.slow"], states.get("SUCCESS"), "each slow task ran at most once");
  } finally {
    await worker?.stop();
    await app.close();
    await redis.stop();
  }
});

Deno.test("control incident: purge --task-name drops one task from a queue, others untouched (Redis)", async () => {
  const redis = await startRedis();
  const app = createApp({ broker: redis.url(0), backend: null });
  try {
    for (let i = 0; i < 300; i++) {
      await app.sendTask(i % 6 ? "tasks.slow" : "tasks.sms", [i], {}, {
        queue: "bulk",
        priority: i % 12 === 0 ? 5 : undefined,
      });
    }
    const lists = ["bulk", "bulk\x06\x163"];
    const keep = async () => {
      const out: string[] = [];
      for (const key of lists) {
        // Not a terminal: redis-cli prints one raw element per line (envelopes are one line).
        for (const text of (await redis.cli("LRANGE", key, "0", "-1")).split("\n")) {
          if (text && JSON.parse(text).headers.task === "tasks.sms") out.push(text);
        }
      }
      return out;
    };
    const before = await keep();
    assert.equal(before.length, 50);
    const out = await controlTs(
      redis.url(0),
      "purge",
      "-Q",
      "bulk",
      "--task-name",
      "tasks.slow",
      "-f",
    );
    assert.equal(out, "Purged 250 messages of tasks.slow from queue bulk.\n");
    assert.deepEqual(await keep(), before, "the other messages, byte for byte and in order");
    assert.equal(await redis.cli("LLEN", "bulk"), "25\n");
    assert.equal(await redis.cli("LLEN", "bulk\x06\x163"), "25\n");
  } finally {
    await app.close();
    await redis.stop();
  }
});
