/**
 * A worker's events, as a Python Celery worker sends them: `worker-online` at start,
 * `worker-heartbeat` every `freq` seconds (default 2.0), `worker-offline` at shutdown (always,
 * when the broker has fanout), and the task events from the worker's lifecycle hooks
 * (`task-received`, `-started`, `-succeeded`, `-failed`, `-retried`, `-revoked`,
 * `-rejected`), batched on `task.multi`, only when task events are on (`-E`).
 *
 * @module
 */

import type { Broker } from "../brokers/broker.ts";
import { TaskNotRegisteredError } from "../errors.ts";
import { formatTraceback, serializeException } from "../protocol/exception.ts";
import { pyRepr, REPR_MAX_LENGTH, reprArgs, reprKwargs } from "../protocol/repr.ts";
import type { TaskMessage } from "../protocol/task.ts";
import { VERSION } from "../version.ts";
import type { Hooks } from "../worker/hooks.ts";
import { EventDispatcher } from "./dispatcher.ts";
import type { CeleryEvent, LamportClock } from "./event.ts";

/** What a worker exposes to its events (a {@linkcode Worker} has all of it). */
export interface WorkerEventSource {
  /** Node name. */
  readonly name: string;
  /** Lifecycle hooks. */
  readonly hooks: Hooks;
  /** Ids of tasks running now (`active`). */
  readonly activeIds: readonly string[];
  /** `processed` counts finished tasks. */
  readonly counters: { readonly processed: number };
}

/** Options of {@linkcode WorkerEvents}. */
export interface WorkerEventsOptions {
  /** Send task events (`-E`). @default false */
  taskEvents?: boolean;
  /** Seconds between heartbeats (`freq`). @default 2 */
  heartbeatInterval?: number;
  /** Lamport clock to share (with remote control). @default a new clock */
  clock?: LamportClock;
  /** Called when an event cannot be published. @default ignore */
  onError?: (error: unknown) => void;
  /** Milliseconds the final `worker-offline` may take before stop gives up. @default 2000 */
  offlineTimeoutMs?: number;
}

const PY_SYSTEMS: Record<string, string> = {
  linux: "Linux",
  darwin: "Darwin",
  windows: "Windows",
  freebsd: "FreeBSD",
  netbsd: "NetBSD",
  openbsd: "OpenBSD",
  solaris: "SunOS",
  illumos: "SunOS",
  android: "Linux",
  aix: "AIX",
};

/**
 * `sw_ident`, `sw_ver` and `sw_sys` of worker events: `celeriac`, its version, and the OS
 * spelled as Python's `platform.system()` (`Linux`, `Darwin`, `Windows`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SOFTWARE_INFO } from "./worker_events.ts";
 * assert.equal(SOFTWARE_INFO.sw_ident, "celeriac");
 * ```
 */
export const SOFTWARE_INFO: Readonly<{ sw_ident: string; sw_ver: string; sw_sys: string }> = Object
  .freeze({
    sw_ident: "celeriac",
    sw_ver: VERSION,
    sw_sys: PY_SYSTEMS[Deno.build.os] ?? Deno.build.os,
  });

/**
 * The load average `[1m, 5m, 15m]` rounded up to 2 decimals (as Celery), or `[0, 0, 0]`
 * when Deno may not read it (`--allow-sys=loadavg`) or the OS has none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadAverage } from "./worker_events.ts";
 * assert.equal(loadAverage().length, 3);
 * ```
 */
export function loadAverage(): [number, number, number] {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "loadavg" }).state !== "granted") {
      return [0, 0, 0];
    }
    const [a, b, c] = Deno.loadavg().map((l) => Math.ceil(l * 100) / 100);
    return [a ?? 0, b ?? 0, c ?? 0];
  } catch {
    return [0, 0, 0];
  }
}

/** Cuts a repr to Celery's 1024 characters (`saferepr`). */
function cut(text: string): string {
  return text.length > REPR_MAX_LENGTH ? text.slice(0, REPR_MAX_LENGTH - 3) + "..." : text;
}

