/**
 * The shared event pieces: `utcoffset` (sign and floor division checked against Celery's own
 * `celery.utils.time.utcoffset` in several time zones), the JSON body (floats, batches), and
 * decoding of every event fixture.
 */

import assert from "node:assert/strict";
import {
  adjustTimestamp,
  type CeleryEvent,
  decodeEventBody,
  encodeEventBody,
  eventGroup,
  eventMessage,
  eventRoutingKey,
  LamportClock,
  taskStateOf,
} from "../../src/events/event.ts";
import { DecodeError } from "../../src/errors.ts";
import { runChild } from "../helpers/process.ts";
import { PYTHON } from "../helpers/python_celery.ts";
import { eventFixtures } from "./fixtures.ts";

const ZONES = [
  "UTC",
  "Europe/Berlin",
  "Asia/Kolkata", // +5:30 ⇒ -6 (floor)
  "Asia/Kathmandu", // +5:45 ⇒ -6
  "America/St_Johns", // -3:30 (or -2:30) ⇒ 3 (or 2)
  "America/New_York",
  "Pacific/Chatham", // +12:45 / +13:45
  "America/Caracas",
];

const EVENT_MODULE = new URL("../../src/events/event.ts", import.meta.url).href;

async function denoOffsets(tz: string): Promise<number[]> {
  const code = `import { localUtcOffset } from "${EVENT_MODULE}";
console.log(JSON.stringify([localUtcOffset(), localUtcOffset(new Date("2026-01-15T12:00:00Z")), localUtcOffset(new Date("2026-07-15T12:00:00Z"))]));`;
  const out = await runChild(Deno.execPath(), {
    args: ["eval", code],
    env: { TZ: tz },
    timeoutMs: 20_000,
    label: `deno TZ=${tz}`,
  });
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

Deno.test("utcoffset: hours west of UTC, floor-divided, the same as Celery's in every zone", async () => {
  const py = await runChild(PYTHON, {
    args: [
      "-c",
      `import json, os, time
from celery.utils.time import utcoffset
out = {}
for tz in ${JSON.stringify(ZONES)}:
    os.environ["TZ"] = tz
    time.tzset()
    out[tz] = utcoffset()
print(json.dumps(out))`,
    ],
    env: { PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
    timeoutMs: 20_000,
    label: "python utcoffset",
  });
  assert.equal(py.code, 0, py.stderr);
  const celery: Record<string, number> = JSON.parse(py.stdout);
  const ours = Object.fromEntries(
    await Promise.all(ZONES.map(async (tz) => [tz, await denoOffsets(tz)] as const)),
  );
  for (const tz of ZONES) assert.equal(ours[tz][0], celery[tz], `TZ=${tz}`);
  // Fixed dates: sign and floor division, winter and summer.
  assert.deepEqual(ours["Europe/Berlin"].slice(1), [-1, -2]);
  assert.deepEqual(ours["Asia/Kolkata"].slice(1), [-6, -6]);
  assert.deepEqual(ours["America/St_Johns"].slice(1), [3, 2]);
  assert.deepEqual(ours["America/New_York"].slice(1), [5, 4]);
  assert.deepEqual(ours["UTC"].slice(1), [0, 0]);
});

Deno.test("adjustTimestamp re-bases by the offset difference, as Celery's receiver", () => {
  assert.equal(adjustTimestamp(1000, 0, 0), 1000);
  // A sender two hours east (utcoffset -2) seen from UTC: ts - (-2 - 0) * 3600.
  assert.equal(adjustTimestamp(1000, -2, 0), 1000 + 7200);
  assert.equal(adjustTimestamp(1000, 3, 3), 1000);
});

Deno.test("routing keys, groups, task states, Lamport clock", () => {
  assert.equal(eventRoutingKey("task-succeeded"), "task.succeeded");
  assert.equal(eventRoutingKey("worker-heartbeat"), "worker.heartbeat");
  assert.equal(eventGroup("worker-elect-ack"), "worker");
  assert.equal(eventGroup("custom"), "custom");
  assert.deepEqual(
    ["sent", "received", "started", "succeeded", "failed", "retried", "revoked", "rejected"]
      .map((s) => taskStateOf(`task-${s}`)),
    ["PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED"],
  );
  assert.equal(taskStateOf("task-cancelled"), "CANCELLED");
  const clock = new LamportClock(5);
  assert.equal(clock.forward(), 6);
  assert.equal(clock.adjust(3), 7);
  assert.equal(clock.adjust(100), 101);
  assert.equal(clock.adjust(Number.NaN), 102);
});

Deno.test("encodeEventBody: Python floats keep a fraction; batches are arrays", () => {
  const text = (v: Parameters<typeof encodeEventBody>[0]) =>
    new TextDecoder().decode(encodeEventBody(v));
  assert.equal(
    text({ type: "worker-heartbeat", freq: 2, timestamp: 1795420406, loadavg: [0, 0.09, 1] }),
    '{"type":"worker-heartbeat","freq":2.0,"timestamp":1795420406.0,"loadavg":[0.0,0.09,1.0]}',
  );
  assert.equal(
    text([{ type: "task-succeeded", runtime: 1, result: "5", clock: 3 }]),
    '[{"type":"task-succeeded","runtime":1.0,"result":"5","clock":3}]',
  );
  // Non-float fields stay integers; big integers stay exact.
  assert.equal(
    text({ type: "x", pid: 7, active: 0, big: 2n ** 64n }),
    '{"type":"x","pid":7,"active":0,"big":18446744073709551616}',
  );
  const msg = eventMessage({ type: "worker-online" }, "w1@h");
  assert.deepEqual(msg.headers, { hostname: "w1@h" });
  assert.deepEqual(msg.properties, { delivery_mode: 1 });
  assert.equal(msg.contentType, "application/json");
  assert.equal(msg.contentEncoding, "utf-8");
});

Deno.test("decodeEventBody decodes every Redis and AMQP event fixture (objects and batches)", () => {
  const fixtures = eventFixtures();
  assert.equal(fixtures.length, 17);
  for (const f of fixtures) {
    // The fixtures' parsed copies had the capture machine's path in tracebacks rewritten;
    // the raw bytes (decoded here) were not: compare tracebacks by their last line.
    const plain = (e: CeleryEvent) => {
      const { traceback, ...rest } = e;
      return { ...rest, traceback: String(traceback ?? "").trimEnd().split("\n").at(-1) };
    };
    const events = decodeEventBody(f.message);
    const expected = Array.isArray(f.body) ? f.body : [f.body];
    assert.deepEqual(events.map(plain), expected.map(plain), f.name);
    assert.ok(
      events.some((e) => JSON.stringify(plain(e)) === JSON.stringify(plain(f.event))),
      f.name,
    );
    const rk = f.message.deliveryInfo?.routingKey;
    assert.equal(
      rk,
      f.event.type.startsWith("task-") ? "task.multi" : eventRoutingKey(f.event.type),
    );
  }
});

Deno.test("decodeEventBody: non-event bodies", () => {
  const msg = (body: string) => ({
    headers: {},
    properties: {},
    contentType: "application/json",
    contentEncoding: "utf-8",
    body: new TextEncoder().encode(body),
  });
  assert.deepEqual(decodeEventBody(msg('[{"type": "a"}, 1, {"no": "type"}]')), [{ type: "a" }]);
  assert.deepEqual(decodeEventBody(msg('{"no": "type"}')), []);
  assert.throws(() => decodeEventBody(msg("5")), DecodeError);
  assert.throws(() => decodeEventBody(msg("not json")), DecodeError);
});
