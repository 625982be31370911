/**
 * The named errors of celeriac. Callers catch these; bad arguments throw the matching
 * built-in (`TypeError`, `RangeError`, `SyntaxError`) instead.
 *
 * ```
 * CeleriacError
 * ├── DecodeError              a message that cannot be decoded (carries the raw bytes)
 * ├── InvalidTaskError         a decodable message that breaks protocol v2 rules
 * ├── TaskNotRegisteredError   no task of that name on this worker
 * ├── BrokerConnectionError    a broker cannot be reached
 * ├── ResultTimeoutError       AsyncResult.get() waited longer than its timeout
 * ├── TaskFailedError          AsyncResult.get() of a task that failed or was revoked
 * ├── ConfigError              a bad URL or option found at start-up
 * ├── PermissionMissingError   Deno refused a permission the worker needs
 * └── ChordError               a chord's header failed, or its body could not be sent
 * ```
 *
 * @module
 */

/**
 * Root of every error celeriac raises on purpose.
 *
 * @example Catch any celeriac error
 * ```ts
 * import assert from "node:assert/strict";
 * import { CeleriacError, DecodeError } from "./errors.ts";
 * const err = new DecodeError("Cannot decode message body", new Uint8Array([1]));
 * assert.ok(err instanceof CeleriacError);
 * ```
 */
export class CeleriacError extends Error {
  /** Builds the error; `cause` is kept as the standard `Error.cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CeleriacError";
  }
}

/**
 * A message that cannot be decoded. It carries the raw bytes so that the worker can keep
 * the message in its dead-letter store instead of dropping it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecodeError } from "./errors.ts";
 * const err = new DecodeError("Cannot parse JSON", "not json");
 * assert.equal(err.raw, "not json");
 * ```
 */
export class DecodeError extends CeleriacError {
  /** The undecodable input, as received. */
  readonly raw: Uint8Array | string;
  /** Builds the error around the raw input. */
  constructor(message: string, raw: Uint8Array | string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DecodeError";
    this.raw = raw;
  }
}

/**
 * A message that decodes but breaks the rules of Celery protocol v2 (missing `id`,
 * body of the wrong shape, unparsable `eta`). Carries the task id when one was found.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidTaskError } from "./errors.ts";
 * const err = new InvalidTaskError("Cannot read header 'eta'", "raw", "abc");
 * assert.equal(err.taskId, "abc");
 * ```
 */
export class InvalidTaskError extends DecodeError {
  /** The task id, when the message had one. */
  readonly taskId: string | undefined;
  /** Builds the error around the raw message. */
  constructor(
    message: string,
    raw: Uint8Array | string,
    taskId?: string,
    options?: ErrorOptions,
  ) {
    super(message, raw, options);
    this.name = "InvalidTaskError";
    this.taskId = taskId;
  }
}

/**
 * A task name that this app or worker has not registered. Its result is stored with
 * `exc_type: "NotRegistered"`, as a Python worker does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskNotRegisteredError } from "./errors.ts";
 * assert.equal(new TaskNotRegisteredError("tasks.nope").taskName, "tasks.nope");
 * ```
 */
export class TaskNotRegisteredError extends CeleriacError {
  /** The unknown task name. */
  readonly taskName: string;
  /** Builds the error for one task name. */
  constructor(taskName: string) {
    super(`Cannot find task "${taskName}": it is not registered on this worker`);
    this.name = "TaskNotRegisteredError";
    this.taskName = taskName;
  }
}

/**
 * A broker or result backend that cannot be reached.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BrokerConnectionError } from "./errors.ts";
 * assert.match(new BrokerConnectionError("Cannot connect").message, /connect/);
 * ```
 */
export class BrokerConnectionError extends CeleriacError {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BrokerConnectionError";
  }
}

/**
 * `AsyncResult.get()` gave up waiting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ResultTimeoutError } from "./errors.ts";
 * assert.equal(new ResultTimeoutError("id", 10).timeoutMs, 10);
 * ```
 */