/**
 * Python's `repr()` of a thrown value as Celery puts it in `task-failed.exception`:
 * `ValueError('bad input')`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reprException } from "./worker_events.ts";
 * class ValueError extends Error { override name = "ValueError"; }
 * assert.equal(reprException(new ValueError("bad input")), "ValueError('bad input')");
 * assert.equal(reprException("boom"), "Error('boom')");
 * ```
 */
export function reprException(error: unknown): string {
  const exc = serializeException(error);
  return cut(`${exc.exc_type}(${exc.exc_message.map(pyRepr).join(", ")})`);
}

function receivedFields(message: TaskMessage): Record<string, unknown> {
  const eta = message.headers["eta"];
  const expires = message.headers["expires"];
  return {
    uuid: message.id,
    name: message.displayName,
    args: message.argsrepr || reprArgs(message.args),
    kwargs: message.kwargsrepr || reprKwargs(message.kwargs),
    root_id: message.rootId,
    parent_id: message.parentId,
    retries: message.retries,
    eta: typeof eta === "string" && eta ? eta : null,
    expires: typeof expires === "string" && expires ? expires : null,
  };
}

/**
 * Sends a worker's events: build it with the worker and its broker, `start()` after the
 * worker started (sends `worker-online`, starts the heartbeat), `stop()` at shutdown (sends
 * `worker-offline`). A {@linkcode Worker} does this itself; use this class for a custom
 * worker loop.
 *
 * @example A worker on the memory broker, watched by a receiver
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * import { EventReceiver } from "./receiver.ts";
 *
 * const app = createApp({ broker: "memory://worker-events-doc" });
 * app.task("tasks.add", (x: number, y: number) => x + y);
 * const types: string[] = [];
 * const receiver = new EventReceiver(await app.broker(), { handlers: { "*": (e) => types.push(e.type) } });
 * await receiver.start();
 * const worker = new Worker(app, { sendEvents: true, logLevel: "critical" });
 * await worker.start();
 * await (await app.sendTask("tasks.add", [2, 3])).get({ timeout: 5 });
 * await worker.stop();
 * await receiver.close();
 * await app.close();
 * assert.deepEqual(types.filter((t) => t !== "worker-heartbeat"),
 *   ["worker-online", "task-received", "task-started", "task-succeeded", "worker-offline"]);
 * ```
 */
export class WorkerEvents {
  /** The dispatcher (remote control enables and disables task events on it). */
  readonly dispatcher: EventDispatcher;
  /** Seconds between heartbeats. */
  readonly freq: number;
  #source: WorkerEventSource;
  #offlineTimeoutMs: number;
  #heartbeat?: ReturnType<typeof setInterval>;
  #unhook: (() => void)[] = [];
  #started = false;

  /**
   * @throws {RangeError} When `heartbeatInterval` is not a positive number.
   */
  constructor(source: WorkerEventSource, broker: Broker, options: WorkerEventsOptions = {}) {
    this.#source = source;
    this.freq = options.heartbeatInterval ?? 2;
    if (!(this.freq > 0) || !Number.isFinite(this.freq)) {
      throw new RangeError(
        `Cannot send worker events: heartbeatInterval must be a positive number of seconds, got ${options.heartbeatInterval}`,
      );
    }
    this.#offlineTimeoutMs = options.offlineTimeoutMs ?? 2000;
    const onError = options.onError ?? (() => {});
    this.dispatcher = new EventDispatcher(broker, {
      hostname: source.name,
      groups: options.taskEvents ? null : ["worker"],
      bufferGroups: ["task"],
      clock: options.clock,
      onError: (error) => onError(error),
    });
  }

  /** Whether the broker can carry events at all (it has fanout). */
  get supported(): boolean {
    return this.dispatcher.enabled;
  }

  /** The Lamport clock of the worker's events (share it with remote control). */
  get clock(): LamportClock {
    return this.dispatcher.clock;
  }

  /** Whether task events are sent (`-E`, or enabled by remote control). */
  get taskEventsEnabled(): boolean {
    return this.dispatcher.taskEventsEnabled;
  }

