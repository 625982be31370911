/**
 * The worker side of remote control: a kombu pidbox node on the broker's fanout.
 *
 * 1. listen on the fanout exchange `celery.pidbox` (Redis: `PSUBSCRIBE /<db>.celery.pidbox`),
 *    with the node's binding `_kombu.binding.celery.pidbox ∋ "SEPSEP<node>.celery.pidbox"`;
 * 2. per request, in arrival order: adjust the Lamport clock from the `clock` header, then
 *    handle it if it is for this node (destination list, else glob/pcre pattern, else all);
 * 3. run the command (built-ins, then the app's `app.control.register` commands, which win
 *    on a name clash), refusing what the allowlist does not name;
 * 4. reply only when the request has `reply_to`: `{<node>: reply}` published to
 *    `reply.celery.pidbox` with the client's routing key (on Redis: `LPUSH` to the queues
 *    bound under that key, never blindly), headers `{ticket, clock}`, delivery mode 1.
 *
 * Errors: unknown command ⇒ `{"error": "KeyError('x')"}`; a handler that throws ⇒
 * `{"error": "<repr>"}`; a refused command ⇒ `{"error": "Command 'x' is not allowed on this
 * worker"}`; `shutdown` (or any handler returning {@linkcode NO_REPLY}) ⇒ no reply.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { Broker, Subscription } from "../brokers/broker.ts";
import { LamportClock } from "../events/event.ts";
import { reprException } from "../events/worker_events.ts";
import { Logger } from "../log.ts";
import type { TransportMessage } from "../protocol/message.ts";
import { pyRepr } from "../protocol/repr.ts";
import type { Worker } from "../worker/worker.ts";
import { BUILTIN_COMMANDS } from "./commands/mod.ts";
import { type CommandSpec, type ControlContext, NO_REPLY, nok } from "./commands/types.ts";
import {
  decodeRequest,
  encodeReply,
  isForNode,
  nodeQueue,
  PIDBOX_EXCHANGE,
  type ReceivedRequest,
} from "./protocol.ts";

/** Options of a {@linkcode Mailbox}. */
export interface MailboxOptions {
  /** Commands served (names or aliases); `null` serves all. @default null */
  allow?: Iterable<string> | null;
  /** The node's Lamport clock (share the worker events' clock). @default a new clock */
  clock?: LamportClock;
  /** Logger. @default warnings and errors to stderr */
  log?: Logger;
  /** Milliseconds `stop()` waits for the command in progress. @default 5000 */
  stopTimeoutMs?: number;
}

/** A queue added by `add_consumer`, as `active_queues` reports it. */
export interface QueueDeclaration {
  /** Exchange name (the queue's own name by default). */
  exchange: string;
  /** Exchange type. @default "direct" */
  exchangeType: string;
  /** Routing key (the queue name by default). */
  routingKey: string;
}

