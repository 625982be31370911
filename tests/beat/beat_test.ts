/**
 * Beat on the memory broker with a fake clock: what is sent when, restarts (file state),
 * catch-up, leadership and takeover between beats sharing one in-process store, conflicts,
 * and failures.
 */
import assert from "node:assert/strict";
import FakeTimers from "npm:@sinonjs/fake-timers@^13";
import { type App, createApp } from "../../src/app.ts";
import { Beat, BEAT_HEADERS, type BeatOptions } from "../../src/beat/beat.ts";
import { at, crontab } from "../../src/beat/schedule.ts";
import {
  type BeatStore,
  type CommitResult,
  type EntryState,
  FileBeatStore,
  MemoryBeatData,
  MemoryBeatStore,
} from "../../src/beat/store.ts";
import type { MemoryBroker } from "../../src/brokers/memory.ts";
import { decodeJsonBody, type TransportMessage } from "../../src/protocol/message.ts";
import { Logger } from "../../src/log.ts";
import { uniqueName } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

interface Sent {
  entry: string;
  slot: string;
  task: string;
  queue: string;
  message: TransportMessage;
}

/** Takes every waiting message off `queues` (no waiting). */
async function drain(broker: MemoryBroker, queues = ["celery"]): Promise<Sent[]> {
  const out: Sent[] = [];
  for (;;) {
    const batch = await broker.fetch(queues, { max: 100, timeoutMs: 0 });
    if (!batch.length) return out;
    for (const d of batch) {
      await d.ack();
      const h = d.message!.headers;
      out.push({
        entry: h[BEAT_HEADERS.entry] as string,
        slot: h[BEAT_HEADERS.slot] as string,
        task: h.task as string,
        queue: d.queue,
        message: d.message!,
      });
    }
  }
}

interface Ctx {
  clock: FakeTimers.InstalledClock;
  /**
   * Advances the fake clock by `ms` in steps of `stepMs`, letting real I/O (the file store)
   * finish after each step: beats are idle again before the clock moves on.
   */
  advance(ms: number, stepMs?: number): Promise<void>;
  app: App;
  broker: MemoryBroker;
  logs: string[];
  logger: Logger;
  beat(options: BeatOptions): Beat;
}

function withBeat(fn: (ctx: Ctx) => Promise<void>, now = T0) {
  return async () => {
    const clock = FakeTimers.install({
      now,
      toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"],
    });
    const app = createApp({ broker: `memory://${uniqueName("beat")}` });
    const broker = await app.broker() as MemoryBroker;
    const logs: string[] = [];
    const logger = new Logger("debug", (line) => logs.push(line));
    const beats: Beat[] = [];
    try {
      const settle = () =>
        waitFor(() => beats.every((b) => b.idle), {
          timeoutMs: 5000,
          message: "beats to be idle",
        });
      await fn({
        clock,
        async advance(ms, stepMs = 1000) {
          await settle();
          for (let left = ms; left > 0; left -= stepMs) {
            await clock.tickAsync(Math.min(stepMs, left));
            await settle();
          }
        },
        app,
        broker,
        logs,
        logger,
        beat(options) {
          const b = new Beat(app, { logger, ...options });
          beats.push(b);
          return b;
        },
      });
    } finally {
      await Promise.all(beats.map((b) => b.stop()));
      clock.uninstall();
      await app.close();
    }
  };
}

Deno.test(
  "Beat sends an interval entry once per slot, on time, with the slot in its headers",
  withBeat(async ({ clock, broker, beat }) => {
    const b = beat({
      schedule: { "add-every-10s": { task: "tasks.add", schedule: 10, args: [2, 3] } },
      store: new MemoryBeatStore(),
    });
    await b.start();
    await clock.tickAsync(9_999);
    assert.deepEqual(await drain(broker), [], "first run one interval after first sight");
    await clock.tickAsync(1);
    let sent = await drain(broker);
    assert.deepEqual(sent.map((s) => [s.entry, s.slot, s.task]), [
      ["add-every-10s", "2026-01-01T12:00:10.000Z", "tasks.add"],
    ]);
    assert.deepEqual(decodeJsonBody(sent[0]!.message), [[2, 3], {}, {
      callbacks: null,
      errbacks: null,
      chain: null,
      chord: null,
    }]);
    await clock.tickAsync(30_000);
    sent = await drain(broker);
    assert.deepEqual(sent.map((s) => s.slot), [
      "2026-01-01T12:00:20.000Z",
      "2026-01-01T12:00:30.000Z",
      "2026-01-01T12:00:40.000Z",
    ]);
    assert.equal(b.counters.sent, 4);
    assert.deepEqual(b.stateOf("add-every-10s"), {
      lastRunAt: T0 + 40_000,
      totalRunCount: 4,
      lastSentAt: T0 + 40_000,
    });
  }),
);

