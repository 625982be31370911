/**
 * Text output of the events CLI: one line per event for `--dump`, and the screen of `top`.
 * Pure functions (no I/O, the time is an argument), so they are tested directly.
 *
 * @module
 */

import type { CeleryEvent } from "./event.ts";
import type { State, TaskState, WorkerState } from "./state.ts";

const ENVELOPE = new Set([
  "type",
  "hostname",
  "utcoffset",
  "pid",
  "clock",
  "timestamp",
  "local_received",
  "uuid",
  "name",
]);

/**
 * A unix timestamp (float seconds) as Celery's dumper prints it: naive UTC with
 * microseconds, `2026-11-23 07:54:23.703095`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTimestamp } from "./format.ts";
 * assert.equal(formatTimestamp(1795420426.8458433), "2026-11-23 07:53:46.845843");
 * ```
 */
export function formatTimestamp(seconds: number): string {
  const micros = Math.round(seconds * 1e6);
  const whole = Math.floor(micros / 1e6);
  const frac = micros - whole * 1e6;
  const iso = new Date(whole * 1000).toISOString(); // 2026-11-23T07:54:23.000Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(frac).padStart(6, "0")}`;
}

function formatValue(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return /[\n\r]/.test(value) ? JSON.stringify(value) : value;
  if (Array.isArray(value)) return `[${value.map(formatValue).join(", ")}]`;
  return JSON.stringify(value);
}

/**
 * One `--dump` line: `<hostname> [<UTC time>] <type> uuid=… name=… <fields>`. Task names
 * seen in `task-received`/`task-sent` are remembered in `names` and repeated on the task's
 * later events.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEventLine } from "./format.ts";
 * const names = new Map<string, string>([["a1", "tasks.add"]]);
 * assert.equal(
 *   formatEventLine({ type: "task-succeeded", hostname: "w1@h", timestamp: 1795420426.5, uuid: "a1", result: "5", runtime: 0.0012 }, names),
 *   "w1@h [2026-11-23 07:53:46.500000] task-succeeded uuid=a1 name=tasks.add result=5 runtime=0.0012",
 * );
 * ```
 */
export function formatEventLine(event: CeleryEvent, names?: Map<string, string>): string {
  const parts = [
    `${event.hostname ?? "?"} [${
      typeof event.timestamp === "number" ? formatTimestamp(event.timestamp) : "?"
    }] ${event.type}`,
  ];
  const uuid = typeof event.uuid === "string" ? event.uuid : undefined;
  if (uuid !== undefined) {
    parts.push(`uuid=${uuid}`);
    let name = typeof event.name === "string" ? event.name : undefined;
    if (name !== undefined && names) {
      names.set(uuid, name);
      if (names.size > 4096) names.delete(names.keys().next().value!);
    }
    name ??= names?.get(uuid);
    if (name !== undefined) parts.push(`name=${name}`);
  } else if (typeof event.name === "string") parts.push(`name=${event.name}`);
  for (const [key, value] of Object.entries(event)) {
    if (ENVELOPE.has(key)) continue;
    const shown = key === "runtime" && typeof value === "number"
      ? String(Number(value.toFixed(6)))
      : formatValue(value);
    parts.push(`${key}=${shown}`);
  }
  return parts.join(" ");
}

function cell(text: string, width: number, right = false): string {
  const t = text.length > width ? text.slice(0, Math.max(0, width - 1)) + "…" : text;
  return right ? t.padStart(width) : t.padEnd(width);
}

/** Options of {@linkcode renderTop}. */
export interface TopOptions {
  /** The current time, unix seconds. */
  now: number;
  /** Terminal columns. @default 100 */
  columns?: number;
  /** Terminal rows. @default 30 */
  rows?: number;
  /** Shown in the title (the broker URL, password hidden). */
  source?: string;
  /** Seconds the throughput is measured over. @default 10 */
  throughputSeconds?: number;
}