/**
 * A worker's mailbox. A {@linkcode Worker} starts one itself (option `remoteControl`); build
 * one directly only for a custom worker loop or a test.
 *
 * @example Serve `ping` on the memory broker and read the reply
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 *
 * const app = createApp({ broker: "memory://mailbox-doc" });
 * const worker = new Worker(app, { name: "w1@doc", logLevel: "critical" });
 * await worker.start(); // starts worker.mailbox
 * const inspect = app.control.inspect({ destination: ["w1@doc"] }); // one reply: no wait
 * assert.deepEqual(await inspect.ping(), { "w1@doc": { ok: "pong" } });
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Mailbox {
  /** Node name. */
  readonly hostname: string;
  /** The node's Lamport clock. */
  readonly clock: LamportClock;
  /** Names of the commands served, or `null` for all. */
  readonly allowed: ReadonlySet<string> | null;
  /** Rate limits set remotely (`rate_limit`), by task name, as given. */
  readonly rateLimits: Map<string, string | number | null> = new Map();
  /** Time limits set remotely (`time_limit`), by task name. */
  readonly timeLimits: Map<string, { soft: number | null; hard: number | null }> = new Map();
  /** Exchanges of queues added by `add_consumer`, by queue. */
  readonly declarations: Map<string, QueueDeclaration> = new Map();
  #worker: Worker;
  #app: App;
  #broker: Broker;
  #log: Logger;
  #stopTimeoutMs: number;
  #subscription?: Subscription;
  #bound = false;
  #chain: Promise<void> = Promise.resolve();
  #stopped = false;

  /**
   * @param worker The worker the commands act on.
   * @param app Its app (tasks, backend, user commands in `app.control`).
   * @param broker Its broker; needs `subscribe` and `broadcast`.
   */
  constructor(worker: Worker, app: App, broker: Broker, options: MailboxOptions = {}) {
    this.#worker = worker;
    this.#app = app;
    this.#broker = broker;
    this.hostname = worker.name;
    this.clock = options.clock ?? new LamportClock();
    this.#log = options.log ?? new Logger("warning");
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 5000;
    const allow = options.allow;
    this.allowed = allow === null || allow === undefined
      ? null
      : new Set([...allow].map((name) => this.command(name)?.name ?? name));
  }

  /** The context handlers get. */
  get context(): ControlContext {
    return {
      worker: this.#worker,
      app: this.#app,
      broker: this.#broker,
      hostname: this.hostname,
      clock: this.clock,
      log: this.#log,
      mailbox: this,
    };
  }

  /**
   * Binds the node's pidbox queue (when the broker can) and starts listening.
   *
   * @throws {TypeError} When the broker has no fanout.
   */
  async start(): Promise<void> {
    const broker = this.#broker;
    if (!broker.subscribe || !broker.broadcast) {
      throw new TypeError(
        `Cannot serve remote control on ${broker.displayUrl}: this broker has no fanout`,
      );
    }
    if (broker.bindQueue) {
      await broker.bindQueue(nodeQueue(this.hostname), PIDBOX_EXCHANGE, "");
      this.#bound = true;
    }
    this.#subscription = await broker.subscribe(PIDBOX_EXCHANGE, "", (message) => {
      if (this.#stopped) return;
      this.#chain = this.#chain.then(() => this.receive(message)).then(
        () => {},
        (err) => this.#log.error(`remote control: ${(err as Error)?.message ?? err}`),
      );
    });
    this.#log.debug(`remote control: ${this.hostname} listening on ${PIDBOX_EXCHANGE}`);
  }

  /** Stops listening, waits (bounded) for the command in progress, removes the binding. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#subscription?.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#chain,
      new Promise<void>((resolve) => timer = setTimeout(resolve, this.#stopTimeoutMs)),
    ]);
    clearTimeout(timer);
    if (this.#bound) {
      await this.#broker.unbindQueue?.(nodeQueue(this.hostname), PIDBOX_EXCHANGE, "")
        .catch(() => {});
    }
  }

  /**
   * A command by name or alias: the app's registered commands first, then the built-ins.
   *
   * @example
   * ```ts ignore
   * assert.equal(worker.mailbox!.command("dump_active")?.name, "active");
   * ```
   */
  command(name: string): CommandSpec | undefined {
    const user = this.#app.control.commands;
    return user.get(name) ?? BUILTIN_COMMANDS.get(name);
  }

  /**
   * Handles one request message as the subscription does: adjusts the clock, checks the
   * destination, runs the command, publishes the reply when one is wanted. Resolves with
   * the reply value, or `undefined` when the request was not for this node, could not be
   * decoded, or the command sends no reply.
   */
  async receive(message: TransportMessage): Promise<unknown> {
    let received: ReceivedRequest;
    try {
      received = decodeRequest(message);
    } catch (err) {
      this.#log.error(`remote control: Cannot decode request: ${(err as Error)?.message ?? err}`);
      return undefined;
    }
    // As Celery's worker pidbox: forward the clock (clients rarely send a useful one), then
    // adjust it from the request's header.
    this.clock.forward();
    this.clock.adjust(received.clock);
    const { request } = received;
    if (!isForNode(this.hostname, request)) return undefined;
    this.#log.debug(
      `remote control: ${request.method}(${JSON.stringify(request.arguments)}) [reply_to: ${
        request.reply_to?.routing_key ?? "-"
      } ticket: ${request.ticket ?? "-"}]`,
    );
    const reply = await this.dispatch(request.method, request.arguments);
    if (reply === NO_REPLY) return undefined;
    const replyTo = request.reply_to;
    if (replyTo) {
      const out = encodeReply(this.hostname, reply, {
        ticket: request.ticket ?? null,
        clock: this.clock.forward(),
      });
      try {
        await this.#broker.publish(out, {
          exchange: replyTo.exchange,
          routingKey: replyTo.routing_key,
        });
      } catch (err) {
        this.#log.error(
          `remote control: Cannot reply to ${request.method}: ${(err as Error)?.message ?? err}`,
        );
      }
    }
    return reply === undefined ? null : reply;
  }

  /**
   * Runs a command with its arguments and returns the reply value (errors become
   * `{"error": …}` replies), or {@linkcode NO_REPLY}.
   *
   * @example
   * ```ts ignore
   * assert.deepEqual(await worker.mailbox!.dispatch("nosuchcmd", {}), { error: "KeyError('nosuchcmd')" });
   * ```
   */
  async dispatch(method: string, args: Record<string, unknown>): Promise<unknown> {
    const spec = this.command(method);
    if (!spec) {
      this.#log.error(`remote control: No such control command: ${method}`);
      return nok(`KeyError(${pyRepr(method)})`);
    }
    if (this.allowed && !this.allowed.has(spec.name)) {
      this.#log.warning(`remote control: Refused command '${method}' (not allowed)`);
      return nok(`Command '${method}' is not allowed on this worker`);
    }
    try {
      const reply = await spec.handler(this.context, args);
      return reply === undefined ? null : reply;
    } catch (err) {
      this.#log.error(`remote control: Command ${method} failed: ${reprException(err)}`);
      return nok(reprException(err));
    }
  }
}