Deno.test(
  "Beat passes queue, priority, expires and kwargs to the message",
  withBeat(async ({ clock, broker, beat }) => {
    await beat({
      schedule: [{
        name: "report",
        task: "reports.build",
        schedule: 60,
        kwargs: { kind: "daily" },
        options: { queue: "reports", priority: 7, expires: 30, headers: { "x-team": "ops" } },
      }],
      store: new MemoryBeatStore(),
    }).start();
    await clock.tickAsync(60_000);
    const [sent, ...rest] = await drain(broker, ["reports", "celery"]);
    assert.equal(rest.length, 0);
    assert.equal(sent!.queue, "reports");
    assert.equal(sent!.message.properties.priority, 7);
    assert.equal(sent!.message.headers.expires, "2026-01-01T12:01:30.000000+00:00");
    assert.equal(sent!.message.headers["x-team"], "ops");
    assert.deepEqual((decodeJsonBody(sent!.message) as unknown[])[1], { kind: "daily" });
  }),
);

Deno.test(
  "Beat: a Berlin 02:30 crontab sends once on the fall-back night",
  withBeat(async ({ clock, broker, beat }) => {
    await beat({
      schedule: { nightly: { task: "t.nightly", schedule: crontab({ minute: 30, hour: 2 }) } },
      timezone: "Europe/Berlin",
      store: new MemoryBeatStore(),
    }).start();
    await clock.tickAsync(3 * 3_600_000); // 2026-10-24T23:00Z → 2026-10-25T02:00Z
    assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-10-25T00:30:00.000Z"]);
  }, Date.UTC(2026, 9, 24, 23)),
);

Deno.test(
  "Beat: spring forward: a 02:30 crontab in its own zone sends once at 03:00 local",
  withBeat(async ({ clock, broker, beat }) => {
    await beat({
      schedule: {
        nightly: {
          task: "t.nightly",
          schedule: crontab({ minute: 30, hour: 2 }, { timezone: "Europe/Berlin" }),
        },
      },
      store: new MemoryBeatStore(),
    }).start();
    await clock.tickAsync(24 * 3_600_000);
    assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-03-29T01:00:00.000Z"]);
  }, Date.UTC(2026, 2, 28, 23)),
);

