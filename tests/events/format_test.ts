/**
 * The events CLI's text: `--dump` lines for real Celery events and the `top` screen.
 */

import assert from "node:assert/strict";
import { formatEventLine, formatTimestamp, renderTop } from "../../src/events/format.ts";
import { State } from "../../src/events/state.ts";
import { eventFixtures } from "./fixtures.ts";

Deno.test("format: timestamps as Celery's dumper prints them (naive UTC, microseconds)", () => {
  assert.equal(formatTimestamp(0), "1970-01-01 00:00:00.000000");
  assert.equal(formatTimestamp(1795420405.5707667), "2026-11-23 07:53:25.570767");
  assert.equal(formatTimestamp(1.9999996), "1970-01-01 00:00:02.000000");
});

Deno.test("format: one line per event, uuid and task name first, then the type's fields", () => {
  const byName = Object.fromEntries(eventFixtures().map((f) => [f.name, f.event]));
  const names = new Map<string, string>();
  const received = byName["redis-event-task-received"];
  assert.equal(
    formatEventLine(received, names),
    `w1@fixtures [${
      formatTimestamp(received.timestamp!)
    }] task-received uuid=${received.uuid} name=tasks.add args=${received.args} kwargs=${received.kwargs} root_id=${received.root_id} parent_id=None retries=0 eta=None expires=None`,
  );
  const succeeded = { ...byName["redis-event-task-succeeded"], uuid: received.uuid };
  assert.equal(
    formatEventLine(succeeded, names),
    `w1@fixtures [${
      formatTimestamp(succeeded.timestamp!)
    }] task-succeeded uuid=${received.uuid} name=tasks.add result=5 runtime=0.006308`,
  );
  const hb = formatEventLine(byName["redis-event-worker-heartbeat"]);
  assert.match(
    hb,
    /^w1@fixtures \[2026-11-23 \S+\] worker-heartbeat freq=2 active=0 processed=15 loadavg=\[0, 0\.09, 0\.28\] sw_ident=py-celery sw_ver=5\.2\.6 sw_sys=Linux$/,
  );
  // Multi-line values stay on one line.
  const failed = formatEventLine(byName["redis-event-task-failed"]);
  assert.ok(!failed.includes("\n"));
  assert.match(failed, /exception=ValueError\('bad input'\) traceback="Traceback/);
  assert.equal(
    formatEventLine({
      type: "task-revoked",
      hostname: "w",
      timestamp: 0,
      uuid: "u",
      terminated: false,
      signum: null,
      expired: true,
    }),
    "w [1970-01-01 00:00:00.000000] task-revoked uuid=u terminated=False signum=None expired=True",
  );
});

Deno.test("format: the top screen shows workers, states, recent tasks and throughput; fits the terminal", () => {
  const now = 1000;
  const state = new State({ now: () => now });
  const base = { timestamp: now, local_received: now, utcoffset: 0, pid: 1 };
  state.event({
    ...base,
    type: "worker-online",
    hostname: "celeriac@box",
    freq: 2,
    active: 1,
    processed: 41,
    loadavg: [0.5, 0.25, 0.125],
    sw_ident: "celeriac",
    sw_ver: "0.1.0",
    sw_sys: "Linux",
  });
  state.event({
    ...base,
    type: "worker-heartbeat",
    hostname: "py@box",
    freq: 2,
    timestamp: now - 10,
    local_received: now - 10,
  });
  for (let i = 0; i < 30; i++) {
    state.event({
      ...base,
      type: "task-received",
      hostname: "celeriac@box",
      uuid: `id-${i}`,
      name: "tasks.add",
      args: `(${i}, 1)`,
      kwargs: "{}",
    });
    state.event({
      ...base,
      type: "task-succeeded",
      hostname: "celeriac@box",
      uuid: `id-${i}`,
      result: String(i + 1),
      runtime: 0.0021,
    });
  }
  state.event({
    ...base,
    type: "task-failed",
    hostname: "celeriac@box",
    uuid: "bad",
    exception: "ValueError('x')",
  });
  const lines = renderTop(state, {
    now,
    columns: 120,
    rows: 20,
    source: "redis://127.0.0.1:6379/0",
  });
  const screen = lines.join("\n");
  assert.ok(lines.length <= 20);
  assert.ok(lines.every((l) => l.length <= 120));
  assert.match(
    lines[0],
    /celeriac events · redis:\/\/127\.0\.0\.1:6379\/0 · 1970-01-01 00:16:40 UTC/,
  );
  assert.match(lines[1], /events 63 · tasks 31 · workers 1\/2 alive · throughput 3\.10 tasks\/s/);
  assert.match(
    screen,
    /celeriac@box\s+ONLINE\s+1\s+41\s+0\.50 0\.25 0\.13\s+celeriac 0\.1\.0 Linux/,
  );
  assert.match(screen, /py@box\s+OFFLINE/);
  assert.match(screen, /STATES {2}SUCCESS 30 {2}FAILURE 1/);
  assert.match(screen, /bad\s+\?\s+FAILURE\s+celeriac@box\s+ValueError\('x'\)/);
  assert.match(screen, /id-29\s+tasks\.add\s+SUCCESS\s+celeriac@box\s+0\.002s\s+30/);
  const narrow = renderTop(new State(), { now, columns: 30, rows: 10 });
  assert.ok(narrow.every((l) => l.length <= 30));
  assert.match(narrow.join("\n"), /no worker seen yet/);
});
