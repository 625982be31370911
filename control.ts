/**
 * The remote-control command line: inspect and control live workers (celeriac's and Python
 * Celery's) from anywhere, as `celery inspect` / `celery control` do, plus broker-side tools
 * for a flooded queue.
 *
 * ```sh
 * deno run -A control.ts inspect ping --broker redis://127.0.0.1:6379/0
 * deno run -A control.ts inspect active -d w1@host
 * deno run -A control.ts control rate_limit tasks.slow 10/m
 * deno run -A control.ts control revoke <id…> [--terminate]
 * deno run -A control.ts control revoke --task-name tasks.slow [-Q celery]   # revoke_by_name
 * deno run -A control.ts purge -Q celery --task-name tasks.slow -f
 * deno run -A control.ts move --task-name tasks.slow --from celery --to slow
 * ```
 *
 * See `docs/control.md`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { App, createApp } from "./src/app.ts";
import { EMBEDDED_DEFAULT_URL } from "./src/brokers/mod.ts";
import type { NodeReply } from "./src/control/client.ts";
import type { ArgType, CommandSpec } from "./src/control/commands/types.ts";
import { formatNodeReply, nodesOnline, pyJson } from "./src/control/format.ts";
import { ConfigError } from "./src/errors.ts";
import { permissionHint } from "./src/permissions.ts";
import { parseJson } from "./src/protocol/json.ts";

export * from "./src/control/mod.ts";

/**
 * Exit code when no node replied in time (Celery's `EX_UNAVAILABLE`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EX_UNAVAILABLE } from "./control.ts";
 * assert.equal(EX_UNAVAILABLE, 69);
 * ```
 */
export const EX_UNAVAILABLE = 69;

const USAGE = `Usage: deno run -A control.ts <command> [arguments] [options]

Commands:
  inspect <method> [args…]    ask workers (no side effects): ping, stats, active, reserved,
                              scheduled, revoked, registered [attr…], query_task <id…>,
                              active_queues, conf, report, clock, memsample
  control <method> [args…]    change workers: revoke <id…>, terminate <signal> <id…>,
                              rate_limit <task> <rate>, time_limit <task> <soft> [hard],
                              add_consumer <queue> [exchange [type [routing_key]]],
                              cancel_consumer <queue>, pool_grow [n], pool_shrink [n],
                              autoscale [max [min]], enable_events, disable_events,
                              heartbeat, shutdown, revoke_by_name <task> [queue]
  status                      the workers online
  purge                       delete waiting messages in the broker (no worker needed):
                              every message of -Q, or only --task-name's (others kept in
                              order); needs -f
  move                        move --task-name's waiting messages from --from to the back
                              of --to (order kept, nothing lost)

  A command an app registered (app.control.register) takes its declared arguments; any
  other method takes key=value words (values read as JSON when they parse).

Options:
  -b, --broker <url>          broker URL (default: the --app's, else ${EMBEDDED_DEFAULT_URL}):
                              redis://, amqp://, sqlite:// (memory:// only in one process)
  -A, --app <module>          app module: its broker and its registered commands
  -d, --destination <a,b>     only these node names
      --pattern <p>           only nodes matching (with --matcher glob|pcre, default glob)
      --matcher <m>
  -t, --timeout <s>           seconds to wait for the next reply (default 1)
      --limit <n>             stop after n replies
  -j, --json                  print the replies as JSON
      --terminate             control revoke: also abort running tasks
      --signal <SIG>          control revoke --terminate: signal name (default SIGTERM)
      --task-name <name>      control revoke: revoke every waiting message of a task name
                              (revoke_by_name); purge/move: the task name
  -Q, --queue <q>             revoke --task-name / purge: the queue (default: the workers'
                              queues / the app's default queue)
      --from <q>, --to <q>    move: source and target queues
  -f, --force                 purge: really delete
  -h, --help                  show this help`;

