/**
 * Celery's `rpc://` result backend: results are messages, not records.
 *
 * 1. producer: before sending a task, declare the client's reply queue (named by its oid:
 *    non-durable, auto-delete, `x-expires` = result expiry) and consume it; the task carries
 *    `reply_to` = oid (the app asks {@linkcode RpcBackend.replyQueue});
 * 2. worker: every state it stores for a request is published to the default exchange
 *    with routing key = the request's `reply_to`, `correlation_id` = task id, delivery
 *    mode 1, body `{"task_id", "status", "result", "traceback", "children"}` (Celery's
 *    `_to_result`); a request without `reply_to` has nowhere to go, so nothing is sent;
 * 3. the client keeps the latest state per task id (a stored SUCCESS is final) and wakes
 *    `waitFor` on ready states. Results of other processes' tasks never reach it, and
 *    `get()` only knows what this client received (Celery's rule too).
 *
 * It needs a broker that can carry replies: `amqp://` (RabbitMQ). No chords, no groups.
 *
 * @module
 */

import type { Broker, Subscription } from "../brokers/broker.ts";
import { ConfigError, ResultTimeoutError } from "../errors.ts";
import {
  decodeJsonBody,
  encodeJsonBody,
  JSON_CONTENT_TYPE,
  type TransportMessage,
} from "../protocol/message.ts";
import { READY_STATES, type ResultMeta } from "../protocol/result.ts";
import type { ResultBackend, StoreRequest, WaitOptions } from "./backend.ts";

/** What a broker offers for `rpc://` results (the AMQP broker has it). */
export interface ReplyTransport {
  /** Declares a client's reply queue (non-durable, auto-delete, `x-expires`). */
  declareReplyQueue(queue: string, options: { expiresMs: number }): Promise<void>;
  /** Consumes a reply queue (no acks) until the subscription is closed. */
  consumeReplies(
    queue: string,
    onMessage: (message: TransportMessage) => void,
  ): Promise<Subscription>;
  /** Publishes to a reply queue through the default exchange, declaring nothing. */
  publishReply(queue: string, message: TransportMessage): Promise<void>;
}

/**
 * Whether a broker can carry `rpc://` results.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isReplyTransport } from "./rpc.ts";
 * import { MemoryBroker } from "../brokers/memory.ts";
 * assert.equal(isReplyTransport(new MemoryBroker()), false);
 * ```
 */
export function isReplyTransport(broker: unknown): broker is ReplyTransport {
  const b = broker as Partial<ReplyTransport> | null;
  return typeof b?.declareReplyQueue === "function" &&
    typeof b.consumeReplies === "function" && typeof b.publishReply === "function";
}

/** Options of {@linkcode RpcBackend}. */
export interface RpcBackendOptions {
  /**
   * Seconds an unused reply queue lives (its `x-expires`, Celery's `result_expires`).
   * Also read from the URL: `rpc://?expires=3600`. @default 86400
   */
  expires?: number;
  /** Results kept for tasks nobody waits for yet (oldest dropped first). @default 10000 */
  maxCached?: number;
}

interface Waiter {
  resolve(meta: ResultMeta): void;
  reject(err: unknown): void;
}

/**
 * The message a worker publishes for one state of a task (Celery's RPC result body).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeRpcResult } from "./rpc.ts";
 * const m = encodeRpcResult({ status: "SUCCESS", result: 5, traceback: null, children: [], date_done: null, task_id: "t1" }, "t1");
 * assert.deepEqual(JSON.parse(new TextDecoder().decode(m.body)), { task_id: "t1", status: "SUCCESS", result: 5, traceback: null, children: [] });
 * assert.deepEqual(m.properties, { correlation_id: "t1", delivery_mode: 1, priority: 0 });
 * ```
 */
export function encodeRpcResult(meta: ResultMeta, correlationId: string): TransportMessage {
  return {
    headers: {},
    properties: { correlation_id: correlationId, delivery_mode: 1, priority: 0 },
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: encodeJsonBody({
      task_id: meta.task_id,
      status: meta.status,
      result: meta.result,
      traceback: meta.traceback,
      children: meta.children ?? [],
    }),
  };
}

