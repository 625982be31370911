/**
 * A pool of Web Workers for CPU-bound tasks. A task declared with {@linkcode threadTask}
 * runs in a thread, so it cannot block the worker's event loop, and its hard time limit can
 * really stop it: the thread is terminated and replaced.
 *
 * @module
 */

import { TimeLimitExceeded } from "../errors.ts";

const THREAD = Symbol.for("celeriac.thread");

/** Where a threaded task's code lives. */
export interface ThreadSpec {
  /** Module URL (use `new URL("./cpu.ts", import.meta.url)`). */
  module: string;
  /** Exported function to call. */
  exportName: string;
}

/**
 * Declares a task body that runs in a Web Worker: the export `exportName` of `module`,
 * called with the task's arguments (they and the result must be structured-cloneable).
 * Called directly (outside a worker), it runs in-process.
 *
 * @example
 * ```ts ignore
 * app.task("tasks.fib", threadTask(new URL("./cpu.ts", import.meta.url), "fib"), { timeLimit: 5 });
 * ```
 */
export function threadTask(
  module: URL | string,
  exportName: string,
): (...args: unknown[]) => Promise<unknown> {
  const spec: ThreadSpec = { module: String(module), exportName };
  const inProcess = async (...args: unknown[]) => {
    const mod = await import(spec.module);
    return await mod[exportName](...args);
  };
  return Object.assign(inProcess, { [THREAD]: spec });
}

/** The thread spec of a task function, if it was declared with {@linkcode threadTask}. */
export function threadSpecOf(fn: unknown): ThreadSpec | undefined {
  return (fn as { [THREAD]?: ThreadSpec } | null)?.[THREAD];
}

interface Slot {
  worker: Worker;
  busy: boolean;
}

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { name: string; message: string; stack?: string };
}

/**
 * Web Workers, created on demand up to `size`, one job at a time each.
 *
 * @example
 * ```ts ignore
 * const pool = new ThreadPool(2);
 * await pool.run({ module: new URL("./cpu.ts", import.meta.url).href, exportName: "fib" }, [30], { hardMs: 1000 });
 * pool.close();
 * ```
 */
export class ThreadPool {
  #size: number;
  #slots: Slot[] = [];
  #waiting: (() => void)[] = [];
  #nextId = 0;

  /** @throws {RangeError} When size is not a positive integer. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(
        `Cannot size the thread pool: it must be a positive integer, got ${size}`,
      );
    }
    this.#size = size;
  }

  /** Threads alive now. */
  get threads(): number {
    return this.#slots.length;
  }

  async #acquire(): Promise<Slot> {
    for (;;) {
      const idle = this.#slots.find((s) => !s.busy);
      if (idle) {
        idle.busy = true;
        return idle;
      }
      if (this.#slots.length < this.#size) {
        const slot: Slot = {
          worker: new Worker(new URL("./thread_entry.ts", import.meta.url).href, {
            type: "module",
          }),
          busy: true,
        };
        this.#slots.push(slot);
        return slot;
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  #release(slot: Slot, terminate: boolean): void {
    if (terminate) {
      slot.worker.terminate();
      this.#slots = this.#slots.filter((s) => s !== slot);
    } else slot.busy = false;
    this.#waiting.shift()?.();
  }

  /**
   * Runs one job. With `hardMs`, a job still running then is stopped by terminating its
   * thread, and the promise rejects with `TimeLimitExceeded`.
   */
  async run(
    spec: ThreadSpec,
    args: unknown[],
    options: { hardMs?: number | null } = {},
  ): Promise<unknown> {
    const slot = await this.#acquire();
    const id = ++this.#nextId;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let terminate = false;
    try {
      return await new Promise((resolve, reject) => {
        const onMessage = (event: MessageEvent<Reply>) => {
          if (event.data.id !== id) return;
          cleanup();
          if (event.data.ok) resolve(event.data.value);
          else {
            const e = event.data.error!;
            reject(Object.assign(new Error(e.message), { name: e.name, stack: e.stack }));
          }
        };
        const onError = (event: ErrorEvent) => {
          event.preventDefault();
          cleanup();
          terminate = true;
          reject(new Error(`Thread failed: ${event.message}`));
        };
        const cleanup = () => {
          slot.worker.removeEventListener("message", onMessage);
          slot.worker.removeEventListener("error", onError);
          clearTimeout(timer);
        };
        slot.worker.addEventListener("message", onMessage);
        slot.worker.addEventListener("error", onError);
        if (options.hardMs !== undefined && options.hardMs !== null) {
          timer = setTimeout(() => {
            cleanup();
            terminate = true;
            reject(new TimeLimitExceeded(options.hardMs! / 1000));
          }, options.hardMs);
        }
        slot.worker.postMessage({ id, module: spec.module, exportName: spec.exportName, args });
      });
    } finally {
      this.#release(slot, terminate);
    }
  }

  /** Terminates every thread. */
  close(): void {
    for (const slot of this.#slots) slot.worker.terminate();
    this.#slots = [];
  }
}
