/**
 * Smoke tests of `deno task bench`: `bench/main.ts --quick --json` runs as a subprocess (it
 * starts and stops its own redis-server, and RabbitMQ node when available) and reports
 * every case with positive numbers, the targets and, with `--vs celery`, the
 * ratios celeriac ÷ Celery.
 *
 * Split in three so each stays well under 20 s on 2 busy cores: the memory and Redis cases
 * (about 10 s), the RabbitMQ cases (its node alone takes 3–7 s to start), and `--vs celery`
 * on one pair of worker drains. A whole `--vs celery --quick` run (15 Python workers, each
 * about 1 s to start, plus RabbitMQ) takes about a minute, so it is not run here.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Comparison, TargetResult } from "../bench/compare.ts";
import type { CaseResult } from "../bench/stats.ts";

const ROOT = new URL("../", import.meta.url);

interface Report {
  quick: boolean;
  vs: string | null;
  totalSeconds: number;
  cases: CaseResult[];
  targets: TargetResult[];
  comparisons: Comparison[];
  skipped: { what: string; reason: string }[];
  errors: unknown[];
}

async function bench(...args: string[]): Promise<Report> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/main.ts", "--quick", "--json", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `bench exited ${output.code}\n${stdout}\n${stderr}`);
  const report = JSON.parse(stdout) as Report;
  assert.equal(report.quick, true);
  assert.deepEqual(report.errors, []);
  return report;
}

function positive(c: CaseResult, keys: (keyof CaseResult)[]): void {
  for (const key of keys) {
    const v = c[key] as number;
    assert.ok(Number.isFinite(v) && v > 0, `${c.id}.${key} = ${v}`);
  }
}

/** Checks one case by its family. */
function checkCase(c: CaseResult): void {
  positive(c, ["tasks", "seconds"]);
  switch (c.case) {
    case "enqueue":
    case "drain":
      positive(c, ["perSecond", "peakRssMb"]);
      break;
    case "latency":
      positive(c, ["perSecond", "p50Ms", "p99Ms"]);
      if (c.runtime !== "celery") positive(c, ["meanMs"]);
      assert.ok(c.p99Ms! >= c.p50Ms!, `${c.id}: p99 < p50`);
      break;
    case "sleep":
      positive(c, ["perSecond", "peakRssMb"]);
      assert.ok(c.idealSeconds! > 0 && c.seconds >= c.idealSeconds!, `${c.id}: faster than ideal`);
      break;
    case "worker":
      // Measured on the separate worker process, not on the bench process.
      positive(c, ["perSecond", "peakRssMb", "peakPssMb", "peakAnonMb", "cpuUsPerTask"]);
      // Anonymous memory is part of the resident set, and a worker has code pages besides.
      assert.ok(c.peakAnonMb! < c.peakRssMb, `${c.id}: anon ${c.peakAnonMb} >= RSS ${c.peakRssMb}`);
      assert.match(c.rssOf ?? "", /^worker process/, `${c.id}.rssOf`);
      break;
    case "coldstart":
      positive(c, ["p50Ms", "p90Ms"]);
      assert.ok(c.p50Ms! < 30_000, `${c.id}: p50 ${c.p50Ms} ms`);
      break;
    default:
      assert.fail(`unknown case family ${c.case} (${c.id})`);
  }
}

function expectIds(report: Report, ids: string[]): Map<string, CaseResult> {
  const byId = new Map(report.cases.map((c) => [c.id, c]));
  for (const id of ids) {
    assert.ok(byId.has(id), `case ${id} is missing from ${[...byId.keys()].join(", ")}`);
  }
  for (const c of report.cases) checkCase(c);
  return byId;
}

function drainIds(broker: string): string[] {
  return [50, 200].flatMap((c) => [
    ...["on", "off"].map((r) => `drain/${broker}/c${c}/results-${r}`),
    `drain/${broker}/c${c}/results-on/p4`,
  ]);
}

