/**
 * The issue's targets (PASS/MISS) and the celeriac ÷ Celery ratios of `--vs celery`.
 *
 * Targets (issue #8; BullMQ's figure from `/work/shared/docs/peers.md`, measured on a
 * 2-core machine like ours):
 * - Redis drain with acks and results ≥ 2 × BullMQ (15,300 no-op jobs/s at concurrency 50)
 *   = 30,600 tasks/s, and ≥ 15 × Python Celery (its best pool, same broker, results on);
 * - 2,000 tasks × 100 ms at concurrency 200 within 1.05 × the ideal 1.0 s;
 * - worker peak RSS < 50 MiB (a separate worker process draining Redis);
 * - spawn → first task done < 150 ms on Redis (p50).
 *
 * Ratios are always celeriac ÷ Celery: above 1 is better for tasks/s, below 1 for seconds,
 * milliseconds and MiB.
 *
 * @module
 */

import type { CaseResult, RowExtras } from "./stats.ts";

/** BullMQ's no-op drain at concurrency 50 on this kind of machine (peers.md). */
export const BULLMQ_PER_SECOND = 15_300;

/** A measured value compared with a threshold. */
export interface TargetResult {
  /** Target key, e.g. `redis-drain-2x-bullmq`. */
  target: string;
  /** What the issue asks, in words. */
  text: string;
  /** The case measured. */
  case: string;
  /** `perSecond`, `seconds`, `peakRssMb`, `p50Ms` or `ratio`. */
  metric: string;
  /** The measured value (a ratio for `ratio`). */
  value: number;
  /** `>=` or `<`. */
  op: ">=" | "<";
  /** The threshold. */
  threshold: number;
  /** Met or not; `null` when the comparison case did not run. */
  pass: boolean | null;
  /** For ratio targets: the Celery case compared with. */
  versus?: string;
}

/** celeriac against Celery on one metric. */
export interface Comparison {
  /** The celeriac case. */
  celeriac: string;
  /** The Celery case. */
  celery: string;
  /**
   * `perSecond`, `seconds`, `p50Ms`, `p99Ms`, `peakRssMb`, `peakPssMb`, `peakAnonMb`,
   * `cpuUsPerTask`.
   */
  metric: string;
  /** Whether more is better for this metric. */
  higherIsBetter: boolean;
  /** celeriac's value. */
  celeriacValue: number;
  /** Celery's value. */
  celeryValue: number;
  /** celeriac ÷ Celery. */
  ratio: number;
}

const METRICS: Record<string, { unit: string; higher: boolean; digits: number }> = {
  perSecond: { unit: "tasks/s", higher: true, digits: 0 },
  seconds: { unit: "s", higher: false, digits: 3 },
  p50Ms: { unit: "ms p50", higher: false, digits: 2 },
  p99Ms: { unit: "ms p99", higher: false, digits: 2 },
  peakRssMb: { unit: "MiB peak RSS", higher: false, digits: 0 },
  peakPssMb: { unit: "MiB peak PSS", higher: false, digits: 0 },
  peakAnonMb: { unit: "MiB peak anonymous", higher: false, digits: 0 },
  cpuUsPerTask: { unit: "CPU µs/task", higher: false, digits: 1 },
};

function value(r: CaseResult, metric: string): number {
  return (r as unknown as Record<string, number>)[metric] ?? NaN;
}

/**
 * Celery cases and the celeriac cases each is compared with: a Celery worker with the
 * celeriac worker process (`worker/<broker>/c50/…`, timed the same way); Celery's
 * sequential client with celeriac's sequential and concurrent enqueue.
 */
function pairs(byId: Map<string, CaseResult>): { celery: CaseResult; celeriac: CaseResult }[] {
  const out: { celery: CaseResult; celeriac: CaseResult }[] = [];
  for (const c of byId.values()) {
    if (c.runtime !== "celery") continue;
    const parts = c.id.split("/"); // celery/<case>/<broker>/…
    const broker = parts[2];
    let peers: string[] = [];
    if (c.case === "enqueue") peers = [`enqueue/${broker}/sequential`, `enqueue/${broker}`];
    if (c.case === "worker") peers = [`worker/${broker}/c50/results-${c.results ? "on" : "off"}`];
    if (c.case === "sleep") peers = [`sleep/${broker}/c200/results-on`];
    if (c.case === "latency") peers = [`latency/${broker}`];
    if (c.case === "coldstart") peers = [`coldstart/${broker}`];
    for (const peer of peers) {
      const celeriac = byId.get(peer);
      if (celeriac) out.push({ celery: c, celeriac });
    }
  }
  return out;
}

const PAIR_METRICS: Record<string, string[]> = {
  enqueue: ["perSecond", "cpuUsPerTask"],
  worker: ["perSecond", "cpuUsPerTask", "peakRssMb", "peakPssMb", "peakAnonMb"],
  sleep: ["seconds"],
  latency: ["p50Ms", "p99Ms"],
  coldstart: ["p50Ms"],
};

/** Every celeriac ÷ Celery ratio the results allow. */
export function comparisons(results: readonly CaseResult[]): Comparison[] {
  const byId = new Map(results.map((r) => [r.id, r]));
  const out: Comparison[] = [];
  for (const { celery, celeriac } of pairs(byId)) {
    for (const metric of PAIR_METRICS[celery.case] ?? []) {
      const a = value(celeriac, metric);
      const b = value(celery, metric);
      if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) continue;
      out.push({
        celeriac: celeriac.id,
        celery: celery.id,
        metric,
        higherIsBetter: METRICS[metric]!.higher,
        celeriacValue: a,
        celeryValue: b,
        ratio: a / b,
      });
    }
  }
  return out;
}

