/**
 * Cold start: wall time from spawning a worker process to its first task done.
 *
 * For each target, each run: one `tasks.add` is queued first (by this process), then
 * `deno run <scoped permissions> worker.ts --app tests/fixtures/embedded_tasks.ts` is
 * spawned, and the time is taken when the worker logs
 * `Task tasks.add[<id>] succeeded` (the result is stored and the message acked right after
 * the line; the run checks the stored result). The worker is then stopped (SIGTERM).
 *
 * Targets:
 * - `sqlite`: the embedded default. The worker gets no `--broker`, so it runs on
 *   `./.celeriac/celeriac.db` in a fresh temporary working directory (one per run).
 * - `redis`: a throwaway redis-server on a free loopback port (`--broker …/0 --backend …/1`).
 * - `baseline`: `deno run` of an empty script, for scale.
 *
 * Usage: `deno run -A bench/coldstart.ts [--runs=N] [--only=sqlite,redis,baseline] [--json]
 * [--fresh-cache]` (default 10 runs each, after one warm-up run that fills Deno's module
 * cache). `--fresh-cache` gives every run an empty `DENO_DIR` instead (no warm-up): the very
 * first start on a machine, transpiling every module (Redis needs no npm package).
 *
 * @module
 */

import { createApp } from "../mod.ts";
import { spawnChild } from "../tests/helpers/process.ts";

const REPO = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const APP = `${REPO}/tests/fixtures/embedded_tasks.ts`;

/** One target's measurements (milliseconds). */
export interface ColdStartResult {
  /** `sqlite`, `redis` or `baseline`. */
  target: string;
  /** Runs measured (the warm-up excluded). */
  runs: number;
  /** Spawn → first task done, each run. */
  firstTaskMs: number[];
  /** Spawn → `ready.` log line, each run (not for the baseline). */
  readyMs: number[];
}

interface Target {
  name: string;
  /** Prepares one run; returns the worker's arguments and cwd, and a check of the result. */
  prepare(): Promise<{
    args: string[];
    cwd: string;
    taskId?: string;
    check(): Promise<void>;
    cleanup(): Promise<void>;
  }>;
  close(): Promise<void>;
}

function workerArgs(permissions: string[], extra: string[]): string[] {
  return [
    "run",
    ...permissions,
    `${REPO}/worker.ts`,
    "--app",
    APP,
    "-n",
    "cold@bench",
    "--loglevel",
    "info",
    ...extra,
  ];
}

async function sendOne(broker: string, backend?: string) {
  const app = createApp(backend ? { broker, backend } : { broker });
  const result = await app.sendTask<number>("tasks.add", [20, 22]);
  return {
    id: result.id,
    async check() {
      const value = await result.get({ timeout: 5 });
      await app.close();
      if (value !== 42) throw new Error(`Cannot confirm the first task: result ${value}`);
    },
  };
}

function sqliteTarget(): Target {
  return {
    name: "sqlite",
    async prepare() {
      const dir = await Deno.makeTempDir({ prefix: "celeriac-cold-" });
      const sent = await sendOne(`sqlite://${dir}/.celeriac/celeriac.db`);
      return {
        args: workerArgs([`--allow-read=${REPO},${dir}`, `--allow-write=${dir}`], []),
        cwd: dir,
        taskId: sent.id,
        check: sent.check,
        cleanup: () => Deno.remove(dir, { recursive: true }),
      };
    },
    close: () => Promise.resolve(),
  };
}

async function redisTarget(): Promise<Target> {
  const { startRedis } = await import("../tests/helpers/redis_server.ts");
  const redis = await startRedis();
  return {
    name: "redis",
    async prepare() {
      await redis.cli("FLUSHALL");
      const sent = await sendOne(redis.url(0), redis.url(1));
      return {
        args: workerArgs(
          [`--allow-net=127.0.0.1:${redis.port}`, `--allow-read=${REPO}`],
          ["--broker", redis.url(0), "--backend", redis.url(1)],
        ),
        cwd: REPO,
        taskId: sent.id,
        check: sent.check,
        cleanup: () => Promise.resolve(),
      };
    },
    close: () => redis.stop(),
  };
}

function baselineTarget(): Target {
  return {
    name: "baseline",
    async prepare() {
      const dir = await Deno.makeTempDir({ prefix: "celeriac-cold-" });
      await Deno.writeTextFile(`${dir}/empty.ts`, "");
      return {
        args: ["run", "--no-config", `${dir}/empty.ts`],
        cwd: dir,
        check: () => Promise.resolve(),
        cleanup: () => Deno.remove(dir, { recursive: true }),
      };
    },
    close: () => Promise.resolve(),
  };
}

