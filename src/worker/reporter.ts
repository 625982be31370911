/**
 * Reports what happened to a request: stores the result, settles the message, logs the line.
 *
 * Order matters for at-least-once delivery: the result is stored *before* the message is
 * acked, so an ack always means the outcome is persisted. When the backend is down the
 * message is requeued (it runs again later) instead of being acked without a result. When
 * the broker can apply the store and the ack in one atomic step (`Delivery.ackWith`: Redis
 * broker and backend on one server) and nothing else must happen in between, they go
 * together, in one round trip.
 *
 * @module
 */

import type { ResultBackend, ResultWrite } from "../backends/backend.ts";
import type { Delivery } from "../brokers/broker.ts";
import { childrenOf } from "../canvas/current.ts";
import { isInvalidWorkflow, type Workflow } from "../canvas/worker_side.ts";
import type { Logger } from "../log.ts";
import {
  formatTraceback,
  type SerializedException,
  serializeException,
} from "../protocol/exception.ts";
import { pyRepr, REPR_MAX_LENGTH } from "../protocol/repr.ts";
import { buildResultMeta, revokedException } from "../protocol/result.ts";
import type { TaskMessage } from "../protocol/task.ts";

/** How a message is settled once its record is decided. */
export interface SettleOptions {
  /** Ack (or requeue) the message; `false` when it was acked early. */
  ack: boolean;
  /**
   * Called once the message no longer needs its place in the worker's prefetch window: its
   * ack is issued to a broker that applies it before any later fetch (`acksBeforeFetch`).
   * The returned promise still waits for the ack's confirmation.
   */
  release?: () => void;
}

/** Options of {@linkcode Reporter}. */
export interface ReporterOptions {
  /** The broker's `acksBeforeFetch`: call `release` when an ack is issued. @default false */
  acksBeforeFetch?: boolean;
}

/** Result record fields shared by every state of one message. */
function links(message: TaskMessage | undefined) {
  return { groupId: message?.group ?? null, parentId: message?.parentId ?? null };
}

function reprError(error: unknown): string {
  const exc = serializeException(error);
  return `${exc.exc_type}(${exc.exc_message.map(pyRepr).join(", ")})`;
}

/**
 * Why `value` cannot be stored as JSON, or `undefined` when it can. `JSON.stringify` would
 * silently drop functions and symbols (and write a Map or Set as `{}`), and throws on a
 * cycle; Celery's JSON encoder refuses all of these, so the task fails with EncodeError.
 */
function unencodable(value: unknown): string | undefined {
  // Most tasks return a primitive: nothing to walk.
  const type = typeof value;
  if (value === null || (type !== "object" && type !== "function" && type !== "symbol")) {
    return undefined;
  }
  try {
    JSON.stringify(value, function (key, v) {
      const where = key ? ` (at key "${key}")` : "";
      if (typeof v === "function" || typeof v === "symbol") {
        throw new TypeError(`a ${typeof v} is not JSON serializable${where}`);
      }
      if (v instanceof Map || v instanceof Set) {
        throw new TypeError(`a ${v.constructor.name} is not JSON serializable${where}`);
      }
      return typeof v === "bigint" ? 0 : v;
    });
    return undefined;
  } catch (err) {
    return (err as Error)?.message ?? String(err);
  }
}

/** kombu's EncodeError for a return value that cannot be serialized. */
function encodeError(taskId: string, why: string): Error {
  return Object.assign(
    new Error(`Cannot serialize the result of task "${taskId}": ${why}`),
    { excType: "EncodeError", excModule: "kombu.exceptions" },
  );
}

/**
 * `repr()` for a log line, cut to Celery's 1024 characters; never throws (a log line must
 * not keep a message from being settled).
 */
function safeRepr(value: unknown): string {
  let text: string;
  try {
    text = pyRepr(value);
  } catch {
    text = "<unrepresentable>";
  }
  return text.length > REPR_MAX_LENGTH ? text.slice(0, REPR_MAX_LENGTH - 3) + "..." : text;
}

/**
 * Stores results and settles deliveries. With a {@linkcode Workflow}, a success first sends
 * the task's callbacks and next chain step, and every final state is followed (after the
 * store, before the ack) by chord accounting and, on failure, errbacks.
 */
export class Reporter {
  #backend: ResultBackend | null;
  #log: Logger;
  #workflow?: Workflow;
  #acksBeforeFetch: boolean;
  /** False once a delivery refused the backend's writes: the broker is on another server. */
  #carries = true;

  /** @param backend `null` when results are off. */
  constructor(
    backend: ResultBackend | null,
    log: Logger,
    workflow?: Workflow,
    options: ReporterOptions = {},
  ) {
    this.#backend = backend;
    this.#log = log;
    this.#workflow = workflow;
    this.#acksBeforeFetch = options.acksBeforeFetch ?? false;
  }

