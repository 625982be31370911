/**
 * What a worker does with a task's workflow links once it ran (Celery 5.2 `app/trace.py`,
 * `backends/base.py` `mark_as_failure`, `backends/redis.py` `on_chord_part_return`):
 *
 * - **success**, before the result is stored (so `children` lists them): each callback
 *   (`embed.callbacks`) is applied with the return value prepended (unless immutable); with
 *   several, the plain ones are sent as one group and group callbacks each on their own.
 *   Then the next chain step (the last element of `embed.chain`) is sent with the return
 *   value prepended and `chain` = the rest, `parent_id` = this task, the same `root_id`, and
 *   this message's `reply_to` when the step has none.
 * - **any final state**, after it is stored: a chord header member (`embed.chord` and a
 *   `group` header) reports to the backend's chord accounting; the member that completes the
 *   chord sends the body with `[[r0, r1, …]]` (header order), or fails it with `ChordError`
 *   when a member failed (body stored FAILURE, its errbacks sent), then deletes the chord's
 *   keys.
 * - **failure**: every remaining chain step with a frozen id is stored FAILURE with the same
 *   error (so waiting on the chain's last result fails instead of hanging), reporting to its
 *   chord if it is in one; then the errbacks (`embed.errbacks`) are sent as one group with
 *   this task's id as their argument.
 *
 * Deliberate difference: a Python worker calls an errback *inline* when its function takes
 * `(request, exc, traceback)`; celeriac cannot call Python functions, so every errback is sent
 * as a task with the failed task's id (what Python does for all other errbacks). Such an
 * errback run by a Python worker then gets one argument instead of three.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { ChordJoin, ChordPart, ResultBackend } from "../backends/backend.ts";
import { ChordError } from "../errors.ts";
import { resultFromTuple } from "../group_result.ts";
import type { Logger } from "../log.ts";
import { formatTraceback, readException, serializeException } from "../protocol/exception.ts";
import { pyRepr } from "../protocol/repr.ts";
import { buildResultMeta, EXCEPTION_STATES } from "../protocol/result.ts";
import type { SignatureDict, TaskMessage } from "../protocol/task.ts";
import { runInTaskScope } from "./current.ts";
import { type AnySignature, Chain, Chord, Group, signatureFromDict } from "./signature.ts";

/** Errors that mean a callback or chain step is not a valid signature (not a send failure). */
const invalid = new WeakSet<object>();

/**
 * True for the error {@linkcode Workflow.succeeded} throws when a callback or chain step is
 * not a valid signature: the task should fail with it rather than be retried.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isInvalidWorkflow } from "./worker_side.ts";
 * assert.equal(isInvalidWorkflow(new TypeError("x")), false);
 * ```
 */
export function isInvalidWorkflow(error: unknown): boolean {
  return typeof error === "object" && error !== null && invalid.has(error);
}

/** States that fail a chord (Celery's `PROPAGATE_STATES`). */
const PROPAGATE_STATES: ReadonlySet<string> = new Set(["FAILURE", "REVOKED"]);

/** Seconds to join a saved chord header (Celery's `result_chord_join_timeout`). */
const CHORD_JOIN_TIMEOUT = 3;

/** `repr()` of a serialized exception, as Python writes it: `ValueError('boom')`. */
function reprException(value: unknown): string {
  const exc = readException(value);
  if (!exc) return pyRepr(value);
  return `${exc.exc_type}(${exc.exc_message.map((m) => pyRepr(m)).join(", ")})`;
}

