/**
 * High availability, end to end: two beat CLI processes against a real redis-server share a
 * 1-second entry with a 2-second lease. Only the leader sends; after it is killed with
 * SIGKILL the follower takes over within lease TTL + one poll; and the messages in the queue
 * show every slot sent exactly once. Then a restart against the same Redis neither repeats
 * nor silently skips slots.
 */
import assert from "node:assert/strict";
import { spawnChild } from "../helpers/process.ts";
import { REPO_ROOT } from "../helpers/python_celery.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const APP = "tests/beat/fixture_app.ts";
const LEASE_TTL_S = 2;
const POLL_MS = (LEASE_TTL_S * 1000) / 3;

interface Queued {
  slot: string;
  entry: string;
  origin: string;
  task: string;
}

/** Every message waiting in the Redis list `celery` (kombu's layout), oldest first. */
async function queued(redis: Awaited<ReturnType<typeof startRedis>>): Promise<Queued[]> {
  const out = (await redis.cli("LRANGE", "celery", "0", "-1")).trim();
  if (!out) return [];
  return out.split("\n").reverse().map((line) => {
    const envelope = JSON.parse(line);
    const h = envelope.headers;
    return {
      slot: h.celeriac_beat_slot,
      entry: h.celeriac_beat_entry,
      origin: h.origin,
      task: h.task,
    };
  });
}

function startBeat(brokerUrl: string, name: string, extra: string[] = []) {
  return spawnChild(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${REPO_ROOT}/beat.ts`,
      "--app",
      APP,
      "--broker",
      brokerUrl,
      "--lease-ttl",
      String(LEASE_TTL_S),
      "-n",
      name,
      "--loglevel",
      "debug",
      ...extra,
    ],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    label: `beat ${name}`,
  });
}

function countBySlot(messages: Queued[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(m.slot, (counts.get(m.slot) ?? 0) + 1);
  return counts;
}

Deno.test("beat HA: the follower takes over after SIGKILL of the leader; every slot is sent exactly once", async () => {
  const redis = await startRedis();
  const a = startBeat(redis.url(0), "beat-a");
  let b: ReturnType<typeof startBeat> | undefined;
  try {
    await a.waitForLine(/beat-a holds the lease/, { timeoutMs: 20_000 });
    b = startBeat(redis.url(0), "beat-b");
    await b.waitForLine(/beat: Starting beat-b/, { timeoutMs: 20_000 });
    await waitFor(async () => (await queued(redis)).length >= 3, {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: "three messages from the leader",
    });
    assert.ok(!b.lines.stderr.some((l) => l.includes("holds the lease")), "b stayed a follower");

    a.kill("SIGKILL");
    await a.exited;
    const killedAt = performance.now();
    await b.waitForLine(/beat-b holds the lease/, {
      timeoutMs: LEASE_TTL_S * 1000 + POLL_MS + 5_000,
    });
    const takeoverMs = performance.now() - killedAt;
    assert.ok(
      takeoverMs <= LEASE_TTL_S * 1000 + POLL_MS + 1_000,
      `takeover took ${Math.round(takeoverMs)} ms (lease ${LEASE_TTL_S} s + poll ${POLL_MS} ms)`,
    );

    const before = (await queued(redis)).length;
    await waitFor(async () => (await queued(redis)).length >= before + 3, {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: "three messages from the new leader",
    });
    const bExit = await b.stop({ graceMs: 10_000 });
    assert.equal(bExit.code, 0, b.output);
    assert.equal(bExit.killed, false);

    const messages = await queued(redis);
    const counts = countBySlot(messages);
    for (const [slot, n] of counts) assert.equal(n, 1, `slot ${slot} was sent ${n} times`);
    assert.ok(messages.every((m) => m.entry === "add-every-second" && m.task === "tasks.add"));

    const fromA = messages.filter((m) => m.origin.startsWith(`gen${a.pid}@`));
    const fromB = messages.filter((m) => m.origin.startsWith(`gen${b!.pid}@`));
    assert.equal(fromA.length + fromB.length, messages.length, "only the two beats sent");
    assert.ok(fromA.length >= 3 && fromB.length >= 3);
    const slots = messages.map((m) => Date.parse(m.slot));
    for (let i = 1; i < slots.length; i++) {
      assert.ok(slots[i]! > slots[i - 1]!, "slots in order");
      assert.equal((slots[i]! - slots[0]!) % 1000, 0, "slots on one 1-second grid");
    }
    // B continued A's grid (state from Redis), after at most one catch-up for the gap.
    const lastA = Date.parse(fromA.at(-1)!.slot);
    const firstB = Date.parse(fromB[0]!.slot);
    assert.ok(firstB > lastA);
    assert.ok(
      firstB - lastA <= LEASE_TTL_S * 1000 + POLL_MS + 2_000,
      `gap ${firstB - lastA} ms`,
    );
    // The shared state counted every run; a SIGKILL between A's commit and its publish would
    // lose that one run (at most once), never send it twice.
    const state = JSON.parse(
      (await redis.cli("HGET", "celeriac.beat.state", "add-every-second")).trim(),
    );
    assert.ok(
      state.totalRunCount === messages.length || state.totalRunCount === messages.length + 1,
      `totalRunCount ${state.totalRunCount}, ${messages.length} messages`,
    );
    assert.equal(state.lastRunAt, fromB.at(-1)!.slot);
    // A clean stop released the lease.
    assert.equal((await redis.cli("EXISTS", "celeriac.beat.lease")).trim(), "0");
  } finally {
    await a.stop({ graceMs: 2_000 });
    await b?.stop({ graceMs: 2_000 });
    await redis.stop();
  }
});

Deno.test("beat CLI: a restart continues from the state in Redis (no slot twice, one catch-up)", async () => {
  const redis = await startRedis();
  let beat = startBeat(redis.url(0), "beat-r");
  try {
    await waitFor(async () => (await queued(redis)).length >= 2, {
      timeoutMs: 20_000,
      intervalMs: 50,
      message: "two messages",
    });
    assert.equal((await beat.stop({ graceMs: 10_000 })).code, 0, beat.output);
    const first = await queued(redis);
    // Down for a bit more than two slots.
    const downUntil = Date.parse(first.at(-1)!.slot) + 2_500;
    await waitFor(() => Date.now() >= downUntil, { timeoutMs: 5_000, intervalMs: 20 });
    beat = startBeat(redis.url(0), "beat-r");
    await waitFor(async () => (await queued(redis)).length >= first.length + 2, {
      timeoutMs: 20_000,
      intervalMs: 50,
      message: "two more messages after the restart",
    });
    assert.equal((await beat.stop({ graceMs: 10_000 })).code, 0, beat.output);
    const all = await queued(redis);
    for (const [slot, n] of countBySlot(all)) assert.equal(n, 1, `slot ${slot} sent ${n} times`);
    const lastBefore = Date.parse(first.at(-1)!.slot);
    const catchUp = Date.parse(all[first.length]!.slot);
    // Slots missed while down collapse into one catch-up (the latest), then on schedule.
    assert.ok(catchUp - lastBefore >= 2_000, `catch-up slot ${catchUp - lastBefore} ms later`);
    assert.equal(Date.parse(all[first.length + 1]!.slot) - catchUp, 1_000);
  } finally {
    await beat.stop({ graceMs: 2_000 });
    await redis.stop();
  }
});
