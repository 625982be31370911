/**
 * What a remote-control command is: a handler, its kind (`inspect` has no side effects,
 * `control` has), and how a command line turns positional words into its arguments
 * (Celery's `Panel.meta`: `args` consumed in order, the rest to `variadic`).
 *
 * @module
 */

import type { App } from "../../app.ts";
import type { Broker } from "../../brokers/broker.ts";
import type { LamportClock } from "../../events/event.ts";
import type { Logger } from "../../log.ts";
import type { Worker } from "../../worker/worker.ts";
import type { Mailbox } from "../mailbox.ts";

/** `inspect` commands only read; `control` commands change the worker. */
export type CommandKind = "inspect" | "control";

/** How a command-line word becomes an argument value. */
export type ArgType = "str" | "int" | "float" | "bool" | "json";

/** What a command handler gets besides its arguments. */
export interface ControlContext {
  /** The worker serving the command. */
  worker: Worker;
  /** Its app (tasks, backend). */
  app: App;
  /** Its broker. */
  broker: Broker;
  /** Node name. */
  hostname: string;
  /** The node's Lamport clock (shared with its events). */
  clock: LamportClock;
  /** The worker's logger. */
  log: Logger;
  /** The mailbox (per-node state such as remote rate limits). */
  mailbox: Mailbox;
}

/**
 * A command handler: gets the context and the request's `arguments`, returns the reply
 * value (JSON-able; `undefined` replies `null`), or {@linkcode NO_REPLY}. A thrown error
 * replies `{"error": "<Python-style repr>"}`.
 */
export type CommandHandler = (
  ctx: ControlContext,
  args: Record<string, unknown>,
) => unknown | Promise<unknown>;

/** Options of a command (see {@linkcode defineCommand}). */
export interface CommandOptions {
  /** @default "control" */
  kind?: CommandKind;
  /** Positional arguments of the command line, in order: `[name, type]`. @default [] */
  args?: [string, ArgType][];
  /** Argument that takes the remaining positional words as a list. */
  variadic?: string;
  /** Another name for the same command (`dump_active` for `active`). */
  alias?: string;
  /** One line of help. */
  help?: string;
  /** Usage text of the arguments, e.g. `<task_name> <rate_limit>`. */
  signature?: string;
  /** Listed in help. @default true */
  visible?: boolean;
}

/** A command, ready to register. */
export interface CommandSpec {
  /** Name (the request's `method`). */
  readonly name: string;
  /** Handler. */
  readonly handler: CommandHandler;
  /** Kind. */
  readonly kind: CommandKind;
  /** Positional arguments. */
  readonly args: readonly [string, ArgType][];
  /** Variadic argument name. */
  readonly variadic?: string;
  /** Alias. */
  readonly alias?: string;
  /** Help line. */
  readonly help: string;
  /** Argument usage. */
  readonly signature: string;
  /** Listed in help. */
  readonly visible: boolean;
}

/**
 * Return this from a handler to send no reply at all (what `shutdown` does, as Celery's
 * `SystemExit`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NO_REPLY } from "./types.ts";
 * assert.equal(typeof NO_REPLY, "symbol");
 * ```
 */
export const NO_REPLY: unique symbol = Symbol("celeriac.control.noReply");

/**
 * Builds a {@linkcode CommandSpec}.
 *
 * @throws {TypeError} When the name is empty or the handler not a function.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineCommand } from "./types.ts";
 * const spec = defineCommand("queue_depth", () => 3, { kind: "inspect", args: [["queue", "str"]] });
 * assert.equal(spec.kind, "inspect");
 * assert.equal(spec.signature, "<queue>");
 * ```
 */