/**
 * Reads an RPC result message (ours or a Python worker's) as a result record.
 *
 * @returns `null` when it is not a result message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRpcResult, encodeRpcResult } from "./rpc.ts";
 * const meta = { status: "FAILURE", result: { exc_type: "ValueError", exc_message: ["x"], exc_module: "builtins" }, traceback: "tb", children: [], date_done: null, task_id: "t1" };
 * assert.deepEqual(decodeRpcResult(encodeRpcResult(meta, "t1")), meta);
 * ```
 */
export function decodeRpcResult(message: TransportMessage): ResultMeta | null {
  let body: unknown;
  try {
    body = decodeJsonBody(message);
  } catch {
    return null;
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) return null;
  const b = body as Record<string, unknown>;
  const correlation = message.properties["correlation_id"];
  const taskId = typeof b.task_id === "string"
    ? b.task_id
    : typeof correlation === "string"
    ? correlation
    : undefined;
  if (typeof b.status !== "string" || !taskId) return null;
  return {
    status: b.status,
    result: b.result ?? null,
    traceback: typeof b.traceback === "string" ? b.traceback : null,
    children: Array.isArray(b.children) ? b.children : [],
    date_done: null,
    task_id: taskId,
  };
}

/**
 * The `rpc://` result backend.
 *
 * @example
 * ```ts ignore
 * import { createApp } from "../../mod.ts";
 * const app = createApp({ broker: "amqp://guest:guest@127.0.0.1:5672//", backend: "rpc://" });
 * const result = await app.sendTask("tasks.add", [2, 3]); // reply_to = the app's oid queue
 * console.log(await result.get({ timeout: 10 }));
 * await app.close();
 * ```
 */
export class RpcBackend implements ResultBackend {
  /** Always `rpc`. */
  readonly kind = "rpc";
  /** `rpc://`. */
  readonly displayUrl = "rpc://";
  /** This client's id: the name of its reply queue. */
  readonly oid: string = crypto.randomUUID();
  /** Seconds an unused reply queue lives. */
  readonly expires: number;
  #broker?: () => Promise<Broker>;
  #transport?: ReplyTransport;
  #maxCached: number;
  #results = new Map<string, ResultMeta>();
  #waiters = new Map<string, Set<Waiter>>();
  #listening?: Promise<Subscription>;
  #closed = false;

  /**
   * @param url `rpc://` (optionally `?expires=<seconds>`).
   * @throws {ConfigError} For another scheme or a bad `expires`.
   */
  constructor(url = "rpc://", options: RpcBackendOptions = {}) {
    const m = /^rpc:\/\/[^?]*(?:\?(.*))?$/i.exec(url);
    if (!m) throw new ConfigError(`Cannot use "${url}" as an rpc:// result backend URL`);
    const params = new URLSearchParams(m[1] ?? "");
    for (const name of params.keys()) {
      if (name !== "expires") {
        throw new ConfigError(
          `Cannot use result backend URL "${url}": unknown parameter "${name}" (known: expires)`,
        );
      }
    }
    const fromUrl = params.get("expires");
    const expires = options.expires ?? (fromUrl === null ? 86400 : Number(fromUrl));
    if (!(expires > 0) || !Number.isFinite(expires)) {
      throw new ConfigError(
        `Cannot use result backend "${url}": expires must be a positive number of seconds`,
      );
    }
    this.expires = expires;
    this.#maxCached = options.maxCached ?? 10_000;
  }

  /** Gives the backend the app's broker (results travel on it). The app calls this. */
  useBroker(broker: () => Promise<Broker>): void {
    this.#broker = broker;
  }

  /**
   * Checks the broker can carry replies. Declares nothing yet: a worker only publishes.
   *
   * @throws {ConfigError} Without a broker, or with one that has no reply queues.
   */
  async connect(): Promise<void> {
    await this.#replies();
  }

