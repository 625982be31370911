/**
 * Celery events: send them ({@linkcode EventDispatcher}, {@linkcode WorkerEvents}), receive
 * them ({@linkcode EventReceiver}) and follow the cluster ({@linkcode State}). Wire-compatible
 * with Celery 5.2 (`celery events`, flower) in both directions.
 *
 * @example Watch a worker's events on the memory broker
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * import { EventReceiver, State } from "./mod.ts";
 *
 * const app = createApp({ broker: "memory://events-mod-doc" });
 * app.task("tasks.add", (x: number, y: number) => x + y);
 * const state = new State();
 * const receiver = new EventReceiver(await app.broker(), { handlers: { "*": (e) => state.event(e) } });
 * await receiver.start();
 * const worker = new Worker(app, { name: "w1@doc", sendEvents: true, logLevel: "critical" });
 * await worker.start();
 * const result = await app.sendTask("tasks.add", [2, 3]);
 * await result.get({ timeout: 5 });
 * await worker.stop();
 * await receiver.close();
 * await app.close();
 * assert.equal(state.task(result.id)?.state, "SUCCESS");
 * assert.equal(state.task(result.id)?.result, "5");
 * ```
 *
 * @module
 */
export * from "./event.ts";
export * from "./dispatcher.ts";
export * from "./worker_events.ts";
export * from "./receiver.ts";
export * from "./state.ts";
export * from "./format.ts";