async function runOnce(
  target: Target,
  freshCache: boolean,
): Promise<{ firstTaskMs: number; readyMs?: number }> {
  const run = await target.prepare();
  const denoDir = freshCache ? await Deno.makeTempDir({ prefix: "celeriac-cold-dir-" }) : null;
  try {
    const started = performance.now();
    const child = spawnChild(Deno.execPath(), {
      args: run.args,
      cwd: run.cwd,
      env: { NO_COLOR: "1", ...(denoDir ? { DENO_DIR: denoDir } : {}) },
      label: `${target.name} worker`,
    });
    try {
      if (!run.taskId) {
        const exit = await child.waitForExit(30_000);
        if (exit.code !== 0) throw new Error(`Cannot run the baseline: ${exit.stderr}`);
        return { firstTaskMs: performance.now() - started };
      }
      let readyMs: number | undefined;
      const ready = child.waitForLine(/cold@bench ready\.$/, { timeoutMs: 30_000 }).then(() => {
        readyMs = performance.now() - started;
      });
      const id = run.taskId.replace(/[-]/g, "\\-");
      await child.waitForLine(new RegExp(`Task tasks\\.add\\[${id}\\] succeeded`), {
        timeoutMs: 30_000,
      });
      const firstTaskMs = performance.now() - started;
      await ready;
      await run.check();
      return { firstTaskMs, readyMs };
    } finally {
      await child.stop({ graceMs: 5000 });
    }
  } finally {
    await run.cleanup();
    if (denoDir) await Deno.remove(denoDir, { recursive: true });
  }
}

/** Measures the targets named in `only` (all when empty). */
export async function measureColdStart(
  runs: number,
  only: string[] = [],
  freshCache = false,
): Promise<ColdStartResult[]> {
  const wanted = (name: string) => !only.length || only.includes(name);
  const results: ColdStartResult[] = [];
  const factories: [string, () => Target | Promise<Target>][] = [
    ["baseline", baselineTarget],
    ["sqlite", sqliteTarget],
    ["redis", redisTarget],
  ];
  for (const [name, make] of factories) {
    if (!wanted(name)) continue;
    const target = await make();
    try {
      if (!freshCache) await runOnce(target, false); // warm-up: fills the module cache
      const result: ColdStartResult = { target: name, runs, firstTaskMs: [], readyMs: [] };
      for (let i = 0; i < runs; i++) {
        const one = await runOnce(target, freshCache);
        result.firstTaskMs.push(one.firstTaskMs);
        if (one.readyMs !== undefined) result.readyMs.push(one.readyMs);
      }
      results.push(result);
    } finally {
      await target.close();
    }
  }
  return results;
}

/** The p-th percentile (nearest rank) of some numbers. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/** A Markdown table of the results. */
export function formatColdStart(results: ColdStartResult[]): string {
  const ms = (v: number) => (Number.isNaN(v) ? "-" : `${Math.round(v)}`);
  const rows = results.map((r) =>
    `| ${r.target} | ${r.runs} | ${ms(percentile(r.firstTaskMs, 50))} | ${
      ms(percentile(r.firstTaskMs, 90))
    } | ${ms(Math.min(...r.firstTaskMs))} | ${ms(Math.max(...r.firstTaskMs))} | ${
      ms(percentile(r.readyMs, 50))
    } |`
  );
  return [
    "| target | runs | first task done p50 (ms) | p90 | min | max | ready p50 (ms) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

if (import.meta.main) {
  let runs = 10;
  let only: string[] = [];
  let json = false;
  let freshCache = false;
  for (const arg of Deno.args) {
    if (arg.startsWith("--runs=")) runs = Number(arg.slice(7));
    else if (arg.startsWith("--only=")) only = arg.slice(7).split(",").filter(Boolean);
    else if (arg === "--json") json = true;
    else if (arg === "--fresh-cache") freshCache = true;
    else {
      console.error(
        `Cannot use argument "${arg}": use --runs=N, --only=a,b, --json, --fresh-cache`,
      );
      Deno.exit(2);
    }
  }
  if (!(Number.isInteger(runs) && runs >= 1)) {
    console.error(`Cannot use --runs=${runs}: it must be a positive integer`);
    Deno.exit(2);
  }
  const results = await measureColdStart(runs, only, freshCache);
  console.log(json ? JSON.stringify(results) : formatColdStart(results));
}