export function defineCommand(
  name: string,
  handler: CommandHandler,
  options: CommandOptions = {},
): CommandSpec {
  if (typeof name !== "string" || !name) {
    throw new TypeError("Cannot define remote-control command: name must be a non-empty string");
  }
  if (typeof handler !== "function") {
    throw new TypeError(
      `Cannot define remote-control command "${name}": handler must be a function`,
    );
  }
  const args = options.args ?? [];
  return {
    name,
    handler,
    kind: options.kind ?? "control",
    args,
    variadic: options.variadic,
    alias: options.alias,
    help: options.help ?? "",
    signature: options.signature ??
      [...args.map(([n]) => `<${n}>`), ...(options.variadic ? [`[${options.variadic}...]`] : [])]
        .join(" "),
    visible: options.visible ?? true,
  };
}

/**
 * `{"ok": value}`, Celery's success reply.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ok } from "./types.ts";
 * assert.deepEqual(ok("pong"), { ok: "pong" });
 * ```
 */
export function ok<T>(value: T): { ok: T } {
  return { ok: value };
}

/**
 * `{"error": value}`, Celery's failure reply.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nok } from "./types.ts";
 * assert.deepEqual(nok("unknown task"), { error: "unknown task" });
 * ```
 */
export function nok<T>(value: T): { error: T } {
  return { error: value };
}

/**
 * An error whose reply reads as Python's `ValueError('…')` (what Celery's handlers raise
 * for `autoscale` and `pool_restart` when not enabled).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ValueError } from "./types.ts";
 * assert.equal(new ValueError("x").name, "ValueError");
 * ```
 */
export class ValueError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "ValueError";
  }
}

/**
 * Reads an argument as a string.
 *
 * @throws {TypeError} When it is required and missing (the reply is a `TypeError`, as a
 *   Python handler called without a required argument).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { argString } from "./types.ts";
 * assert.equal(argString({ queue: "q" }, "queue"), "q");
 * assert.equal(argString({}, "queue", false), undefined);
 * ```
 */
export function argString(
  args: Record<string, unknown>,
  name: string,
  required = true,
): string | undefined {
  const value = args[name];
  if (value === undefined || value === null || value === "") {
    if (required) throw new TypeError(`missing required argument: '${name}'`);
    return undefined;
  }
  return String(value);
}

/**
 * Reads an argument as a number (numbers, numeric strings); missing gives `fallback`.
 *
 * @throws {TypeError} When present but not a number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { argNumber } from "./types.ts";
 * assert.equal(argNumber({ n: "2" }, "n", 1), 2);
 * assert.equal(argNumber({}, "n", 1), 1);
 * ```
 */
export function argNumber<F extends number | null>(
  args: Record<string, unknown>,
  name: string,
  fallback: F,
): number | F {
  const value = args[name];
  if (value === undefined || value === null || value === "") return fallback;
  const n = typeof value === "bigint" ? Number(value) : Number(value);
  if (typeof value === "boolean" || !Number.isFinite(n)) {
    throw new TypeError(`argument '${name}' must be a number, got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * Reads an argument as a boolean: booleans, and Celery's `strtobool` words for strings
 * (`1/true/yes/on`, `0/false/no/off`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { argBool } from "./types.ts";
 * assert.equal(argBool({ t: "yes" }, "t"), true);
 * assert.equal(argBool({}, "t"), false);
 * ```
 */
export function argBool(args: Record<string, unknown>, name: string): boolean {
  const value = args[name];
  if (typeof value === "string") {
    return ["1", "true", "yes", "y", "on", "t"].includes(value.trim().toLowerCase());
  }
  return Boolean(value);
}

/**
 * Reads an argument that is one id or a list of ids (Celery's `maybe_list`), de-duplicated
 * in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { argList } from "./types.ts";
 * assert.deepEqual(argList({ task_id: "a" }, "task_id"), ["a"]);
 * assert.deepEqual(argList({ task_id: ["a", "b", "a"] }, "task_id"), ["a", "b"]);
 * assert.deepEqual(argList({}, "task_id"), []);
 * ```
 */
export function argList(args: Record<string, unknown>, name: string): string[] {
  const value = args[name];
  const list = value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
  return [...new Set(list.map(String))];
}