Deno.test(
  "Beat: a one-off entry is sent once at its time and never again, even after a restart",
  withBeat(async ({ advance, broker, beat }) => {
    const dir = await Deno.makeTempDir({ prefix: "celeriac-beat-" });
    try {
      const schedule = { once: { task: "t.once", schedule: at(T0 + 5_000) } };
      const b1 = beat({ schedule, store: new FileBeatStore(`${dir}/state.json`) });
      await b1.start();
      await advance(4_999);
      assert.equal((await drain(broker)).length, 0);
      await advance(1);
      assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-01T12:00:05.000Z"]);
      await b1.stop();
      const b2 = beat({ schedule, store: new FileBeatStore(`${dir}/state.json`) });
      await b2.start();
      await advance(60_000);
      assert.equal((await drain(broker)).length, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test(
  "Beat restart on the file store: no slot twice, and runs missed while down are sent once",
  withBeat(async ({ advance, broker, beat, logs }) => {
    const dir = await Deno.makeTempDir({ prefix: "celeriac-beat-" });
    const path = `${dir}/celerybeat-schedule.json`;
    try {
      const schedule = { tick: { task: "t.tick", schedule: 10 } };
      const b1 = beat({ schedule, store: new FileBeatStore(path) });
      await b1.start();
      await advance(30_000);
      assert.deepEqual((await drain(broker)).map((s) => s.slot), [
        "2026-01-01T12:00:10.000Z",
        "2026-01-01T12:00:20.000Z",
        "2026-01-01T12:00:30.000Z",
      ]);
      await b1.stop();

      // Restarted within the same slot: nothing is sent again.
      const b2 = beat({ schedule, store: new FileBeatStore(path) });
      await b2.start();
      await advance(5_000);
      assert.equal((await drain(broker)).length, 0);
      await b2.stop();

      // Down for 95 s (slots :40 … 2:10 missed): one catch-up at start, for the latest slot.
      await advance(95_000); // now 12:02:10
      const b3 = beat({ schedule, store: new FileBeatStore(path) });
      await b3.start();
      await advance(0);
      assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-01T12:02:10.000Z"]);
      await advance(10_000);
      assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-01T12:02:20.000Z"]);
      assert.deepEqual(b3.stateOf("tick")?.totalRunCount, 5);
      const file = JSON.parse(await Deno.readTextFile(path));
      assert.equal(file.format, "celeriac-beat-state");
      assert.deepEqual(file.entries.tick, {
        lastRunAt: "2026-01-01T12:02:20.000Z",
        totalRunCount: 5,
        lastSentAt: "2026-01-01T12:02:20.000Z",
      });
      assert.ok(logs.some((l) => l.includes("Scheduler: Sending due task tick (t.tick)")));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test(
  "Beat: a crontab missed for days while down is sent once at start (Celery's catch-up)",
  withBeat(async ({ clock, broker, beat }) => {
    const data = new MemoryBeatData();
    // Last sent 2026-01-01T12:00Z; beat comes back 3 days and 20 minutes later.
    data.entries.set(
      "hourly",
      JSON.stringify({
        lastRunAt: "2026-01-01T12:00:00.000Z",
        totalRunCount: 9,
        lastSentAt: "2026-01-01T12:00:00.000Z",
      }),
    );
    clock.setSystemTime(T0 + 3 * 86_400_000 + 20 * 60_000);
    await beat({
      schedule: { hourly: { task: "t.hourly", schedule: crontab({ minute: 0 }) } },
      store: new MemoryBeatStore(data),
    }).start();
    await clock.tickAsync(0);
    assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-04T12:00:00.000Z"]);
    await clock.tickAsync(40 * 60_000);
    assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-04T13:00:00.000Z"]);
  }),
);

/** A store whose holder "dies": release() does nothing, so the lease must expire. */
class CrashingStore implements BeatStore {
  readonly kind = "memory";
  readonly description = "memory (crashing)";
  readonly highlyAvailable = true;
  inner: MemoryBeatStore;
  dead = false;
  constructor(data: MemoryBeatData) {
    this.inner = new MemoryBeatStore(data);
  }
  open() {
    return this.inner.open();
  }
  load() {
    return this.inner.load();
  }
  acquire(ttlMs: number) {
    return this.dead ? Promise.resolve(false) : this.inner.acquire(ttlMs);
  }
  release() {
    return this.dead ? Promise.resolve() : this.inner.release();
  }
  commit(name: string, expected: string | null, next: EntryState, ttlMs: number) {
    return this.inner.commit(name, expected, next, ttlMs);
  }
  close() {
    return Promise.resolve();
  }
}

Deno.test(
  "Beat HA: one leader sends; when it dies the follower takes over within lease TTL + one poll, no slot twice",
  withBeat(async ({ clock, broker, beat }) => {
    const data = new MemoryBeatData();
    const schedule = { tick: { task: "t.tick", schedule: 1 } };
    const storeA = new CrashingStore(data);
    const a = beat({ schedule, store: storeA, leaseTtlMs: 3_000, name: "a" });
    const b = beat({ schedule, store: new MemoryBeatStore(data), leaseTtlMs: 3_000, name: "b" });
    await a.start();
    await clock.tickAsync(0);
    await b.start();
    await clock.tickAsync(5_000);
    assert.equal(a.isLeader, true);
    assert.equal(b.isLeader, false);
    const before = await drain(broker);
    assert.equal(before.length, 5);
    assert.equal(b.counters.sent, 0);

    // A dies at 12:00:05.5 without releasing its lease (it last renewed at 12:00:05).
    await clock.tickAsync(500);
    storeA.dead = true;
    await a.stop();
    const diedAt = Date.now();
    let tookOverAt = 0;
    for (let i = 0; i < 100 && !tookOverAt; i++) {
      await clock.tickAsync(100);
      if (b.isLeader) tookOverAt = Date.now();
    }
    assert.ok(tookOverAt > 0, "b took over");
    assert.ok(tookOverAt - diedAt <= 3_000 + 1_000, `takeover took ${tookOverAt - diedAt} ms`);
    await clock.tickAsync(5_000);
    const after = await drain(broker);
    const slots = [...before, ...after].map((s) => s.slot);
    assert.equal(new Set(slots).size, slots.length, `a slot was sent twice: ${slots}`);
    assert.ok(after.length >= 5, "b keeps sending every second after the catch-up");
    assert.ok(b.counters.sent === after.length);
    // Slots are on the same one-second grid, in order.
    for (let i = 1; i < slots.length; i++) {
      assert.ok(Date.parse(slots[i]!) > Date.parse(slots[i - 1]!));
      assert.equal((Date.parse(slots[i]!) - T0) % 1000, 0);
    }
  }),
);

Deno.test(
  "Beat HA: a clean stop releases the lease; the follower takes over at its next poll",
  withBeat(async ({ clock, beat }) => {
    const data = new MemoryBeatData();
    const schedule = { tick: { task: "t.tick", schedule: 1 } };
    const a = beat({ schedule, store: new MemoryBeatStore(data), leaseTtlMs: 30_000 });
    const b = beat({ schedule, store: new MemoryBeatStore(data), leaseTtlMs: 30_000 });
    await a.start();
    await clock.tickAsync(0);
    await b.start();
    await clock.tickAsync(1_000);
    await a.stop();
    await clock.tickAsync(10_000); // one follower poll (TTL / 3), far less than the TTL
    assert.equal(b.isLeader, true);
  }),
);

/** A store that delegates, with hooks before commit. */
class HookedStore extends MemoryBeatStore {
  beforeCommit?: () => void;
  failCommits = 0;
  override commit(
    name: string,
    expected: string | null,
    next: EntryState,
    ttlMs: number,
  ): Promise<CommitResult> {
    this.beforeCommit?.();
    if (this.failCommits > 0) {
      this.failCommits--;
      return Promise.reject(new Error("store down"));
    }
    return super.commit(name, expected, next, ttlMs);
  }
}

Deno.test(
  "Beat: a takeover at the slot boundary cannot send the slot twice (commit checks lease and state)",
  withBeat(async ({ clock, broker, beat }) => {
    const data = new MemoryBeatData();
    const schedule = { tick: { task: "t.tick", schedule: 1 } };
    const storeA = new HookedStore(data);
    const a = beat({ schedule, store: storeA, leaseTtlMs: 3_000 });
    await a.start();
    await clock.tickAsync(2_000);
    assert.equal((await drain(broker)).length, 2);
    // At A's next commit, B has just taken the lease over (A's lease lapsed, e.g. a pause),
    // read the state and sent the slot itself.
    const storeB = new MemoryBeatStore(data);
    storeA.beforeCommit = () => {
      storeA.beforeCommit = undefined;
      data.lease = null;
      void storeB.acquire(3_000);
      const raw = data.entries.get("tick")!;
      const s = JSON.parse(raw);
      data.entries.set(
        "tick",
        JSON.stringify({
          lastRunAt: new Date(Date.parse(s.lastRunAt) + 1000).toISOString(),
          totalRunCount: s.totalRunCount + 1,
          lastSentAt: new Date().toISOString(),
        }),
      );
    };
    await clock.tickAsync(1_000);
    assert.equal((await drain(broker)).length, 0, "A did not send the slot B recorded");
    assert.equal(a.isLeader, false);

    // Same with the lease kept but the state moved (e.g. an earlier leadership of ours).
    data.lease = null;
    const c = beat({ schedule, store: new HookedStore(data), leaseTtlMs: 3_000 });
    await a.stop();
    await c.start();
    await clock.tickAsync(0);
    const storeC = c.store as HookedStore;
    storeC.beforeCommit = () => {
      storeC.beforeCommit = undefined;
      const s = JSON.parse(data.entries.get("tick")!);
      data.entries.set(
        "tick",
        JSON.stringify({ ...s, lastRunAt: new Date(Date.parse(s.lastRunAt) + 1000).toISOString() }),
      );
    };
    await clock.tickAsync(1_000);
    assert.equal(c.counters.conflicts, 1);
    await clock.tickAsync(3_000);
    const slots = (await drain(broker)).map((s) => s.slot);
    assert.equal(new Set(slots).size, slots.length);
    assert.ok(
      !slots.includes("2026-01-01T12:00:04.000Z"),
      "the slot recorded elsewhere is not sent",
    );
  }),
);

Deno.test(
  "Beat: a store error is logged and retried; nothing is sent until the commit succeeds",
  withBeat(async ({ clock, broker, beat, logs }) => {
    const store = new HookedStore();
    const b = beat({ schedule: { tick: { task: "t.tick", schedule: 5 } }, store, retryMs: 1_000 });
    await b.start();
    await clock.tickAsync(0);
    store.failCommits = 2;
    await clock.tickAsync(5_000);
    assert.equal((await drain(broker)).length, 0);
    await clock.tickAsync(2_000);
    assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-01T12:00:05.000Z"]);
    assert.equal(b.counters.storeErrors, 2);
    assert.ok(logs.some((l) => /ERROR.*store down; trying again in 1000 ms/.test(l)));
  }),
);

Deno.test(
  "Beat: a failed send is logged, not retried (at most once), and the next slot is sent",
  withBeat(async ({ clock, app, broker, beat, logs }) => {
    const original = broker.publish.bind(broker);
    let fail = 1;
    broker.publish = (message, route) => {
      if (fail-- > 0) return Promise.reject(new Error("broker down"));
      return original(message, route);
    };
    const b = beat({
      schedule: { tick: { task: "t.tick", schedule: 5 } },
      store: new MemoryBeatStore(),
    });
    await b.start();
    await clock.tickAsync(10_000);
    assert.deepEqual((await drain(broker)).map((s) => s.slot), ["2026-01-01T12:00:10.000Z"]);
    assert.equal(b.counters.sendErrors, 1);
    assert.ok(
      logs.some((l) => l.includes("Cannot send tick (t.tick) for 2026-01-01T12:00:05.000Z")),
    );
    assert.ok(app);
  }),
);

Deno.test(
  "Beat: unreadable stored state is replaced (first sight), not a crash",
  withBeat(async ({ clock, broker, beat, logs }) => {
    const data = new MemoryBeatData();
    data.entries.set("tick", "garbage");
    const b = beat({
      schedule: { tick: { task: "t.tick", schedule: 5 } },
      store: new MemoryBeatStore(data),
    });
    await b.start();
    await clock.tickAsync(5_000);
    assert.equal((await drain(broker)).length, 1);
    assert.ok(logs.some((l) => l.includes("unreadable")));
  }),
);

Deno.test("Beat validates its options", () => {
  const app = createApp({ broker: "memory://beat-options" });
  assert.throws(() => new Beat(app, { timezone: "Nowhere/City" }), RangeError);
  assert.throws(() => new Beat(app, { leaseTtlMs: 0 }), RangeError);
  assert.throws(() => new Beat(app, { maxIntervalMs: -1 }), RangeError);
  assert.throws(
    () =>
      new Beat(app, {
        schedule: { x: { task: "t", schedule: 1, options: { routing_key: "q" } as never } },
      }),
    /unknown option "routing_key"/,
  );
});

Deno.test(
  "Beat.stop() before any send, and twice, is fine; done resolves",
  withBeat(async ({ beat }) => {
    const b = beat({ schedule: [], store: new MemoryBeatStore() });
    await b.start();
    await assert.rejects(() => b.start(), TypeError);
    await Promise.all([b.stop(), b.stop()]);
    await b.done;
  }),
);
