/**
 * A test harness: an app on its own `memory://<name>` broker and backend, a logger that
 * collects lines, and a worker factory. `close()` stops every worker and closes the app.
 *
 * @module
 */

import { type App, type AppOptions, createApp } from "../../src/app.ts";
import { MemoryBackend } from "../../src/backends/memory.ts";
import { MemoryBroker } from "../../src/brokers/memory.ts";
import { Logger } from "../../src/log.ts";
import { Worker, type WorkerOptions } from "../../src/worker/worker.ts";

let counter = 0;

/** A unique memory URL name for one test. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Deno.pid}-${++counter}-${crypto.randomUUID().slice(0, 8)}`;
}

/** What {@linkcode harness} returns. */
export interface Harness {
  /** The app, on `memory://<name>`. */
  app: App;
  /** Its memory broker. */
  broker: MemoryBroker;
  /** Its memory backend (when the app has the default backend). */
  backend: MemoryBackend | null;
  /** Log lines written by workers made with {@linkcode Harness.worker}. */
  logs: string[];
  /** The collecting logger. */
  logger: Logger;
  /** Builds a worker with the collecting logger (and remembers it for `close`). */
  worker(options?: WorkerOptions): Worker;
  /** Stops every worker (warm, then cold) and closes the app. */
  close(): Promise<void>;
}

/** Builds a {@linkcode Harness} on a fresh memory broker. */
export async function harness(prefix: string, options: AppOptions = {}): Promise<Harness> {
  const name = uniqueName(prefix);
  const app = createApp({ broker: `memory://${name}`, ...options });
  const broker = await app.broker();
  if (!(broker instanceof MemoryBroker)) throw new TypeError("expected a memory broker");
  const backend = await app.backend();
  const logs: string[] = [];
  const logger = new Logger("debug", (line) => logs.push(line));
  const workers: Worker[] = [];
  return {
    app,
    broker,
    backend: backend instanceof MemoryBackend ? backend : null,
    logs,
    logger,
    worker(options: WorkerOptions = {}) {
      const worker = new Worker(app, { logger, fetchTimeoutMs: 50, ...options });
      workers.push(worker);
      return worker;
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
      await app.close();
    },
  };
}
