/**
 * Test helpers for interop with the real Python Celery 5.2 (Debian's `python3-celery`, run by
 * `/usr/bin/python3`, never the pyenv `python3` on PATH) and for running celeriac's worker
 * CLI as a subprocess.
 *
 * - {@linkcode runPython} / {@linkcode runPythonJson}: run a Python client snippet with
 *   `tests/interop/pytasks.py` importable and Celery pointed at the test Redis.
 * - {@linkcode startPythonWorker}: a real `celery worker` on `pytasks`, ready when it logs
 *   `<name> ready.`; `stop()` sends SIGTERM (warm shutdown) and reaps it.
 * - {@linkcode startCeleriacWorker} / {@linkcode runCeleriacWorker}: `deno run … worker.ts`.
 *
 * @module
 */

import { type Child, type ExitResult, runChild, spawnChild } from "./process.ts";

/** The Python that has Celery 5.2 installed (Debian's). */
export const PYTHON = "/usr/bin/python3";

function dirPath(relative: string): string {
  return decodeURIComponent(new URL(relative, import.meta.url).pathname).replace(/\/$/, "");
}

/** `tests/interop`, where `pytasks.py` lives. */
export const INTEROP_DIR: string = dirPath("../interop/");
/** The repository root (where `worker.ts` lives). */
export const REPO_ROOT: string = dirPath("../../");

/** Broker and backend the Python side uses. */
export interface CeleryUrls {
  /** Broker URL (`CELERY_BROKER_URL`). */
  broker: string;
  /** Result backend URL (`CELERY_RESULT_BACKEND`); unset means Celery's default (none). */
  backend?: string;
}

/** The environment for Python: Celery's env vars, `pytasks` importable, no bytecode files. */
export function pythonEnv(urls: CeleryUrls): Record<string, string> {
  const env: Record<string, string> = {
    CELERY_BROKER_URL: urls.broker,
    PYTHONPATH: INTEROP_DIR,
    PYTHONDONTWRITEBYTECODE: "1",
    PYTHONUNBUFFERED: "1",
    PYTHONIOENCODING: "utf-8",
    // Debian's python must not pick up another installation's modules.
    PYTHONNOUSERSITE: "1",
  };
  if (urls.backend) env.CELERY_RESULT_BACKEND = urls.backend;
  return env;
}

/** Options of {@linkcode runPython}. */
export interface RunPythonOptions extends CeleryUrls {
  /** Kill the snippet after this long. @default 15000 */
  timeoutMs?: number;
}

/**
 * Runs a Python snippet (`python3 -c`) with `pytasks` importable and Celery configured from
 * `urls`. Returns its exit and output; never throws for a non-zero exit.
 *
 * @throws {Error} When it runs longer than `timeoutMs` (it is killed).
 */
export async function runPython(code: string, options: RunPythonOptions): Promise<ExitResult> {
  // Strip the common indentation so snippets can be written inline in tests.
  const lines = code.replace(/^\n/, "").split("\n");
  const indent = Math.min(
    ...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length),
  );
  const source = lines.map((l) => l.slice(indent)).join("\n");
  return await runChild(PYTHON, {
    args: ["-c", source],
    cwd: INTEROP_DIR,
    env: pythonEnv(options),
    timeoutMs: options.timeoutMs ?? 15_000,
    label: "python client",
  });
}

/**
 * Runs a Python snippet that prints one JSON value as its last stdout line, and returns it
 * parsed.
 *
 * @throws {Error} When the snippet exits non-zero, times out, or its last line is not JSON;
 *   the message holds its output.
 */
// deno-lint-ignore no-explicit-any
export async function runPythonJson<T = any>(code: string, options: RunPythonOptions): Promise<T> {
  const result = await runPython(code, options);
  const last = result.stdout.trimEnd().split("\n").at(-1) ?? "";
  if (result.code !== 0) {
    throw new Error(
      `Cannot run Python snippet: exit code ${result.code}\n--- stdout ---\n${result.stdout}--- stderr ---\n${result.stderr}`,
    );
  }
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(
      `Cannot parse the last line of the Python snippet's output as JSON: ${
        JSON.stringify(last)
      }\n--- stderr ---\n${result.stderr}`,
    );
  }
}

/** A worker process started by these helpers. */
export interface WorkerProcess {
  /** The child (output lines, pid, waits). */
  child: Child;
  /** Node name. */
  name: string;
  /**
   * Warm shutdown: SIGTERM, wait up to `graceMs` (default 10 s), then SIGKILL. Resolves
   * with the exit; safe to call more than once.
   */
  stop(graceMs?: number): Promise<ExitResult & { killed: boolean }>;
}

