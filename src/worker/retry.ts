/**
 * Decides what a failed run turns into: a retry (when the task asked for one, or its error
 * is in `autoretryFor`) or a failure (no retry wanted, or retries exhausted).
 *
 * @module
 */

import { MaxRetriesExceededError, Retry } from "../errors.ts";
import type { TaskMessage } from "../protocol/task.ts";
import type { TaskOptions } from "../task.ts";
import { retryBackoffDelay } from "./backoff.ts";

/** The decision. */
export type RetryPlan =
  | { kind: "retry"; eta: Date; exc: unknown; countdown: number }
  | { kind: "fail"; error: unknown };

function autoRetries(options: TaskOptions, error: unknown): boolean {
  const rule = options.autoretryFor;
  if (!rule) return false;
  if (Array.isArray(rule)) return rule.some((cls) => error instanceof cls);
  return rule(error);
}

/**
 * Plans what to do with an error thrown by a run.
 *
 * @param random Random source for backoff jitter (tests inject one).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Retry } from "../errors.ts";
 * import { planRetry } from "./retry.ts";
 * const message = { id: "t", task: "tasks.x", retries: 0 } as never;
 * const plan = planRetry(new Retry({ countdown: 5 }), message, {}, new Date(0));
 * assert.equal(plan.kind, "retry");
 * assert.equal(plan.kind === "retry" && plan.eta.getTime(), 5000);
 * ```
 */
export function planRetry(
  error: unknown,
  message: TaskMessage,
  options: TaskOptions,
  now: Date,
  random: () => number = Math.random,
): RetryPlan {
  const explicit = error instanceof Retry;
  if (!explicit && !autoRetries(options, error)) return { kind: "fail", error };
  const retry = explicit ? error : new Retry({ exc: error });
  const maxRetries = retry.maxRetries !== undefined ? retry.maxRetries : options.maxRetries ?? 3;
  const exc = retry.exc ?? (explicit ? undefined : error);
  if (maxRetries !== null && message.retries >= maxRetries) {
    return {
      kind: "fail",
      error: exc ?? new MaxRetriesExceededError(message.task, message.id, maxRetries),
    };
  }
  let countdown: number;
  if (retry.eta) countdown = Math.max(0, (retry.eta.getTime() - now.getTime()) / 1000);
  else if (retry.countdown !== undefined) countdown = retry.countdown;
  else if (!explicit && options.retryBackoff) {
    const base = options.retryBackoff === true ? 1 : Number(options.retryBackoff);
    countdown = retryBackoffDelay(message.retries, {
      base,
      max: options.retryBackoffMax ?? 600,
      jitter: options.retryJitter ?? true,
      random,
    });
  } else countdown = options.defaultRetryDelay ?? 180;
  return {
    kind: "retry",
    eta: retry.eta ?? new Date(now.getTime() + countdown * 1000),
    exc: exc ?? retry,
    countdown,
  };
}
