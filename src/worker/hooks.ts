/**
 * Task lifecycle hooks of a worker: what events, remote control and metrics listen to.
 * A listener that throws never disturbs the task (the error is reported to `onError`).
 *
 * @module
 */

import type { TaskMessage } from "../protocol/task.ts";

/** Payload of each lifecycle hook. */
export interface TaskHookMap {
  /** A task message was accepted for running (now or at its ETA). */
  received: { message: TaskMessage; queue: string };
  /** The task function is about to run. */
  started: { message: TaskMessage };
  /** It returned. */
  succeeded: { message: TaskMessage; value: unknown; runtimeMs: number };
  /** It threw (and will not be retried). */
  failed: { message: TaskMessage; error: unknown; runtimeMs: number };
  /** It asked to be retried; a new message was sent. */
  retried: { message: TaskMessage; error: unknown };
  /** It was revoked or expired instead of run. */
  revoked: { message: TaskMessage; expired: boolean; terminated: boolean; signum: number | null };
  /** The message could not run and was dead-lettered (or requeued). */
  rejected: {
    taskId?: string;
    message?: TaskMessage;
    reason: string;
    requeue: boolean;
    /** Why: a `TaskNotRegisteredError`, an `InvalidTaskError`, a `DecodeError`, … */
    error?: unknown;
  };
}

/** A hook name. */
export type TaskHook = keyof TaskHookMap;

/**
 * A tiny typed emitter.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Hooks } from "./hooks.ts";
 * const hooks = new Hooks();
 * const seen: string[] = [];
 * const off = hooks.on("rejected", (e) => seen.push(e.reason));
 * hooks.emit("rejected", { reason: "bad", requeue: false });
 * off();
 * hooks.emit("rejected", { reason: "ignored", requeue: false });
 * assert.deepEqual(seen, ["bad"]);
 * ```
 */
export class Hooks {
  #listeners = new Map<TaskHook, Set<(payload: never) => void>>();
  /** Called when a listener throws. */
  onError: (error: unknown, hook: TaskHook) => void = () => {};

  /** Adds a listener; returns a function that removes it. */
  on<K extends TaskHook>(hook: K, listener: (payload: TaskHookMap[K]) => void): () => void {
    let set = this.#listeners.get(hook);
    if (!set) this.#listeners.set(hook, set = new Set());
    set.add(listener as (payload: never) => void);
    return () => set!.delete(listener as (payload: never) => void);
  }

  /** Whether anyone listens to a hook (so callers can skip building payloads). */
  has(hook: TaskHook): boolean {
    return (this.#listeners.get(hook)?.size ?? 0) > 0;
  }

  /** Calls every listener of a hook. */
  emit<K extends TaskHook>(hook: K, payload: TaskHookMap[K]): void {
    const set = this.#listeners.get(hook);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as (p: TaskHookMap[K]) => void)(payload);
      } catch (error) {
        this.onError(error, hook);
      }
    }
  }
}
