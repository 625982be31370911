/**
 * Test helper: a child process whose output is collected line by line, with bounded waits
 * and a stop that always reaps the child (SIGTERM, then SIGKILL after a grace period), so
 * Deno's test sanitizers see no leaked process, stream or timer.
 *
 * @module
 */

/** How a child ended. */
export interface ExitResult {
  /** Exit code (128 + signal number when killed by a signal). */
  code: number;
  /** The signal that ended it, if any. */
  signal: Deno.Signal | null;
  /** Everything it wrote to stdout. */
  stdout: string;
  /** Everything it wrote to stderr. */
  stderr: string;
}

/** Options of {@linkcode spawnChild}. */
export interface SpawnOptions {
  /** Arguments after the command. */
  args: string[];
  /** Working directory. @default the current directory */
  cwd?: string;
  /** Extra environment variables (added to the inherited environment). */
  env?: Record<string, string>;
  /** Start from an empty environment plus `env`. @default false */
  clearEnv?: boolean;
  /** Text written to stdin, which is then closed. @default stdin is closed */
  stdin?: string;
  /** Prefix for echoing output lines to the test's stderr when `CELERIAC_TEST_VERBOSE` is set. */
  label?: string;
}

type Stream = "stdout" | "stderr";

interface Waiter {
  test: (line: string, stream: Stream) => boolean;
  resolve: (line: string) => void;
}

const VERBOSE = (() => {
  try {
    return Deno.env.get("CELERIAC_TEST_VERBOSE") !== undefined;
  } catch {
    return false;
  }
})();

/** A running child process with collected output. */
export class Child {
  /** Process id. */
  readonly pid: number;
  /** Resolves when the process exited and its output was fully read. */
  readonly exited: Promise<ExitResult>;
  /** Lines written so far, per stream. */
  readonly lines: Record<Stream, string[]> = { stdout: [], stderr: [] };
  #process: Deno.ChildProcess;
  #waiters = new Set<Waiter>();
  #exitResult?: ExitResult;
  #label: string;

  /** Use {@linkcode spawnChild}. */
  constructor(process: Deno.ChildProcess, label: string, stdin?: string) {
    this.#process = process;
    this.#label = label;
    this.pid = process.pid;
    const writeStdin = (async () => {
      const writer = process.stdin.getWriter();
      try {
        if (stdin !== undefined) await writer.write(new TextEncoder().encode(stdin));
        await writer.close();
      } catch {
        // The child may exit before reading its stdin.
      }
    })();
    const pumps = [this.#pump(process.stdout, "stdout"), this.#pump(process.stderr, "stderr")];
    this.exited = (async () => {
      const status = await process.status;
      await Promise.all([...pumps, writeStdin]);
      this.#exitResult = {
        code: status.code,
        signal: status.signal,
        stdout: this.stdout,
        stderr: this.stderr,
      };
      return this.#exitResult;
    })();
  }

  /** Everything written to stdout so far. */
  get stdout(): string {
    return this.lines.stdout.map((l) => l + "\n").join("");
  }

  /** Everything written to stderr so far. */
  get stderr(): string {
    return this.lines.stderr.map((l) => l + "\n").join("");
  }

  /** Both streams, for failure messages. */
  get output(): string {
    return `--- stdout ---\n${this.stdout}--- stderr ---\n${this.stderr}`;
  }

  /** Whether the process has exited (and its output was read). */
  get hasExited(): boolean {
    return this.#exitResult !== undefined;
  }

  async #pump(stream: ReadableStream<Uint8Array>, name: Stream): Promise<void> {
    const decoder = new TextDecoder();
    let buffered = "";
    const emit = (line: string) => {
      this.lines[name].push(line);
      if (VERBOSE) console.error(`[${this.#label} ${name}] ${line}`);
      for (const waiter of [...this.#waiters]) {
        if (waiter.test(line, name)) {
          this.#waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    };
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        emit(buffered.slice(0, nl).replace(/\r$/, ""));
        buffered = buffered.slice(nl + 1);
      }
    }
    buffered += decoder.decode();
    if (buffered) emit(buffered);
  }

  /**
   * Waits for an output line matching `pattern` (already written lines count).
   *
   * @throws {Error} When the process exits first or `timeoutMs` passes; the message holds
   *   the output so far.
   */
  async waitForLine(
    pattern: RegExp,
    options: { timeoutMs: number; stream?: Stream },
  ): Promise<string> {
    const test = (line: string, stream: Stream) =>
      (options.stream === undefined || options.stream === stream) && pattern.test(line);
    for (const stream of ["stdout", "stderr"] as const) {
      const hit = this.lines[stream].find((l) => test(l, stream));
      if (hit !== undefined) return hit;
    }
    let waiter!: Waiter;
    const found = new Promise<string>((resolve) => {
      waiter = { test, resolve };
      this.#waiters.add(waiter);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), options.timeoutMs);
    });
    try {
      const outcome = await Promise.race([found, timeout, this.exited.then(() => "exited")]);
      if (outcome === "timeout" || outcome === "exited") {
        // A line may have arrived together with the exit.
        const late = this.lines.stdout.concat(this.lines.stderr).find((l) => pattern.test(l));
        if (late !== undefined && outcome === "exited") return late;
        throw new Error(
          `Cannot find a line matching ${pattern} in the output of ${this.#label} (pid ${this.pid}): ${
            outcome === "timeout" ? `no match within ${options.timeoutMs} ms` : "it exited"
          }\n${this.output}`,
        );
      }
      return outcome;
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(waiter);
    }
  }

  /**
   * Waits for the process to exit on its own.
   *
   * @throws {Error} When it is still running after `timeoutMs` (it is then killed).
   */
  async waitForExit(timeoutMs: number): Promise<ExitResult> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const outcome = await Promise.race([this.exited, timeout]);
      if (outcome !== "timeout") return outcome;
    } finally {
      clearTimeout(timer);
    }
    await this.stop({ graceMs: 0 });
    throw new Error(
      `Cannot wait for ${this.#label} (pid ${this.pid}) to exit: still running after ${timeoutMs} ms (killed)\n${this.output}`,
    );
  }

  /** Sends a signal; does nothing when the process already exited. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.hasExited) return;
    try {
      this.#process.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /**
   * Stops the process: `signal` (default SIGTERM), then SIGKILL when it is still running
   * after `graceMs`. Always resolves with the exit, never leaves the child behind.
   */
  async stop(
    options: { signal?: Deno.Signal; graceMs?: number } = {},
  ): Promise<ExitResult & { killed: boolean }> {
    if (this.hasExited) return { ...this.#exitResult!, killed: false };
    this.kill(options.signal ?? "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), options.graceMs ?? 10_000);
    });
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome !== "timeout") return { ...outcome, killed: false };
    this.kill("SIGKILL");
    return { ...(await this.exited), killed: true };
  }

  /** `await using child = spawnChild(...)` stops it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Spawns `command` with piped output (see {@linkcode Child}). */
export function spawnChild(command: string, options: SpawnOptions): Child {
  const process = new Deno.Command(command, {
    args: options.args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: options.clearEnv,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Child(process, options.label ?? command.split("/").at(-1)!, options.stdin);
}

/**
 * Runs a command to completion, bounded by `timeoutMs` (then killed and reported).
 *
 * @throws {Error} On timeout; the message holds the output so far.
 */
export async function runChild(
  command: string,
  options: SpawnOptions & { timeoutMs: number },
): Promise<ExitResult> {
  const child = spawnChild(command, options);
  return await child.waitForExit(options.timeoutMs);
}
