import assert from "node:assert/strict";
import FakeTimers from "npm:@sinonjs/fake-timers@^13";
import { MAX_TIMEOUT_MS, setLongTimeout } from "../../src/worker/timers.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

function withClock(fn: (clock: FakeTimers.InstalledClock) => void | Promise<void>) {
  return async () => {
    const clock = FakeTimers.install({
      now: Date.UTC(2026, 0, 1),
      toFake: ["setTimeout", "clearTimeout", "Date"],
    });
    try {
      await fn(clock);
    } finally {
      clock.uninstall();
    }
  };
}

Deno.test("MAX_TIMEOUT_MS is 2^31-1", () => {
  assert.equal(MAX_TIMEOUT_MS, 2147483647);
});

Deno.test(
  "setLongTimeout: a delay above 2^31-1 ms does not fire early and fires on time, once",
  withClock((clock) => {
    const delay = 30 * DAY_MS; // > 2^31-1 ms (about 24.8 days)
    assert.ok(delay > MAX_TIMEOUT_MS);
    const start = Date.now();
    const fired: number[] = [];
    setLongTimeout(() => fired.push(Date.now() - start), delay);
    clock.tick(1);
    assert.deepEqual(fired, [], "a plain setTimeout would overflow and fire at once");
    clock.tick(MAX_TIMEOUT_MS);
    assert.deepEqual(fired, [], "not after the first 2^31-1 ms chunk");
    clock.tick(delay - MAX_TIMEOUT_MS - 2);
    assert.deepEqual(fired, [], "not 1 ms early");
    clock.tick(1);
    assert.deepEqual(fired, [delay]);
    clock.tick(100 * DAY_MS);
    assert.deepEqual(fired, [delay], "fires once");
    assert.equal(clock.countTimers(), 0);
  }),
);

Deno.test(
  "setLongTimeout: a very long delay (2^40 ms) chains chunks and fires on time",
  withClock((clock) => {
    const delay = 2 ** 40;
    let firedAt = -1;
    const start = Date.now();
    setLongTimeout(() => firedAt = Date.now() - start, delay);
    clock.tick(delay - 1);
    assert.equal(firedAt, -1);
    clock.tick(1);
    assert.equal(firedAt, delay);
  }),
);

Deno.test(
  "setLongTimeout: short delays behave as setTimeout; 0 and negative fire on the next turn",
  withClock((clock) => {
    const fired: string[] = [];
    setLongTimeout(() => fired.push("100"), 100);
    setLongTimeout(() => fired.push("0"), 0);
    setLongTimeout(() => fired.push("-5"), -5);
    assert.deepEqual(fired, [], "never synchronously");
    clock.tick(0);
    assert.deepEqual(fired, ["0", "-5"]);
    clock.tick(99);
    assert.deepEqual(fired, ["0", "-5"]);
    clock.tick(1);
    assert.deepEqual(fired, ["0", "-5", "100"]);
  }),
);

Deno.test(
  "setLongTimeout: NaN is treated as 0 (fires once, does not spin)",
  withClock((clock) => {
    let fired = 0;
    setLongTimeout(() => fired++, NaN);
    clock.tick(10);
    assert.equal(fired, 1);
    assert.equal(clock.countTimers(), 0);
  }),
);

Deno.test(
  "setLongTimeout: cancel before it fires, also in a later chunk; cancel twice is fine",
  withClock((clock) => {
    let fired = 0;
    const short = setLongTimeout(() => fired++, 1000);
    short.cancel();
    clock.tick(2000);
    assert.equal(fired, 0);
    assert.equal(clock.countTimers(), 0);

    const long = setLongTimeout(() => fired++, 40 * DAY_MS);
    clock.tick(MAX_TIMEOUT_MS + 10); // now in the second chunk
    assert.equal(clock.countTimers(), 1);
    long.cancel();
    long.cancel();
    assert.equal(clock.countTimers(), 0, "the pending chunk timer is cleared");
    clock.tick(50 * DAY_MS);
    assert.equal(fired, 0);

    const done = setLongTimeout(() => fired++, 5);
    clock.tick(5);
    done.cancel(); // after it fired: no effect
    assert.equal(fired, 1);
  }),
);

Deno.test("setLongTimeout: persistent: false unrefs the timer (real timers)", async () => {
  let fired = false;
  const { promise, resolve } = Promise.withResolvers<void>();
  setLongTimeout(
    () => {
      fired = true;
      resolve();
    },
    1,
    { persistent: false },
  );
  // The unref'd timer does not keep the process alive, but it still fires while something
  // else (this ref'd timer) does.
  const keepAlive = setTimeout(() => {}, 1000);
  await promise;
  clearTimeout(keepAlive);
  assert.equal(fired, true);
});