  /**
   * Starts sending task events (remote control's `enable_events`); false when already on.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MemoryBroker } from "../brokers/memory.ts";
   * import { Hooks } from "../worker/hooks.ts";
   * import { WorkerEvents } from "./worker_events.ts";
   * const source = { name: "w@h", hooks: new Hooks(), activeIds: [], counters: { processed: 0 } };
   * const events = new WorkerEvents(source, new MemoryBroker());
   * assert.equal(events.enableTaskEvents(), true);
   * assert.equal(events.disableTaskEvents(), true);
   * assert.equal(events.taskEventsEnabled, false);
   * ```
   */
  enableTaskEvents(): boolean {
    return this.dispatcher.enableTaskEvents();
  }

  /** Stops sending task events (remote control's `disable_events`); false when already off. */
  disableTaskEvents(): boolean {
    return this.dispatcher.disableTaskEvents();
  }

  /**
   * Sends a worker event (`worker-online`, `worker-heartbeat`, `worker-offline`) with the
   * worker's numbers. Remote control's `heartbeat` command sends
   * `sendWorkerEvent("worker-heartbeat", 5)`, as Celery's does.
   */
  sendWorkerEvent(type: string, freq: number = this.freq): CeleryEvent | undefined {
    return this.dispatcher.send(type, {
      freq,
      active: this.#source.activeIds.length,
      processed: this.#source.counters.processed,
      loadavg: loadAverage(),
      ...SOFTWARE_INFO,
    });
  }

  /** Hooks the task events, sends `worker-online` and starts the heartbeat. */
  async start(): Promise<void> {
    if (this.#started || !this.supported) return;
    this.#started = true;
    this.#hookTasks();
    this.sendWorkerEvent("worker-online");
    await this.dispatcher.flush();
    this.#heartbeat = setInterval(() => this.sendWorkerEvent("worker-heartbeat"), this.freq * 1000);
  }

  #hookTasks(): void {
    const hooks = this.#source.hooks;
    const d = this.dispatcher;
    const on: Hooks["on"] = (hook, listener) => {
      const off = hooks.on(hook, listener);
      this.#unhook.push(off);
      return off;
    };
    on("received", ({ message }) => {
      if (d.taskEventsEnabled) d.send("task-received", receivedFields(message));
    });
    on("started", ({ message }) => {
      if (d.taskEventsEnabled) d.send("task-started", { uuid: message.id });
    });
    on("succeeded", ({ message, value, runtimeMs }) => {
      if (!d.taskEventsEnabled) return;
      d.send("task-succeeded", {
        uuid: message.id,
        result: cut(pyRepr(value)),
        runtime: runtimeMs / 1000,
      });
    });
    on("failed", ({ message, error }) => {
      if (!d.taskEventsEnabled) return;
      d.send("task-failed", {
        uuid: message.id,
        exception: reprException(error),
        traceback: formatTraceback(error) ?? "",
      });
    });
    on("retried", ({ message, error }) => {
      if (!d.taskEventsEnabled) return;
      d.send("task-retried", {
        uuid: message.id,
        exception: reprException(error),
        traceback: formatTraceback(error) ?? "",
      });
    });
    on("revoked", ({ message, terminated, signum, expired }) => {
      if (!d.taskEventsEnabled) return;
      d.send("task-revoked", { uuid: message.id, terminated, signum, expired });
    });
    on("rejected", ({ taskId, message, requeue, error }) => {
      if (!d.taskEventsEnabled) return;
      const uuid = taskId ?? message?.id;
      if (!uuid) return; // no id: nothing a monitor could attach it to
      if (error instanceof TaskNotRegisteredError) {
        // As Celery's on_unknown_task: a failure event with only the exception.
        d.send("task-failed", { uuid, exception: `NotRegistered(${pyRepr(error.taskName)})` });
      } else d.send("task-rejected", { uuid, requeue });
    });
  }

  /**
   * Stops the heartbeat, unhooks, publishes what is buffered, then `worker-offline` (waiting
   * at most `offlineTimeoutMs`, so a lost broker cannot hold up shutdown).
   */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    clearInterval(this.#heartbeat);
    for (const off of this.#unhook.splice(0)) off();
    this.sendWorkerEvent("worker-offline");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.dispatcher.close(),
      new Promise<void>((resolve) => timer = setTimeout(resolve, this.#offlineTimeoutMs)),
    ]);
    clearTimeout(timer);
  }
}