/** A parsed command line. */
export interface ControlCliOptions {
  /** `inspect`, `control`, `status`, `purge` or `move`. */
  command: "inspect" | "control" | "status" | "purge" | "move";
  /** The remote method (inspect/control). */
  method: string;
  /** Positional words after the method. */
  words: string[];
  /** Broker URL, if given. */
  broker?: string;
  /** App module, if given. */
  app?: string;
  /** Destination nodes. */
  destination?: string[];
  /** Node pattern. */
  pattern?: string;
  /** Pattern matcher. */
  matcher?: "glob" | "pcre";
  /** Seconds. */
  timeout: number;
  /** Reply limit. */
  limit?: number;
  /** JSON output. */
  json: boolean;
  /** revoke --terminate. */
  terminate: boolean;
  /** revoke --signal. */
  signal?: string;
  /** --task-name. */
  taskName?: string;
  /** -Q. */
  queue?: string;
  /** move --from. */
  from?: string;
  /** move --to. */
  to?: string;
  /** purge -f. */
  force: boolean;
}

/**
 * Parses the control CLI's arguments.
 *
 * @throws {ConfigError} On a bad flag or value; `--help` throws the usage text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseControlArgs } from "./control.ts";
 * const o = parseControlArgs(["control", "rate_limit", "tasks.slow", "10/m", "-d", "w1@h,w2@h"]);
 * assert.deepEqual([o.command, o.method, o.words, o.destination], ["control", "rate_limit", ["tasks.slow", "10/m"], ["w1@h", "w2@h"]]);
 * assert.equal(parseControlArgs(["inspect", "ping", "--timeout", "0.5"]).timeout, 0.5);
 * ```
 */
