/**
 * celeriac: a Deno-native distributed task runtime that speaks Celery's wire protocol.
 *
 * @example Quick start: one process, in-memory broker
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "./mod.ts";
 *
 * const app = createApp({ broker: "memory://quickstart-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 *
 * const worker = new Worker(app, { concurrency: 10, logLevel: "critical" });
 * await worker.start();
 * const result = await add.delay(2, 3);
 * assert.equal(await result.get({ timeout: 5 }), 5);
 * await worker.stop();
 * await app.close();
 * ```
 *
 * @module
 */

export { App, type AppOptions, createApp, type LinkTarget, type SendOptions } from "./src/app.ts";
export { AsyncResult, type GetOptions } from "./src/async_result.ts";
export {
  GroupResult,
  resultFromTuple,
  type ResultHandle,
  type ResultSource,
  type RevokeOptions,
} from "./src/group_result.ts";
export {
  type AnySignature,
  Chain,
  chain,
  Chord,
  chord,
  type FreezeOptions,
  Group,
  group,
  Signature,
  signature,
  signatureFromDict,
  type SignatureInit,
  type SignatureOptions,
} from "./src/canvas/mod.ts";
export {
  Task,
  type TaskArgs,
  type TaskContext,
  type TaskFunction,
  type TaskOptions,
} from "./src/task.ts";
export {
  type RequestSnapshot,
  Worker,
  type WorkerCounters,
  type WorkerOptions,
} from "./src/worker/worker.ts";
export {
  type BroadcastOptions,
  type CallOptions,
  type CommandHandler,
  type CommandOptions,
  type CommandSpec,
  Control,
  type ControlContext,
  Inspect,
  type InspectOptions,
  Mailbox,
  type MailboxOptions,
  NO_REPLY,
  type NodeReply,
} from "./src/control/mod.ts";
export { Hooks, type TaskHook, type TaskHookMap } from "./src/worker/hooks.ts";
export { type ThreadSpec, threadTask } from "./src/worker/thread_pool.ts";
export { Logger, type LogLevel } from "./src/log.ts";
export type { Broker, DeadLetter, Delivery, FetchOptions, Route } from "./src/brokers/broker.ts";
export type {
  ChordJoin,
  ChordPart,
  ResultBackend,
  ResultWrite,
  WaitOptions,
} from "./src/backends/backend.ts";
export { createBroker, MemoryBroker } from "./src/brokers/mod.ts";
export { createBackend, MemoryBackend } from "./src/backends/mod.ts";
export {
  BrokerConnectionError,
  CeleriacError,
  ChordError,
  ConfigError,
  DecodeError,
  InvalidTaskError,
  MaxRetriesExceededError,
  PermissionMissingError,
  ResultTimeoutError,
  Retry,
  SoftTimeLimitExceeded,
  TaskFailedError,
  TaskNotRegisteredError,
  TimeLimitExceeded,
} from "./src/errors.ts";
export { createPushHandler, type PushHandler, type PushOptions } from "./src/push.ts";
export {
  type CeleryEvent,
  EventDispatcher,
  type EventDispatcherOptions,
  EventReceiver,
  type EventReceiverOptions,
  LamportClock,
  State,
  type StateOptions,
  TaskState,
  WorkerEvents,
  WorkerState,
} from "./src/events/mod.ts";
export { States } from "./src/protocol/result.ts";
export type { ResultMeta } from "./src/protocol/result.ts";
export { Beat, BEAT_HEADERS, type BeatCounters, type BeatOptions } from "./src/beat/beat.ts";
export type {
  BeatEntry,
  BeatEntryInput,
  BeatScheduleInput,
  BeatSendOptions,
} from "./src/beat/entry.ts";
export {
  at,
  crontab,
  type CrontabFields,
  type CrontabOptions,
  type CrontabSchedule,
  type DueState,
  every,
  type IntervalSchedule,
  isDue,
  nextRun,
  type OneOffSchedule,
  previousRun,
  type Schedule,
  type ScheduleLike,
} from "./src/beat/schedule.ts";
export {
  type BeatStore,
  createBeatStore,
  type EntryState,
  FileBeatStore,
  MemoryBeatData,
  MemoryBeatStore,
} from "./src/beat/store.ts";
