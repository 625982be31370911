/**
 * Alert on task failures, from the event stream: every `task-failed` event (from celeriac or
 * Python Celery workers started with `-E`) prints one alert line with the task's name, id,
 * worker and exception. Swap `console.error` for a webhook, a pager, a chat message.
 *
 * ```sh
 * deno run -A worker.ts --app ./examples/interop/tasks.ts --broker redis://127.0.0.1:6379/0 -E
 * deno run -A examples/alert_on_failure.ts redis://127.0.0.1:6379/0
 * # ALERT tasks.fail[4a1d…] failed on celeriac@host: ValueError('bad input')
 * ```
 *
 * How it works: an {@linkcode EventReceiver} feeds a {@linkcode State} (which remembers each
 * task's name from its `task-received` event, since `task-failed` carries only the id and
 * the exception) and calls `onAlert` for each failure.
 *
 * @module
 */

import { type Broker, createBroker } from "../mod.ts";
import { type CeleryEvent, EventReceiver, State } from "../events.ts";

/** One failure. */
export interface FailureAlert {
  /** Task id. */
  uuid: string;
  /** Task name, when its `task-received` was seen. */
  name: string | null;
  /** Worker node name. */
  worker: string;
  /** Python repr of the exception, e.g. `ValueError('bad input')`. */
  exception: string;
  /** The traceback text. */
  traceback: string | null;
  /** The failure event itself. */
  event: CeleryEvent;
}

/** A running watch; `close()` stops it. */
export interface FailureWatch {
  /** The state it keeps (workers and tasks). */
  state: State;
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * Calls `onAlert` for every `task-failed` event on the broker.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../mod.ts";
 * import { watchFailures } from "./alert_on_failure.ts";
 * const app = createApp({ broker: "memory://alert-doc" });
 * app.task("tasks.fail", (msg: string) => { throw new Error(msg); });
 * const alerts: string[] = [];
 * const watch = await watchFailures(await app.broker(), (a) => alerts.push(`${a.name} ${a.exception}`));
 * const worker = new Worker(app, { sendEvents: true, logLevel: "critical" });
 * await worker.start();
 * await app.sendTask("tasks.fail", ["boom"]).then((r) => r.get({ timeout: 5 })).catch(() => {});
 * await worker.stop();
 * await watch.close();
 * await app.close();
 * assert.deepEqual(alerts, ["tasks.fail Error('boom')"]);
 * ```
 */
export async function watchFailures(
  broker: Broker,
  onAlert: (alert: FailureAlert) => void,
): Promise<FailureWatch> {
  const state = new State();
  const receiver = new EventReceiver(broker, {
    handlers: {
      "task-failed": (event) => {
        const task = state.event(event);
        onAlert({
          uuid: String(event.uuid),
          name: task && "name" in task ? task.name : null,
          worker: String(event.hostname),
          exception: String(event.exception ?? ""),
          traceback: typeof event.traceback === "string" ? event.traceback : null,
          event,
        });
      },
      "*": (event) => void state.event(event),
    },
  });
  await receiver.start();
  return { state, close: () => receiver.close() };
}

/**
 * The alert line printed by the command.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAlert } from "./alert_on_failure.ts";
 * const line = formatAlert({ uuid: "a1", name: "tasks.fail", worker: "w1@h", exception: "ValueError('x')", traceback: null, event: { type: "task-failed" } });
 * assert.equal(line, "ALERT tasks.fail[a1] failed on w1@h: ValueError('x')");
 * ```
 */
export function formatAlert(alert: FailureAlert): string {
  return `ALERT ${
    alert.name ?? "(unknown task)"
  }[${alert.uuid}] failed on ${alert.worker}: ${alert.exception}`;
}

if (import.meta.main) {
  const url = Deno.args[0] ?? "redis://127.0.0.1:6379/0";
  const broker = await createBroker(url);
  await broker.connect();
  const watch = await watchFailures(broker, (alert) => console.error(formatAlert(alert)));
  console.log(`Watching ${broker.displayUrl} for task failures (Ctrl+C to stop)`);
  const stop = async () => {
    await watch.close();
    await broker.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