export class ResultTimeoutError extends CeleriacError {
  /** The task waited for. */
  readonly taskId: string;
  /** How long it waited. */
  readonly timeoutMs: number;
  /** Builds the error. */
  constructor(taskId: string, timeoutMs: number) {
    super(`Cannot get result of task "${taskId}": no result within ${timeoutMs} ms`);
    this.name = "ResultTimeoutError";
    this.taskId = taskId;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The remote task failed (or was revoked). `excType`, `excModule` and `excMessage` are the
 * exception as the worker serialized it (Celery's format), so Python exceptions come through
 * with their Python names.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskFailedError } from "./errors.ts";
 * const err = new TaskFailedError("id", "FAILURE", {
 *   excType: "ValueError", excModule: "builtins", excMessage: ["bad"], traceback: null,
 * });
 * assert.equal(err.message, "ValueError: bad");
 * ```
 */
export class TaskFailedError extends CeleriacError {
  /** Id of the failed task. */
  readonly taskId: string;
  /** The final state: FAILURE or REVOKED. */
  readonly state: string;
  /** Exception class name (Python qualname or JS error name). */
  readonly excType: string;
  /** Exception module (`builtins` for Python built-ins and JS errors). */
  readonly excModule: string;
  /** Exception arguments. */
  readonly excMessage: unknown[];
  /** The remote traceback text, if any. */
  readonly remoteTraceback: string | null;
  /** Builds the error from a serialized exception. */
  constructor(
    taskId: string,
    state: string,
    exc: { excType: string; excModule: string; excMessage: unknown[]; traceback: string | null },
  ) {
    const text = exc.excMessage.map((m) => typeof m === "string" ? m : JSON.stringify(m)).join(
      ", ",
    );
    super(text ? `${exc.excType}: ${text}` : exc.excType);
    this.name = "TaskFailedError";
    this.taskId = taskId;
    this.state = state;
    this.excType = exc.excType;
    this.excModule = exc.excModule;
    this.excMessage = exc.excMessage;
    this.remoteTraceback = exc.traceback;
  }
}

/**
 * A configuration problem found at start-up: bad broker URL, bad option value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "./errors.ts";
 * assert.equal(new ConfigError("Cannot use broker URL \"x://\"").name, "ConfigError");
 * ```
 */
export class ConfigError extends CeleriacError {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/**
 * Deno refused a permission that the process needs; `flag` is the flag to add.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PermissionMissingError } from "./errors.ts";
 * const err = new PermissionMissingError("--allow-net=127.0.0.1:6379", "connect to the broker");
 * assert.match(err.message, /--allow-net=127.0.0.1:6379/);
 * ```
 */
export class PermissionMissingError extends CeleriacError {
  /** The command-line flag that grants the permission. */
  readonly flag: string;
  /** Builds the error. */
  constructor(flag: string, what: string, options?: ErrorOptions) {
    super(`Cannot ${what}: permission denied; run again with ${flag}`, options);
    this.name = "PermissionMissingError";
    this.flag = flag;
  }
}

/**
 * Thrown by a task (or by `ctx.retry()`) to be run again later. The worker sends a new
 * message with the same id and `retries + 1`, stores state RETRY and acks the original.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Retry } from "./errors.ts";
 * const retry = new Retry({ countdown: 5, exc: new Error("flaky") });
 * assert.equal(retry.countdown, 5);
 * assert.match(retry.message, /Retry in 5s: flaky/);
 * ```
 */
export class Retry extends CeleriacError {
  /** Seconds to wait; default: the task's backoff or `defaultRetryDelay`. */
  readonly countdown?: number;
  /** Absolute time to run again (wins over countdown). */
  readonly eta?: Date;
  /** The error that caused the retry (stored as the RETRY result). */
  readonly exc?: unknown;
  /** Overrides the task's `maxRetries` for this retry (`null` = no limit). */
  readonly maxRetries?: number | null;

  /** Builds the signal. */
  constructor(
    options: { countdown?: number; eta?: Date; exc?: unknown; maxRetries?: number | null } = {},
  ) {
    const when = options.eta
      ? `at ${options.eta.toISOString()}`
      : options.countdown !== undefined
      ? `in ${options.countdown}s`
      : "later";
    const why = options.exc instanceof Error
      ? options.exc.message
      : options.exc === undefined
      ? ""
      : String(options.exc);
    super(`Retry ${when}${why ? `: ${why}` : ""}`);
    this.name = "Retry";
    this.countdown = options.countdown;
    this.eta = options.eta;
    this.exc = options.exc;
    this.maxRetries = options.maxRetries;
  }
}

/**
 * A task ran out of retries; stored as Celery's `MaxRetriesExceededError` when the retry had
 * no error of its own.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MaxRetriesExceededError } from "./errors.ts";
 * assert.equal(new MaxRetriesExceededError("tasks.x", "id", 3).excModule, "celery.exceptions");
 * ```
 */
export class MaxRetriesExceededError extends CeleriacError {
  /** Python identity of the error. */
  readonly excType = "MaxRetriesExceededError";
  /** Python module of the error. */
  readonly excModule = "celery.exceptions";
  /** Builds the error. */
  constructor(taskName: string, taskId: string, maxRetries: number) {
    super(
      `Cannot retry ${taskName}[${taskId}]: it already retried ${maxRetries} time(s) (maxRetries ${maxRetries})`,
    );
    this.name = "MaxRetriesExceededError";
  }
}

/**
 * The soft time limit passed: the task's `ctx.signal` is aborted with this reason.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SoftTimeLimitExceeded } from "./errors.ts";
 * assert.equal(new SoftTimeLimitExceeded(2).excType, "SoftTimeLimitExceeded");
 * ```
 */
export class SoftTimeLimitExceeded extends CeleriacError {
  /** Python identity. */
  readonly excType = "SoftTimeLimitExceeded";
  /** Python module. */
  readonly excModule = "billiard.exceptions";
  /** Builds the error. */
  constructor(seconds: number) {
    super(`SoftTimeLimitExceeded(${seconds})`);
    this.name = "SoftTimeLimitExceeded";
  }
}

/**
 * The hard time limit passed: the task is failed (and abandoned, or its Web Worker
 * terminated).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TimeLimitExceeded } from "./errors.ts";
 * assert.equal(new TimeLimitExceeded(5).excType, "TimeLimitExceeded");
 * ```
 */
export class TimeLimitExceeded extends CeleriacError {
  /** Python identity. */
  readonly excType = "TimeLimitExceeded";
  /** Python module. */
  readonly excModule = "billiard.exceptions";
  /** Builds the error. */
  constructor(seconds: number) {
    super(`TimeLimitExceeded(${seconds})`);
    this.name = "TimeLimitExceeded";
  }
}

/**
 * A chord could not run its body: a header member failed or was revoked, the header's results
 * could not be joined, or the body could not be sent. The body's result is stored as FAILURE
 * with this error (Celery's `celery.exceptions.ChordError`, so Python clients rebuild the same
 * class) and the body's errbacks are called.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChordError } from "./errors.ts";
 * const err = new ChordError("Dependency 1f0c raised ValueError('boom')");
 * assert.equal(err.excModule, "celery.exceptions");
 * assert.equal(err.message, "Dependency 1f0c raised ValueError('boom')");
 * ```
 */
export class ChordError extends CeleriacError {
  /** Python identity. */
  readonly excType = "ChordError";
  /** Python module. */
  readonly excModule = "celery.exceptions";
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ChordError";
  }
}
