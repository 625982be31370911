/**
 * Workflows (Celery's canvas): signatures, chains, groups, chords, and what a worker does
 * with a finished task's callbacks, chain and chord. See `docs/canvas.md`.
 *
 * @example A chain, a group and a chord
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * import { chain, chord, group } from "./mod.ts";
 * const app = createApp({ broker: "memory://canvas-mod-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const xsum = app.task("tasks.xsum", (v: number[]) => v.reduce((a, b) => a + b, 0));
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * assert.equal(await (await chain(add.s(1, 2), add.s(3)).applyAsync()).get({ timeout: 5 }), 6);
 * assert.deepEqual(await (await group(add.s(1, 1), add.s(2, 2)).applyAsync()).get({ timeout: 5 }), [2, 4]);
 * assert.equal(await (await chord([add.s(1, 1), add.s(2, 2)], xsum.s()).applyAsync()).get({ timeout: 5 }), 6);
 * await worker.stop();
 * await app.close();
 * ```
 *
 * @module
 */

export {
  type AnySignature,
  Chain,
  chain,
  Chord,
  chord,
  type FreezeOptions,
  Group,
  group,
  type ResultHandle,
  Signature,
  signature,
  signatureFromDict,
  type SignatureInit,
} from "./signature.ts";
export { sendOptionsFromWire, type SignatureOptions, toWireOptions } from "./options.ts";
export { childrenOf, currentTaskScope, runInTaskScope, type TaskScope } from "./current.ts";
export { isInvalidWorkflow, Workflow } from "./worker_side.ts";