Deno.test("bench --quick --json: memory and Redis cases, worker process, cold start, targets", async () => {
  const report = await bench("--no-rabbitmq");
  assert.equal(report.vs, null);
  expectIds(report, [
    "enqueue/memory",
    "enqueue/memory/sequential",
    "enqueue/redis",
    "enqueue/redis/sequential",
    ...drainIds("memory"),
    ...drainIds("redis"),
    "sleep/memory/c200/results-on",
    "sleep/memory/c200/results-on/p2",
    "sleep/redis/c200/results-on",
    "sleep/redis/c200/results-on/p2",
    "latency/memory",
    "latency/redis",
    "worker/redis/c50/results-on",
    "worker/redis/c50/results-off",
    "worker/redis/c50/results-on/p4",
    "coldstart/redis",
  ]);
  assert.ok(!report.cases.some((c) => c.broker === "rabbitmq"));
  assert.deepEqual(report.skipped.map((s) => s.reason), ["--no-rabbitmq"]);
  // Every target of the issue that needs no Celery run is checked, with a verdict.
  const targets = report.targets.map((t) => `${t.target} ${t.case}`).sort();
  assert.deepEqual(targets, [
    "coldstart-150ms coldstart/redis",
    "redis-drain-2x-bullmq drain/redis/c50/results-on",
    "redis-drain-2x-bullmq drain/redis/c50/results-on/p4",
    "redis-drain-2x-bullmq worker/redis/c50/results-on",
    "redis-drain-2x-bullmq worker/redis/c50/results-on/p4",
    "sleep-within-5pct sleep/memory/c200/results-on",
    "sleep-within-5pct sleep/memory/c200/results-on/p2",
    "sleep-within-5pct sleep/redis/c200/results-on",
    "sleep-within-5pct sleep/redis/c200/results-on/p2",
    "worker-rss-50mib worker/redis/c50/results-on",
    "worker-rss-50mib worker/redis/c50/results-on/p4",
  ]);
  // The prefetch cases say so, and run with the worker's option.
  for (const c of report.cases.filter((c) => /\/p\d+$/.test(c.id))) {
    assert.match(c.note ?? "", /prefetch[- ]multiplier \d/, `${c.id}: note ${c.note}`);
  }
  // The worker processes run as `deno task worker` does, with its V8 flags.
  for (const c of report.cases.filter((c) => c.id.startsWith("worker/"))) {
    assert.match(c.note ?? "", /--v8-flags=--max-semi-space-size=2/, `${c.id}: note ${c.note}`);
  }
  for (const t of report.targets) {
    assert.equal(typeof t.pass, "boolean", `${t.target} ${t.case}: pass = ${t.pass}`);
    assert.ok(Number.isFinite(t.value), `${t.target} ${t.case}: value = ${t.value}`);
  }
  assert.deepEqual(report.comparisons, []);
});

Deno.test("bench --quick --json --only=rabbitmq: RabbitMQ cases, or a reason to skip them", async () => {
  const report = await bench("--only=rabbitmq");
  if (report.skipped.length) {
    // tests/helpers/rabbitmq_server.ts or amqp:// support is missing, or the node failed.
    assert.equal(report.cases.length, 0);
    assert.match(report.skipped[0]!.reason, /\S/);
    return;
  }
  expectIds(report, [
    "enqueue/rabbitmq",
    "enqueue/rabbitmq/sequential",
    ...drainIds("rabbitmq"),
    "sleep/rabbitmq/c200/results-on",
    "latency/rabbitmq",
    "worker/rabbitmq/c50/results-on",
    "worker/rabbitmq/c50/results-off",
    "worker/rabbitmq/c50/results-on/p4",
  ]);
});

Deno.test("bench --quick --json --vs celery: a Celery drain side by side, ratio and target", async () => {
  const report = await bench(
    "--vs",
    "celery",
    "--only=worker/redis/c50/results-on,celery/worker/redis/prefork-c2/results-on",
  );
  assert.equal(report.vs, "celery");
  const byId = expectIds(report, [
    "worker/redis/c50/results-on",
    "celery/worker/redis/prefork-c2/results-on",
  ]);
  const celery = byId.get("celery/worker/redis/prefork-c2/results-on")!;
  assert.equal(celery.runtime, "celery");
  assert.equal(celery.pool, "prefork");
  assert.match(celery.rssOf!, /^worker process tree \(3\)$/); // parent + 2 children
  const throughput = report.comparisons.find((c) => c.metric === "perSecond");
  assert.ok(throughput, JSON.stringify(report.comparisons));
  assert.equal(throughput.celeriac, "worker/redis/c50/results-on");
  assert.equal(throughput.celery, "celery/worker/redis/prefork-c2/results-on");
  assert.ok(
    Math.abs(throughput.ratio - throughput.celeriacValue / throughput.celeryValue) < 1e-9 &&
      throughput.ratio > 0,
  );
  // Each side's own memory, without the executable's pages (a Python tree sums its three).
  const anon = report.comparisons.find((c) => c.metric === "peakAnonMb");
  assert.ok(anon && anon.celeriacValue > 0 && anon.celeryValue > 0, JSON.stringify(anon));
  assert.equal(anon.higherIsBetter, false);
  const vsCelery = report.targets.find((t) => t.target === "redis-drain-15x-celery");
  assert.ok(vsCelery, JSON.stringify(report.targets));
  assert.equal(vsCelery.versus, "celery/worker/redis/prefork-c2/results-on");
  assert.equal(typeof vsCelery.pass, "boolean");
});