export function parseControlArgs(args: string[]): ControlCliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        broker: { type: "string", short: "b" },
        app: { type: "string", short: "A" },
        destination: { type: "string", short: "d" },
        pattern: { type: "string" },
        matcher: { type: "string" },
        timeout: { type: "string", short: "t" },
        limit: { type: "string" },
        json: { type: "boolean", short: "j" },
        terminate: { type: "boolean" },
        signal: { type: "string" },
        "task-name": { type: "string" },
        queue: { type: "string", short: "Q" },
        from: { type: "string" },
        to: { type: "string" },
        force: { type: "boolean", short: "f" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new ConfigError(`Cannot parse arguments: ${(err as Error).message}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) throw new ConfigError(USAGE);
  const [command, ...rest] = positionals;
  if (!["inspect", "control", "status", "purge", "move"].includes(command!)) {
    throw new ConfigError(`Cannot run control command "${command}"\n\n${USAGE}`);
  }
  let method = "";
  let words = rest;
  if (command === "inspect" || command === "control") {
    if (command === "control" && values["task-name"] !== undefined && rest[0] === "revoke") {
      method = "revoke_by_name";
      words = rest.slice(1);
    } else {
      if (!rest.length) {
        throw new ConfigError(
          `Cannot run ${command}: name a method, e.g. ${command} ${
            command === "inspect" ? "ping" : "rate_limit tasks.add 10/m"
          }\n\n${USAGE}`,
        );
      }
      [method, ...words] = rest as [string, ...string[]];
    }
  } else if (rest.length) {
    throw new ConfigError(`Cannot run ${command}: it takes no positional arguments`);
  }
  const timeout = values.timeout === undefined ? 1 : Number(values.timeout);
  if (!(timeout > 0) || !Number.isFinite(timeout)) {
    throw new ConfigError(`Cannot use --timeout "${values.timeout}": it must be > 0 seconds`);
  }
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) {
    throw new ConfigError(`Cannot use --limit "${values.limit}": it must be a positive integer`);
  }
  if (values.matcher !== undefined && !["glob", "pcre"].includes(values.matcher)) {
    throw new ConfigError(`Cannot use --matcher "${values.matcher}": use glob or pcre`);
  }
  const destination = values.destination?.split(",").map((d) => d.trim()).filter(Boolean);
  return {
    command: command as ControlCliOptions["command"],
    method,
    words,
    broker: values.broker,
    app: values.app,
    destination: destination?.length ? destination : undefined,
    pattern: values.pattern,
    matcher: values.matcher as "glob" | "pcre" | undefined,
    timeout,
    limit,
    json: values.json ?? false,
    terminate: values.terminate ?? false,
    signal: values.signal,
    taskName: values["task-name"],
    queue: values.queue,
    from: values.from,
    to: values.to,
    force: values.force ?? false,
  };
}

function coerce(value: string, type: ArgType, name: string): unknown {
  switch (type) {
    case "str":
      return value;
    case "int":
    case "float": {
      const n = Number(value);
      if (!Number.isFinite(n) || (type === "int" && !Number.isInteger(n))) {
        throw new ConfigError(`Cannot use "${value}" for ${name}: it must be a number`);
      }
      return n;
    }
    case "bool":
      return ["1", "true", "yes", "y", "on", "t"].includes(value.toLowerCase());
    case "json":
      try {
        return parseJson(value);
      } catch {
        return value;
      }
  }
}

/**
 * A command's keyword arguments from the words after it, as Celery's CLI: declared
 * arguments in order (converted to their type), the rest to the variadic argument; a
 * command nobody declared takes `key=value` words.
 *
 * @throws {ConfigError} When there are more words than the command takes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BUILTIN_COMMANDS } from "./src/control/commands/mod.ts";
 * import { commandArguments } from "./control.ts";
 * assert.deepEqual(commandArguments(BUILTIN_COMMANDS.get("rate_limit"), "rate_limit", ["t", "10/m"]),
 *   { task_name: "t", rate_limit: "10/m" });
 * assert.deepEqual(commandArguments(BUILTIN_COMMANDS.get("revoke"), "revoke", ["a", "b"]), { task_id: ["a", "b"] });
 * assert.deepEqual(commandArguments(undefined, "custom", ["n=3", "q=x"]), { n: 3, q: "x" });
 * ```
 */
export function commandArguments(
  spec: CommandSpec | undefined,
  method: string,
  words: string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!spec) {
    for (const word of words) {
      const eq = word.indexOf("=");
      if (eq <= 0) {
        throw new ConfigError(
          `Cannot pass "${word}" to ${method}: this method is unknown here, give key=value (or load its app with --app)`,
        );
      }
      out[word.slice(0, eq)] = coerce(word.slice(eq + 1), "json", word.slice(0, eq));
    }
    return out;
  }
  const rest = [...words];
  for (const [name, type] of spec.args) {
    if (!rest.length) break;
    out[name] = coerce(rest.shift()!, type, name);
  }
  if (spec.variadic) out[spec.variadic] = rest;
  else if (rest.length) {
    throw new ConfigError(`Command '${method}' takes arguments: ${spec.signature || "none"}`);
  }
  return out;
}

/** Options of {@linkcode runControlCli} (for embedding and tests). */
export interface RunControlCliOptions {
  /** Use this app (its broker and commands) instead of `--app`/`--broker`. Not closed. */
  app?: App;
  /** Where output goes. @default stdout */
  write?: (text: string) => void;
  /** Where errors go. @default stderr */
  writeError?: (text: string) => void;
}

const encoder = new TextEncoder();

function writeTo(stream: { writeSync(p: Uint8Array): number }): (text: string) => void {
  return (text) => {
    let bytes = encoder.encode(text);
    while (bytes.length) bytes = bytes.subarray(stream.writeSync(bytes));
  };
}

async function appFor(options: ControlCliOptions): Promise<App> {
  if (options.app) {
    const { loadApp } = await import("./worker.ts");
    const app = await loadApp(options.app);
    if (options.broker !== undefined) app.configure({ broker: options.broker });
    else if (app.brokerDefaulted) app.configure({ broker: EMBEDDED_DEFAULT_URL });
    return app;
  }
  return createApp({ broker: options.broker ?? EMBEDDED_DEFAULT_URL, backend: null });
}

/**
 * Runs the control CLI; returns the exit code (0, 1 on errors, 69 when no node replied).
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runControlCli(Deno.args));
 * ```
 */
export async function runControlCli(
  args: string[],
  cli: RunControlCliOptions = {},
): Promise<number> {
  const write = cli.write ?? writeTo(Deno.stdout);
  const writeError = cli.writeError ?? writeTo(Deno.stderr);
  let app: App | undefined;
  try {
    const options = parseControlArgs(args);
    app = cli.app ?? await appFor(options);
    const control = app.control;
    const target = {
      destination: options.destination,
      pattern: options.pattern,
      matcher: options.pattern ? options.matcher ?? "glob" : options.matcher,
      timeout: options.timeout,
      limit: options.limit,
    };

    if (options.command === "purge") {
      const queue = options.queue ?? app.defaultQueue;
      if (!options.force) {
        throw new ConfigError(
          `Cannot purge ${
            options.taskName ? `${options.taskName} from ` : ""
          }queue ${queue} without -f/--force: the messages are deleted for good`,
        );
      }
      const n = await control.purge(queue, { taskName: options.taskName });
      write(
        options.json
          ? pyJson({ queue, task_name: options.taskName ?? null, purged: n }) + "\n"
          : `Purged ${n} ${n === 1 ? "message" : "messages"}${
            options.taskName ? ` of ${options.taskName}` : ""
          } from queue ${queue}.\n`,
      );
      return 0;
    }
    if (options.command === "move") {
      if (!options.taskName || !options.from || !options.to) {
        throw new ConfigError("Cannot move: give --task-name, --from and --to");
      }
      const n = await control.moveTasks(options.taskName, options.from, options.to);
      write(
        options.json
          ? pyJson({ task_name: options.taskName, from: options.from, to: options.to, moved: n }) +
            "\n"
          : `Moved ${n} ${
            n === 1 ? "message" : "messages"
          } of ${options.taskName} from ${options.from} to ${options.to}.\n`,
      );
      return 0;
    }

    const inspect = options.command === "inspect" || options.command === "status";
    const method = options.command === "status" ? "ping" : options.method;
    const spec = control.commandSpec(method);
    if (options.command !== "status" && spec && spec.kind !== options.command) {
      throw new ConfigError(
        `Cannot ${options.command} ${method}: it is a${
          spec.kind === "inspect" ? "n inspect" : " control"
        } command (use: control.ts ${spec.kind} ${method})`,
      );
    }
    const argv = commandArguments(spec, method, options.words);
    if (method === "revoke" && options.terminate) {
      argv.terminate = true;
      if (options.signal) argv.signal = options.signal;
    }
    if (method === "revoke_by_name") {
      if (options.taskName) argv.task_name = options.taskName;
      if (options.queue) argv.queue = options.queue;
      if (options.terminate) argv.terminate = true;
    }
    const callback = options.json
      ? undefined
      : (reply: NodeReply) => write(formatNodeReply(reply, options.command !== "status"));
    const replies = await control.broadcast(method, {
      ...target,
      arguments: argv,
      reply: true,
      callback,
    });
    if (!replies.length) {
      writeError("Error: No nodes replied within time constraint\n");
      return EX_UNAVAILABLE;
    }
    if (options.json) {
      write(pyJson(inspect ? Object.assign({}, ...replies) : replies) + "\n");
    } else if (inspect) write(nodesOnline(replies.length));
    return 0;
  } catch (err) {
    const hint = permissionHint(err);
    if (hint) writeError(`error: ${hint}\n`);
    else if (err instanceof ConfigError) {
      writeError(err.message.startsWith("Usage:") ? `${err.message}\n` : `error: ${err.message}\n`);
    } else writeError(`error: ${(err as Error)?.message ?? err}\n`);
    return err instanceof ConfigError && err.message.startsWith("Usage:") ? 0 : 1;
  } finally {
    if (app && !cli.app) await app.close().catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exit(await runControlCli(Deno.args));
}