function workerRow(w: WorkerState): string {
  const load = w.loadavg ? w.loadavg.map((l) => l.toFixed(2)).join(" ") : "-";
  const sw = [w.swIdent, w.swVer, w.swSys].filter(Boolean).join(" ") || "-";
  return [
    cell(w.hostname, 28),
    cell(w.status, 8),
    cell(w.active === null ? "-" : String(w.active), 7, true),
    cell(w.processed === null ? "-" : String(w.processed), 10, true),
    " ",
    cell(load, 16),
    sw,
  ].join(" ");
}

function taskRow(t: TaskState): string {
  const detail = t.state === "SUCCESS"
    ? t.result ?? ""
    : t.exception ?? (t.args !== null ? `${t.args} ${t.kwargs ?? ""}`.trim() : "");
  return [
    cell(t.uuid, 36),
    cell(t.name ?? "?", 20),
    cell(t.state, 9),
    cell(t.worker ?? t.client ?? "-", 20),
    cell(t.runtime === null ? "" : `${t.runtime.toFixed(3)}s`, 9, true),
    " ",
    detail.replace(/\s+/g, " "),
  ].join(" ");
}

/**
 * The `top` screen as lines (without ANSI codes): a title with totals and throughput, the
 * workers (status, active, processed, load, software), task counts by state, and the most
 * recent tasks, cut to fit `rows` × `columns`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { State } from "./state.ts";
 * import { renderTop } from "./format.ts";
 * const state = new State({ now: () => 10 });
 * state.event({ type: "worker-heartbeat", hostname: "w1@h", timestamp: 10, local_received: 10, freq: 2, active: 1, processed: 7, loadavg: [0.5, 0.25, 0] });
 * const screen = renderTop(state, { now: 10 }).join("\n");
 * assert.match(screen, /w1@h\s+ONLINE\s+1\s+7\s+0\.50 0\.25 0\.00/);
 * ```
 */
export function renderTop(state: State, options: TopOptions): string[] {
  const columns = options.columns ?? 100;
  const rows = options.rows ?? 30;
  const seconds = options.throughputSeconds ?? 10;
  const workers = state.workers();
  const alive = workers.filter((w) => w.alive).length;
  const counts = state.counts();
  const time = formatTimestamp(options.now).slice(0, 19);
  const lines: string[] = [
    `celeriac events${options.source ? ` · ${options.source}` : ""} · ${time} UTC`,
    `events ${state.eventCount} · tasks ${state.tasks().length} · workers ${alive}/${workers.length} alive · throughput ${
      state.throughput(seconds).toFixed(2)
    } tasks/s (last ${seconds} s)`,
    "",
    [
      cell("WORKER", 28),
      cell("STATUS", 8),
      cell("ACTIVE", 7, true),
      cell("PROCESSED", 10, true),
      " ",
      cell("LOAD", 16),
      "SOFTWARE",
    ].join(" "),
  ];
  const maxWorkerRows = Math.max(1, Math.floor((rows - 8) / 2));
  const shownWorkers = workers.slice(-maxWorkerRows).reverse();
  if (!shownWorkers.length) lines.push("  (no worker seen yet)");
  for (const w of shownWorkers) lines.push(workerRow(w));
  if (workers.length > shownWorkers.length) {
    lines.push(`  … and ${workers.length - shownWorkers.length} more`);
  }
  const order = [
    "PENDING",
    "RECEIVED",
    "STARTED",
    "RETRY",
    "SUCCESS",
    "FAILURE",
    "REVOKED",
    "REJECTED",
  ];
  const states = [
    ...order.filter((s) => counts[s]),
    ...Object.keys(counts).filter((s) => !order.includes(s)),
  ];
  lines.push(
    "",
    `STATES  ${states.map((s) => `${s} ${counts[s]}`).join("  ") || "(no task seen yet)"}`,
  );
  lines.push(
    "",
    [
      cell("TASK ID", 36),
      cell("NAME", 20),
      cell("STATE", 9),
      cell("WORKER", 20),
      cell("RUNTIME", 9, true),
      " ",
      "RESULT / EXCEPTION / ARGS",
    ].join(" "),
  );
  const room = Math.max(0, rows - lines.length);
  for (const t of state.tasks({ limit: room })) lines.push(taskRow(t));
  return lines.slice(0, rows).map((l) => l.length > columns ? l.slice(0, columns) : l);
}