/** The best Celery Redis drain with results (the `≥ 15 × Celery` target's reference). */
function bestCelery(results: readonly CaseResult[], broker: string): CaseResult | undefined {
  return results
    .filter((r) =>
      r.runtime === "celery" && r.case === "worker" && r.broker === broker && r.results
    )
    .sort((a, b) => b.perSecond - a.perSecond)[0];
}

/** The targets the results allow to check. */
export function targets(results: readonly CaseResult[], vsCelery: boolean): TargetResult[] {
  const out: TargetResult[] = [];
  const check = (
    target: string,
    text: string,
    r: CaseResult,
    metric: string,
    op: ">=" | "<",
    threshold: number,
    v = value(r, metric),
    versus?: string,
  ) => {
    const pass = Number.isFinite(v) ? (op === ">=" ? v >= threshold : v < threshold) : null;
    out.push({ target, text, case: r.id, metric, value: v, op, threshold, pass, versus });
  };
  for (const r of results) {
    if (r.runtime === "celery") continue;
    const redisDrain = r.broker === "redis" && r.results && r.concurrency === 50 &&
      (r.case === "drain" || r.case === "worker");
    if (redisDrain) {
      check(
        "redis-drain-2x-bullmq",
        `≥ ${(2 * BULLMQ_PER_SECOND).toLocaleString("en-US")}/s (2× BullMQ)`,
        r,
        "perSecond",
        ">=",
        2 * BULLMQ_PER_SECOND,
      );
      if (vsCelery) {
        const best = bestCelery(results, "redis");
        check(
          "redis-drain-15x-celery",
          "≥ 15× Celery",
          r,
          "ratio",
          ">=",
          15,
          best ? r.perSecond / best.perSecond : NaN,
          best?.id,
        );
      }
    }
    if (r.case === "sleep" && r.idealSeconds !== undefined) {
      check(
        "sleep-within-5pct",
        `< ${(1.05 * r.idealSeconds).toFixed(2)} s`,
        r,
        "seconds",
        "<",
        1.05 * r.idealSeconds,
      );
    }
    if (r.case === "worker" && r.broker === "redis" && r.results && r.concurrency === 50) {
      check("worker-rss-50mib", "< 50 MiB RSS", r, "peakRssMb", "<", 50);
    }
    if (r.case === "coldstart" && r.broker === "redis") {
      check("coldstart-150ms", "< 150 ms to first task", r, "p50Ms", "<", 150);
    }
  }
  return out;
}

function fmt(v: number, metric: string): string {
  const digits = METRICS[metric]?.digits ?? 2;
  if (metric === "ratio") return `${v.toFixed(1)}×`;
  return digits === 0 ? Math.round(v).toLocaleString("en-US") : v.toFixed(digits);
}

function verdict(t: TargetResult): string {
  return t.pass === null ? "n/a" : t.pass ? "PASS" : "MISS";
}

/** Per-row cells of the main table: the targets of each case, the ratio of each Celery case. */
export function rowExtras(
  tgts: readonly TargetResult[],
  cmps: readonly Comparison[],
): Map<string, RowExtras> {
  const out = new Map<string, RowExtras>();
  for (const t of tgts) {
    const row = out.get(t.case) ?? {};
    const cell = `${t.text}: ${verdict(t)}`;
    row.target = row.target ? `${row.target}; ${cell}` : cell;
    out.set(t.case, row);
  }
  for (const c of cmps) {
    if (c.metric === "cpuUsPerTask" || c.metric === "peakPssMb" || c.metric === "peakAnonMb") {
      continue;
    }
    const row = out.get(c.celery) ?? {};
    const vs = c.celeriac.endsWith("/sequential") ? ", sequential" : "";
    const cell = `${c.ratio.toFixed(2)} (${METRICS[c.metric]!.unit}${vs})`;
    row.ratio = row.ratio ? `${row.ratio}; ${cell}` : cell;
    out.set(c.celery, row);
  }
  return out;
}

/** The targets as a Markdown table. */
export function formatTargets(tgts: readonly TargetResult[]): string {
  const lines = [
    "| target (issue #8) | case | measured | PASS/MISS |",
    "|---|---|--:|---|",
  ];
  for (const t of tgts) {
    const measured = t.metric === "ratio"
      ? `${fmt(t.value, "ratio")}${t.versus ? ` vs ${t.versus}` : ""}`
      : `${fmt(t.value, t.metric)} ${METRICS[t.metric]?.unit ?? ""}`;
    lines.push(`| ${t.text} | ${t.case} | ${measured} | ${verdict(t)} |`);
  }
  return lines.join("\n");
}

/** The comparisons as a Markdown table. */
export function formatComparisons(cmps: readonly Comparison[]): string {
  const lines = [
    "| celeriac case | Celery 5.2.6 case | metric | celeriac | Celery | celeriac / Celery |",
    "|---|---|---|--:|--:|--:|",
  ];
  for (const c of cmps) {
    const m = METRICS[c.metric]!;
    lines.push(
      `| ${c.celeriac} | ${c.celery} | ${m.unit} (${m.higher ? "higher" : "lower"} is better) | ${
        fmt(c.celeriacValue, c.metric)
      } | ${fmt(c.celeryValue, c.metric)} | ${c.ratio.toFixed(2)} |`,
    );
  }
  return lines.join("\n");
}
