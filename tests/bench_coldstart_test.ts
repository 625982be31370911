/**
 * Smoke test of `bench/coldstart.ts`: one measured run of the embedded default and of the
 * baseline, and the table it prints.
 */

import assert from "node:assert/strict";
import { formatColdStart, measureColdStart, percentile } from "../bench/coldstart.ts";

Deno.test("bench coldstart: measures spawn → first task done on the embedded default", async () => {
  const results = await measureColdStart(1, ["baseline", "sqlite"]);
  assert.deepEqual(results.map((r) => r.target), ["baseline", "sqlite"]);
  const [baseline, sqlite] = results;
  assert.equal(baseline!.firstTaskMs.length, 1);
  assert.equal(sqlite!.firstTaskMs.length, 1);
  assert.equal(sqlite!.readyMs.length, 1);
  assert.ok(sqlite!.firstTaskMs[0]! > 0 && sqlite!.firstTaskMs[0]! < 30_000);
  assert.ok(sqlite!.readyMs[0]! <= sqlite!.firstTaskMs[0]!);
  const table = formatColdStart(results);
  assert.match(table, /^\| target \| runs \| first task done p50 \(ms\)/);
  assert.match(table, /^\| sqlite \| 1 \| \d+ \| \d+ \| \d+ \| \d+ \| \d+ \|$/m);
  assert.match(table, /^\| baseline \| 1 \| \d+ \| \d+ \| \d+ \| \d+ \| - \|$/m);
});

Deno.test("bench coldstart: percentile is nearest rank", () => {
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  assert.equal(percentile([5, 1, 3, 2, 4], 90), 5);
  assert.ok(Number.isNaN(percentile([], 50)));
});
