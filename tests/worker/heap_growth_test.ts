/**
 * The worker's heap does not grow with the number of tasks it ran. A consumer that raced
 * every wait for room against one "stopped" promise left a reaction on that promise per
 * wait, about 600 bytes per task at concurrency 1 (12 MB per 20,000 tasks), until the
 * worker stopped.
 */

import assert from "node:assert/strict";
import { runChild } from "../helpers/process.ts";

Deno.test("worker: 20,000 tasks leave the heap (after full collections) within 3 MB of where it was", async () => {
  const run = await runChild(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("../helpers/heap_growth.ts", import.meta.url).pathname,
    ],
    env: { NO_COLOR: "1" },
    timeoutMs: 120_000,
    label: "heap growth",
  });
  assert.equal(run.code, 0, run.stderr);
  const line = run.stdout.split("\n").find((l) => l.startsWith("{"));
  assert.ok(line, run.stdout + run.stderr);
  const { growth, processed } = JSON.parse(line);
  assert.equal(processed, 22_000);
  assert.ok(growth < 3 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MB`);
});