  /** The after-store part of the workflow; false (logged) when it failed. */
  async #finish(
    message: TaskMessage,
    state: string,
    result: unknown,
    traceback: string | null = null,
  ): Promise<boolean> {
    if (!this.#workflow) return true;
    try {
      await this.#workflow.finished(message, state, result, traceback);
      return true;
    } catch (err) {
      this.#log.error(
        `Cannot complete the workflow of task ${message.displayName}[${message.id}] (${state}): ${
          (err as Error)?.message ?? err
        }; the message goes back to its queue`,
      );
      return false;
    }
  }

  /** Stores a record; returns false when the backend failed (already logged). */
  async #store(
    taskId: string,
    status: string,
    result: unknown,
    message: TaskMessage | undefined,
    traceback: string | null = null,
  ): Promise<boolean> {
    if (!this.#backend) return true;
    const meta = this.#meta(taskId, status, result, message, traceback);
    try {
      // The request routes the result on rpc:// (reply_to, correlation_id).
      await this.#backend.store(meta, {
        replyTo: message?.replyTo,
        correlationId: message?.correlationId,
      });
      return true;
    } catch (err) {
      if (
        status === "SUCCESS" &&
        (err instanceof TypeError || (err instanceof DOMException && err.name === "DataCloneError"))
      ) {
        // The backend could not serialize the return value.
        return await this.#storeEncodeError(taskId, message, (err as Error).message);
      }
      this.#log.error(
        `Cannot store result of task ${taskId} (${status}): ${(err as Error)?.message ?? err}`,
      );
      return false;
    }
  }

  #meta(
    taskId: string,
    status: string,
    result: unknown,
    message: TaskMessage | undefined,
    traceback: string | null,
  ) {
    const children = message ? childrenOf(message) : [];
    return buildResultMeta(
      { taskId, status, result, traceback, children, ...links(message) },
      new Date(),
    );
  }

  /**
   * Stores the record (unless `store` is false), runs the workflow's after-store part (unless
   * `finish` is false), then acks, or requeues when either failed. With nothing to do in
   * between and a delivery that can carry the backend's write, store and ack go as one atomic
   * step. Returns whether the record was stored.
   */
  async #storeThenSettle(
    message: TaskMessage,
    delivery: Delivery,
    record: {
      status: string;
      result: unknown;
      traceback?: string | null;
      store: boolean;
      finish?: boolean;
    },
    options: SettleOptions,
  ): Promise<boolean> {
    const { status, result, traceback = null, finish = true } = record;
    const carried = record.store && options.ack &&
        !(finish && this.#workflow?.hasWorkAfterStore(message, status))
      ? this.#carry(message, delivery, status, result, traceback)
      : null;
    if (carried) {
      if (this.#acksBeforeFetch) options.release?.();
      try {
        await carried;
        return true;
      } catch (err) {
        this.#log.error(
          `Cannot store result of task ${message.id} (${status}): ${
            (err as Error)?.message ?? err
          }; the message goes back to its queue`,
        );
        return false;
      }
    }
    const stored = (!record.store ||
      await this.#store(message.id, status, result, message, traceback)) &&
      (!finish || await this.#finish(message, status, result, traceback));
    await this.#settle(delivery, stored, options);
    return stored;
  }

  /**
   * The store and the ack as one step (`Delivery.ackWith`), or `null` when the backend has
   * no write for this delivery's broker or the record does not encode (then `#store`
   * reports it).
   */
  #carry(
    message: TaskMessage,
    delivery: Delivery,
    status: string,
    result: unknown,
    traceback: string | null,
  ): Promise<void> | null {
    const backend = this.#backend;
    if (!this.#carries || !backend?.resultWrite || !delivery.ackWith) return null;
    let write: ResultWrite;
    try {
      write = backend.resultWrite(this.#meta(message.id, status, result, message, traceback));
    } catch {
      return null;
    }
    const carried = delivery.ackWith(write);
    // One worker, one broker: a refusal holds for every later delivery too.
    if (!carried) this.#carries = false;
    return carried;
  }

  /** The backend could not serialize the return value: store kombu's EncodeError. */
  #storeEncodeError(
    taskId: string,
    message: TaskMessage | undefined,
    why: string,
  ): Promise<boolean> {
    const error = encodeError(taskId, why);
    this.#log.error(`Task ${message?.displayName ?? ""}[${taskId}] ${error.message}`);
    return this.#store(
      taskId,
      "FAILURE",
      serializeException(error),
      message,
      formatTraceback(error),
    );
  }

  /**
   * A task returned: store SUCCESS (unless ignored), then ack.
   *
   * @returns false when the backend failed to store the result (the message was
   *   requeued instead of acked).
   */
  async succeeded(
    message: TaskMessage,
    delivery: Delivery,
    value: unknown,
    runtimeMs: number,
    options: SettleOptions & { ignoreResult: boolean },
  ): Promise<boolean> {
    if (this.#backend && !options.ignoreResult) {
      const why = unencodable(value);
      if (why !== undefined) {
        // As in Celery: the task fails with EncodeError (stored, logged, acked).
        return await this.failed(message, delivery, encodeError(message.id, why), options);
      }
    }
    if (this.#workflow?.hasWorkOnSuccess(message)) {
      try {
        // Callbacks and the next chain step go first, so the stored record lists them.
        await this.#workflow.succeeded(message, value);
      } catch (err) {
        if (isInvalidWorkflow(err)) return await this.failed(message, delivery, err, options);
        this.#log.error(
          `Cannot send the callbacks or next step of task ${message.displayName}[${message.id}]: ${
            (err as Error)?.message ?? err
          }; the message goes back to its queue`,
        );
        await this.#settle(delivery, false, options);
        return false;
      }
    }
    if (this.#log.enabled("info")) {
      this.#log.info(
        `Task ${message.displayName}[${message.id}] succeeded in ${
          (runtimeMs / 1000).toFixed(6)
        }s: ${safeRepr(value)}`,
      );
    }
    return await this.#storeThenSettle(
      message,
      delivery,
      { status: "SUCCESS", result: value, store: !options.ignoreResult },
      options,
    );
  }

  /** A task threw: store FAILURE, then ack. Returns false when the backend failed. */
  async failed(
    message: TaskMessage,
    delivery: Delivery,
    error: unknown,
    options: SettleOptions & { ignoreResult: boolean },
  ): Promise<boolean> {
    const traceback = formatTraceback(error);
    const exc = serializeException(error);
    this.#log.error(
      `Task ${message.displayName}[${message.id}] raised unexpected: ${reprError(error)}${
        traceback ? "\n" + traceback : ""
      }`,
    );
    return await this.#storeThenSettle(
      message,
      delivery,
      { status: "FAILURE", result: exc, traceback, store: !options.ignoreResult },
      options,
    );
  }

  /** An expired task: store REVOKED ("expired"), then ack, as Celery does. */
  async expired(message: TaskMessage, delivery: Delivery): Promise<void> {
    await this.revoked(message, delivery, "expired", true);
  }

  /**
   * A revoked (or expired, or terminated) task: store REVOKED with Celery's
   * `TaskRevokedError`, then ack (unless it was acked early already).
   */
  async revoked(
    message: TaskMessage,
    delivery: Delivery,
    reason: "revoked" | "expired" | "terminated",
    ack: boolean,
  ): Promise<void> {
    this.#log.info(`Discarding revoked task: ${message.displayName}[${message.id}] (${reason})`);
    const exc = revokedException(reason);
    await this.#storeThenSettle(
      message,
      delivery,
      { status: "REVOKED", result: exc, store: true },
      { ack },
    );
  }

  /**
   * A task asked to be retried and its new message is already published: store RETRY with
   * the error that caused it, then ack the original, as Celery does.
   */
  async retried(
    message: TaskMessage,
    delivery: Delivery,
    error: unknown,
    countdown: number,
    options: SettleOptions,
  ): Promise<boolean> {
    this.#log.info(
      `Task ${message.displayName}[${message.id}] retry: Retry in ${countdown}s: ${
        reprError(error)
      }`,
    );
    return await this.#storeThenSettle(message, delivery, {
      status: "RETRY",
      result: serializeException(error),
      traceback: formatTraceback(error),
      store: true,
      finish: false, // not a final state: no chord accounting, no errbacks
    }, options);
  }

  /**
   * A message that cannot run (undecodable, invalid, unknown task): store FAILURE when
   * there is a task id, then move the raw message to the dead-letter store.
   */
  async rejected(
    delivery: Delivery,
    reason: string,
    exc: SerializedException | null,
    taskId: string | undefined,
    message: TaskMessage | undefined,
  ): Promise<void> {
    this.#log.error(`${reason}; the message is kept in the dead-letter store`);
    if (taskId && exc) await this.#store(taskId, "FAILURE", exc, message);
    try {
      await delivery.deadLetter(reason);
    } catch (err) {
      this.#log.error(
        `Cannot dead-letter message: ${
          (err as Error)?.message ?? err
        }; it stays unacked and comes back later`,
      );
    }
  }

  async #settle(delivery: Delivery, stored: boolean, options: SettleOptions): Promise<void> {
    try {
      if (!options.ack) return;
      if (stored) {
        const acked = delivery.ack();
        if (this.#acksBeforeFetch) options.release?.();
        await acked;
      } else await delivery.requeue("back");
    } catch (err) {
      this.#log.error(
        `Cannot settle message: ${
          (err as Error)?.message ?? err
        }; it comes back after the visibility timeout`,
      );
    }
  }
}