/** Options of {@linkcode startPythonWorker}. */
export interface PythonWorkerOptions extends CeleryUrls {
  /** Queues (`-Q`). @default Celery's default queue */
  queues?: string[];
  /** Node name (`-n`). @default "py@test" */
  name?: string;
  /** Pool (`-P`). @default "threads" */
  pool?: "threads" | "solo" | "prefork";
  /** Concurrency (`-c`). @default 2 */
  concurrency?: number;
  /** How long to wait for "ready.". @default 20000 */
  readyTimeoutMs?: number;
  /** Further worker arguments (e.g. `-E` for task events). */
  args?: string[];
  /** Extra environment variables (e.g. PYTASKS_VISIBILITY_TIMEOUT). */
  env?: Record<string, string>;
  /**
   * App module (`-A`), importable from `pythonPath` or `tests/interop`.
   * @default "pytasks"
   */
  app?: string;
  /** Directories searched for `app` before `tests/interop` (PYTHONPATH). */
  pythonPath?: string[];
}

/**
 * Starts a real Python Celery worker on `pytasks` (or `app`) and waits until it logs
 * `<name> ready.` (its consumer is running). Mingle and gossip are off so start-up does not
 * wait on peers.
 *
 * @throws {Error} When it exits or is not ready in time (it is then stopped).
 */
export async function startPythonWorker(options: PythonWorkerOptions): Promise<WorkerProcess> {
  const name = options.name ?? "py@test";
  const args = [
    "-m",
    "celery",
    "-A",
    options.app ?? "pytasks",
    "worker",
    "-P",
    options.pool ?? "threads",
    "-c",
    String(options.concurrency ?? 2),
    "-l",
    "INFO",
    "-n",
    name,
    "--without-mingle",
    "--without-gossip",
  ];
  if (options.queues?.length) args.push("-Q", options.queues.join(","));
  if (options.args?.length) args.push(...options.args);
  const env = pythonEnv(options);
  if (options.pythonPath?.length) {
    env.PYTHONPATH = [...options.pythonPath, env.PYTHONPATH].join(":");
  }
  const child = spawnChild(PYTHON, {
    args,
    cwd: INTEROP_DIR,
    env: { ...env, ...options.env },
    label: `python worker ${name}`,
  });
  return await awaitReady(child, name, options.readyTimeoutMs ?? 20_000);
}

async function awaitReady(child: Child, name: string, timeoutMs: number): Promise<WorkerProcess> {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  try {
    await child.waitForLine(new RegExp(`\\b${escaped} ready\\.$`), { timeoutMs });
  } catch (err) {
    await child.stop({ graceMs: 2000 });
    throw err;
  }
  return { child, name, stop: (graceMs) => child.stop({ graceMs }) };
}

/** Options of {@linkcode startCeleriacWorker} and {@linkcode runCeleriacWorker}. */
export interface CeleriacWorkerOptions {
  /** Broker URL (`--broker`). */
  broker?: string;
  /** Backend URL (`--backend`). */
  backend?: string;
  /** App module (`--app`), relative to the repository root. @default "examples/interop/tasks.ts" */
  app?: string;
  /** Queues (`-Q`). */
  queues?: string[];
  /** Node name (`-n`). @default "celeriac@test" */
  name?: string;
  /** Concurrency (`-c`). */
  concurrency?: number;
  /** Deno permission flags. @default ["-A"] */
  permissions?: string[];
  /** Further worker arguments. */
  args?: string[];
  /** Working directory. @default the repository root */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** How long to wait for "ready." (start) or for the exit (run). @default 20000 */
  timeoutMs?: number;
}

function celeriacArgs(options: CeleriacWorkerOptions): string[] {
  const args = [
    "run",
    ...(options.permissions ?? ["-A"]),
    `${REPO_ROOT}/worker.ts`,
    "--app",
    options.app ?? "examples/interop/tasks.ts",
    "-n",
    options.name ?? "celeriac@test",
    "--loglevel",
    "info",
  ];
  if (options.broker !== undefined) args.push("--broker", options.broker);
  if (options.backend !== undefined) args.push("--backend", options.backend);
  if (options.queues?.length) args.push("-Q", options.queues.join(","));
  if (options.concurrency !== undefined) args.push("-c", String(options.concurrency));
  return [...args, ...(options.args ?? [])];
}

/**
 * Starts the celeriac worker CLI (`deno run <permissions> worker.ts …`) and waits for its
 * `<name> ready.` log line.
 *
 * @throws {Error} When it exits or is not ready in time (it is then stopped).
 */
export async function startCeleriacWorker(
  options: CeleriacWorkerOptions = {},
): Promise<WorkerProcess> {
  const name = options.name ?? "celeriac@test";
  const child = spawnChild(Deno.execPath(), {
    args: celeriacArgs(options),
    cwd: options.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    label: `celeriac worker ${name}`,
  });
  return await awaitReady(child, name, options.timeoutMs ?? 20_000);
}

/**
 * Runs the celeriac worker CLI to completion (for `--burst`, `--help` and start-up errors),
 * bounded by `timeoutMs`.
 *
 * @throws {Error} When it is still running after `timeoutMs` (it is killed).
 */
export async function runCeleriacWorker(
  options: CeleriacWorkerOptions = {},
): Promise<ExitResult & { elapsedMs: number }> {
  const started = performance.now();
  const result = await runChild(Deno.execPath(), {
    args: celeriacArgs(options),
    cwd: options.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    label: "celeriac worker",
    timeoutMs: options.timeoutMs ?? 20_000,
  });
  return { ...result, elapsedMs: performance.now() - started };
}