function reprError(error: unknown): string {
  return reprException(serializeException(error));
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

/** Task ids a signature's result lives under (a chain: every frozen step). */
function resultIds(sig: AnySignature): string[] {
  if (sig instanceof Chain || sig instanceof Group) return sig.tasks.flatMap(resultIds);
  if (sig instanceof Chord) return resultIds(sig.body);
  return sig.id ? [sig.id] : [];
}

/** The chord a message is a header member of (its group and the chord body), or `null`. */
function chordMembership(message: TaskMessage): { groupId: string; body: SignatureDict } | null {
  const body = message.embed.chord;
  return body && message.group ? { groupId: message.group, body } : null;
}

/** Whether a message in this state has chain steps to fail or errbacks to send. */
function failsLinks(message: TaskMessage, state: string): boolean {
  const { chain, errbacks } = message.embed;
  return state === "FAILURE" && (Boolean(chain?.length) || Boolean(errbacks?.length));
}

/**
 * Applies the workflow links of finished tasks. The worker's reporter calls
 * {@linkcode Workflow.succeeded} before storing SUCCESS and {@linkcode Workflow.finished}
 * after storing any final state (and before acking).
 *
 * @example Callbacks and chain steps are sent by the worker that ran the task
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://workflow-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * const followUp = add.s(10);
 * const first = add.s(1, 2);
 * first.link(followUp);
 * const result = await first.applyAsync();
 * assert.equal(await result.get({ timeout: 5 }), 3);
 * const [child] = await result.children();
 * assert.equal(await child.get({ timeout: 5 }), 13);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Workflow {
  #app: App;
  #backend: ResultBackend | null;
  #log: Logger;
  #warnedNoChords = false;

  /**
   * @param app Sends the callbacks, chain steps and chord bodies.
   * @param backend Chord accounting and chain failures (`null`: results are off).
   */
  constructor(app: App, backend: ResultBackend | null, log: Logger) {
    this.#app = app;
    this.#backend = backend;
    this.#log = log;
  }

  /**
   * A task returned `value`: sends its callbacks, then its next chain step, as the task
   * (they become its children). Call before storing its SUCCESS.
   *
   * @throws {TypeError} When a callback or chain step is not a valid signature (the task
   *   should fail; see {@linkcode isInvalidWorkflow}).
   * @throws {Error} When the broker refuses a message (the caller requeues the task).
   */
  async succeeded(message: TaskMessage, value: unknown): Promise<void> {
    if (!this.hasWorkOnSuccess(message)) return;
    const { callbacks, chain } = message.embed;
    const app = this.#app;
    const links = { parent_id: message.id, root_id: message.rootId || message.id };
    // Parse everything first: a bad signature fails the task before anything is sent.
    let sigs: AnySignature[];
    let next: AnySignature | null;
    const rest = [...(chain ?? [])];
    try {
      sigs = (callbacks ?? []).map((d) => signatureFromDict(app, d));
      next = rest.length ? signatureFromDict(app, rest.pop()) : null;
    } catch (err) {
      if (typeof err === "object" && err !== null) invalid.add(err);
      throw err;
    }
    await runInTaskScope(message, async () => {
      if (sigs.length === 1) {
        await sigs[0]!.applyAsync([value], {}, links);
      } else if (sigs.length > 1) {
        for (const g of sigs.filter((s) => s instanceof Group)) {
          await g.applyAsync([value], {}, links);
        }
        const plain = sigs.filter((s) => !(s instanceof Group));
        if (plain.length) await new Group(app, plain).applyAsync([value], {}, links);
      }
      if (next) {
        const options: Record<string, unknown> = { ...links, chain: rest };
        if (!str(next.options.reply_to) && message.replyTo) options.reply_to = message.replyTo;
        await next.applyAsync([value], {}, options);
      }
    });
  }

  /**
   * Whether {@linkcode Workflow.succeeded} has work for this message: callbacks or a next
   * chain step to send. When it has none, the reporter skips the call.
   */
  hasWorkOnSuccess(message: TaskMessage): boolean {
    const { callbacks, chain } = message.embed;
    return (callbacks?.length ?? 0) > 0 || (chain?.length ?? 0) > 0;
  }

  /**
   * Whether {@linkcode Workflow.finished} has work for this message in this state: chord
   * accounting of a chord header member, or, on FAILURE, remaining chain steps or errbacks.
   * When it has none, the reporter may store the result and ack in one step.
   */
  hasWorkAfterStore(message: TaskMessage, state: string): boolean {
    return chordMembership(message) !== null || failsLinks(message, state);
  }

  /**
   * A task's final state is stored: chord accounting; on FAILURE, fails the remaining chain
   * steps and sends the errbacks.
   *
   * @param result The return value, or the serialized exception.
   * @throws {Error} When the backend or broker fails (the caller requeues the task; chord
   *   accounting of the same outcome counts once).
   */
  async finished(
    message: TaskMessage,
    state: string,
    result: unknown,
    traceback: string | null = null,
  ): Promise<void> {
    const member = chordMembership(message);
    if (member) {
      await this.#chordPart(message, {
        groupId: member.groupId,
        taskId: message.id,
        groupIndex: message.groupIndex,
        state,
        result,
      }, member.body);
    }
    if (!failsLinks(message, state)) return;
    const { chain, errbacks } = message.embed;
    for (const step of chain ?? []) await this.#failStep(message, step, result, traceback);
    if (errbacks?.length) {
      let sigs: AnySignature[];
      try {
        sigs = errbacks.map((d) => signatureFromDict(this.#app, d));
      } catch (err) {
        this.#log.error(`Cannot send the errbacks of task ${message.id}: ${reprError(err)}`);
        return;
      }
      await runInTaskScope(message, () =>
        new Group(this.#app, sigs).applyAsync([message.id], {}, {
          parent_id: message.id,
          root_id: message.rootId || message.id,
        }));
    }
  }

  /** A chain step that will never run because an earlier one failed. */
  async #failStep(
    message: TaskMessage,
    step: SignatureDict,
    result: unknown,
    traceback: string | null,
  ): Promise<void> {
    const options =
      step && typeof step === "object" && step.options && typeof step.options === "object"
        ? step.options
        : {};
    const taskId = str(options.task_id);
    if (taskId && this.#backend) {
      await this.#backend.store(buildResultMeta({
        taskId,
        status: "FAILURE",
        result,
        traceback,
        groupId: str(options.group_id),
        parentId: str(options.parent_id),
      }, new Date()));
    }
    const chord = options.chord as SignatureDict | undefined;
    const groupId = str(options.group_id);
    if (taskId && chord && groupId) {
      const index = options.group_index;
      await this.#chordPart(message, {
        groupId,
        taskId,
        groupIndex: typeof index === "number" ? index : null,
        state: "FAILURE",
        result,
      }, chord);
    }
  }

  async #chordPart(message: TaskMessage, part: ChordPart, bodyDict: SignatureDict): Promise<void> {
    const backend = this.#backend;
    if (!backend?.chordPartReturn) {
      if (!this.#warnedNoChords) {
        this.#warnedNoChords = true;
        this.#log.warning(
          `Chord ${part.groupId}: the ${
            backend?.kind ?? "(no)"
          } result backend does not support chords; the chord body will not run`,
        );
      }
      return;
    }
    const join = await backend.chordPartReturn(part);
    if (!join) return;
    let body: AnySignature;
    try {
      body = signatureFromDict(this.#app, bodyDict);
    } catch (err) {
      this.#log.error(`Chord ${part.groupId}: cannot read its body: ${reprError(err)}`);
      await backend.deleteChord?.(part.groupId);
      return;
    }
    let values: unknown[];
    try {
      values = await this.#values(join);
    } catch (err) {
      const error = err instanceof ChordError
        ? err
        : new ChordError(`Join error: ${reprError(err)}`, { cause: err });
      this.#log.error(`Chord ${part.groupId} raised: ${reprError(error)}`);
      try {
        await this.#failBody(body, error);
      } finally {
        await backend.deleteChord?.(part.groupId);
      }
      return;
    }
    try {
      await runInTaskScope(message, () => body.applyAsync([values]));
    } catch (err) {
      this.#log.error(`Chord callback for ${part.groupId} raised: ${reprError(err)}`);
      await this.#failBody(body, new ChordError(`Callback error: ${reprError(err)}`));
    } finally {
      await backend.deleteChord?.(part.groupId);
    }
  }

  /** The header's results in order, or a `ChordError` naming the first failed member. */
  async #values(join: ChordJoin): Promise<unknown[]> {
    if (join.kind === "saved") {
      const header = resultFromTuple(join.tuple, this.#app);
      const values = await header.get({ timeout: CHORD_JOIN_TIMEOUT, propagate: true });
      return Array.isArray(values) ? values : [values];
    }
    return join.parts.map(({ taskId, state, result }) => {
      if (EXCEPTION_STATES.has(state) && PROPAGATE_STATES.has(state)) {
        throw new ChordError(`Dependency ${taskId} raised ${reprException(result)}`);
      }
      return result;
    });
  }

  /**
   * Celery's `chord_error_from_stack`: sends the body's errbacks with its id, then stores
   * the body FAILURE with the error (every frozen step, when the body is a chain).
   */
  async #failBody(body: AnySignature, error: ChordError): Promise<void> {
    const ids = resultIds(body);
    const bodyId = ids.at(-1);
    const errbacks = body.options.link_error;
    const list = Array.isArray(errbacks) ? errbacks : errbacks ? [errbacks] : [];
    if (list.length && bodyId) {
      const sigs = list.map((e) => signatureFromDict(this.#app, e));
      await new Group(this.#app, sigs).applyAsync([bodyId], {}, {
        parent_id: bodyId,
        root_id: bodyId,
      });
    }
    if (!this.#backend) return;
    const exc = serializeException(error);
    for (const taskId of ids) {
      await this.#backend.store(buildResultMeta({
        taskId,
        status: "FAILURE",
        result: exc,
        traceback: formatTraceback(error),
      }, new Date()));
    }
  }
}