  async #replies(): Promise<ReplyTransport> {
    if (this.#transport) return this.#transport;
    if (!this.#broker) {
      throw new ConfigError(
        "Cannot use result backend rpc://: it has no broker (create it through createApp)",
      );
    }
    const broker = await this.#broker();
    if (!isReplyTransport(broker)) {
      throw new ConfigError(
        `Cannot use result backend rpc:// with broker ${broker.displayUrl}: results travel as messages, which needs an amqp:// broker`,
      );
    }
    return this.#transport = broker;
  }

  /**
   * The queue producers name in `reply_to`: declared and consumed on first call.
   *
   * @throws {ConfigError} When the broker cannot carry replies.
   */
  async replyQueue(): Promise<string> {
    await this.#listen();
    return this.oid;
  }

  #listen(): Promise<Subscription> {
    if (this.#closed) return Promise.reject(new TypeError("Cannot listen: rpc:// backend closed"));
    this.#listening ??= (async () => {
      const transport = await this.#replies();
      await transport.declareReplyQueue(this.oid, { expiresMs: this.expires * 1000 });
      return await transport.consumeReplies(this.oid, (m) => this.#onReply(m));
    })();
    this.#listening.catch(() => this.#listening = undefined);
    return this.#listening;
  }

  #onReply(message: TransportMessage): void {
    const meta = decodeRpcResult(message);
    if (!meta) return;
    const current = this.#results.get(meta.task_id);
    if (current?.status === "SUCCESS") return;
    this.#results.delete(meta.task_id);
    this.#results.set(meta.task_id, meta);
    while (this.#results.size > this.#maxCached) {
      this.#results.delete(this.#results.keys().next().value!);
    }
    if (!READY_STATES.has(meta.status)) return;
    const waiters = this.#waiters.get(meta.task_id);
    this.#waiters.delete(meta.task_id);
    for (const w of waiters ?? []) w.resolve(structuredClone(meta));
  }

  /**
   * Publishes the state to the request's `reply_to` (nothing without one, as in Celery).
   */
  async store(meta: ResultMeta, request?: StoreRequest): Promise<void> {
    const replyTo = request?.replyTo;
    if (!replyTo) return;
    const transport = await this.#replies();
    await transport.publishReply(
      replyTo,
      encodeRpcResult(meta, request?.correlationId || meta.task_id),
    );
  }

  /** The latest state this client received for the task, or `null`. */
  async get(taskId: string): Promise<ResultMeta | null> {
    await this.#listen();
    const meta = this.#results.get(taskId);
    return meta ? structuredClone(meta) : null;
  }

  /** Waits for a ready state to arrive on the reply queue. */
  async waitFor(taskId: string, options: WaitOptions = {}): Promise<ResultMeta> {
    await this.#listen();
    const current = this.#results.get(taskId);
    if (current && READY_STATES.has(current.status)) return structuredClone(current);
    if (options.signal?.aborted) throw options.signal.reason;
    return await new Promise((resolve, reject) => {
      let set = this.#waiters.get(taskId);
      if (!set) this.#waiters.set(taskId, set = new Set());
      const cleanup = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        set!.delete(waiter);
        if (!set!.size && this.#waiters.get(taskId) === set) this.#waiters.delete(taskId);
      };
      const waiter: Waiter = {
        resolve: (meta) => {
          cleanup();
          resolve(meta);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(options.signal!.reason);
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(
        () => waiter.reject(new ResultTimeoutError(taskId, options.timeoutMs!)),
        options.timeoutMs,
      );
      options.signal?.addEventListener("abort", onAbort, { once: true });
      set.add(waiter);
    });
  }

  /** Forgets what this client received for the task. */
  forget(taskId: string): Promise<void> {
    this.#results.delete(taskId);
    return Promise.resolve();
  }

  /** Stops consuming (the reply queue auto-deletes); pending waits reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const listening = this.#listening;
    this.#listening = undefined;
    await (await listening?.catch(() => undefined))?.close().catch(() => {});
    const error = new TypeError("Cannot wait for a result: the rpc:// backend was closed");
    for (const set of [...this.#waiters.values()]) for (const w of [...set]) w.reject(error);
    this.#waiters.clear();
  }
}
