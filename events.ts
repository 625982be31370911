/**
 * The events command line: watch Celery events from celeriac and Python workers alike.
 *
 * ```sh
 * deno run -A events.ts --broker redis://127.0.0.1:6379/0 --dump          # one line per event
 * deno run -A events.ts --broker redis://127.0.0.1:6379/0 --dump --json   # one JSON object per line
 * deno run -A events.ts --broker redis://127.0.0.1:6379/0 top             # live view
 * ```
 *
 * On start it asks every worker for a heartbeat (a remote-control `heartbeat` cast, as
 * `celery events` does), so Python workers show up at once. Workers send task events only
 * when started with `-E` (`worker.ts -E`, `celery worker -E`). Stop with Ctrl+C.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Broker } from "./src/brokers/broker.ts";
import { createBroker, EMBEDDED_DEFAULT_URL, redactUrl } from "./src/brokers/mod.ts";
import { ConfigError } from "./src/errors.ts";
import type { CeleryEvent } from "./src/events/event.ts";
import { formatEventLine, renderTop } from "./src/events/format.ts";
import { EventReceiver, wakeupWorkers } from "./src/events/receiver.ts";
import { State } from "./src/events/state.ts";
import { stringifyJson } from "./src/protocol/json.ts";
import { permissionHint } from "./src/permissions.ts";

export * from "./src/events/mod.ts";

const USAGE = `Usage: deno run -A events.ts [--dump | top] [options]

Commands:
  --dump, -d              print every event, one line each (the default when stdout is
                          not a terminal)
  top                     live view of workers, task states, recent tasks and throughput
                          (the default on a terminal)

Options:
  -b, --broker <url>      broker URL: redis://, amqp://, sqlite:// (memory:// only in
                          one process); default ${EMBEDDED_DEFAULT_URL}, as worker.ts
      --json              with --dump: one JSON object per line
      --refresh <s>       top: seconds between screen refreshes (default 1)
      --no-wakeup         do not ask workers for a heartbeat on start
  -h, --help              show this help`;

/** Parsed command line. */
export interface EventsCliOptions {
  /** `dump` or `top`. */
  mode: "dump" | "top";
  /** Broker URL. */
  broker: string;
  /** JSON lines for `dump`. */
  json: boolean;
  /** Seconds between `top` refreshes. */
  refresh: number;
  /** Send the `heartbeat` cast on start. */
  wakeup: boolean;
}

/**
 * Parses the events CLI's arguments. Without `--dump` or `top`, `top` is chosen when
 * `isTerminal`, else `dump`.
 *
 * @throws {ConfigError} On a bad flag or value; `--help` throws the usage text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseEventsArgs } from "./events.ts";
 * const opts = parseEventsArgs(["--broker", "redis://127.0.0.1:6379/0", "--dump", "--json"]);
 * assert.deepEqual([opts.mode, opts.json, opts.wakeup], ["dump", true, true]);
 * assert.equal(parseEventsArgs(["top"]).mode, "top");
 * ```
 */
export function parseEventsArgs(args: string[], isTerminal = false): EventsCliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        broker: { type: "string", short: "b" },
        dump: { type: "boolean", short: "d" },
        json: { type: "boolean" },
        refresh: { type: "string" },
        "no-wakeup": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new ConfigError(`Cannot parse arguments: ${(err as Error).message}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) throw new ConfigError(USAGE);
  const extra = positionals.filter((p) => p !== "top");
  if (extra.length) {
    throw new ConfigError(`Cannot run events command "${extra[0]}": use --dump or top\n\n${USAGE}`);
  }
  const top = positionals.includes("top");
  if (top && values.dump) throw new ConfigError("Cannot use --dump together with top");
  const refresh = values.refresh === undefined ? 1 : Number(values.refresh);
  if (!(refresh > 0) || !Number.isFinite(refresh)) {
    throw new ConfigError(`Cannot use --refresh "${values.refresh}": it must be > 0 seconds`);
  }
  return {
    mode: top ? "top" : values.dump ? "dump" : isTerminal ? "top" : "dump",
    broker: values.broker ?? EMBEDDED_DEFAULT_URL,
    json: values.json ?? false,
    refresh,
    wakeup: !values["no-wakeup"],
  };
}

/** Options of {@linkcode runEventsCli} (for embedding and tests). */
export interface RunEventsCliOptions {
  /** Use this broker instead of `--broker` (it is not closed). */
  broker?: Broker;
  /** Where output goes. @default stdout */
  write?: (text: string) => void;
  /** Stops the command. @default SIGINT/SIGTERM */
  signal?: AbortSignal;
  /** Whether output is a terminal (chooses the default mode). @default stdout's */
  isTerminal?: boolean;
  /** Terminal size for `top`. @default the console's, else 100×30 */
  size?: { columns: number; rows: number };
}

const encoder = new TextEncoder();

function writeStdout(text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
}

function consoleSize(): { columns: number; rows: number } {
  try {
    return Deno.consoleSize();
  } catch {
    return { columns: 100, rows: 30 };
  }
}

function stopSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const handlers: [Deno.Signal, () => void][] = [];
  for (const sig of ["SIGINT", "SIGTERM"] as Deno.Signal[]) {
    const handler = () => controller.abort();
    try {
      Deno.addSignalListener(sig, handler);
      handlers.push([sig, handler]);
    } catch {
      // Not supported on this platform.
    }
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
    },
  };
}

/**
 * Runs the events CLI until it is stopped (SIGINT/SIGTERM, or `options.signal`); returns
 * the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runEventsCli(Deno.args));
 * ```
 */
export async function runEventsCli(
  args: string[],
  cli: RunEventsCliOptions = {},
): Promise<number> {
  const write = cli.write ?? writeStdout;
  let broker: Broker | undefined;
  let receiver: EventReceiver | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let top = false;
  const stop = cli.signal ? { signal: cli.signal, dispose: () => {} } : stopSignal();
  try {
    const isTerminal = cli.isTerminal ?? (() => {
      try {
        return Deno.stdout.isTerminal();
      } catch {
        return false;
      }
    })();
    const options = parseEventsArgs(args, isTerminal);
    broker = cli.broker ?? await createBroker(options.broker);
    const source = cli.broker ? cli.broker.displayUrl : redactUrl(options.broker);
    if (!broker.subscribe || !broker.broadcast) {
      throw new ConfigError(
        `Cannot watch events on ${source}: this broker has no fanout; events need redis://, amqp:// or sqlite:// (or memory:// in one process)`,
      );
    }
    if (!cli.broker) await broker.connect();
    const state = new State();
    const names = new Map<string, string>();
    const onEvent = options.mode === "top"
      ? (event: CeleryEvent) => void state.event(event)
      : options.json
      ? (event: CeleryEvent) => write(stringifyJson(event) + "\n")
      : (event: CeleryEvent) => write(formatEventLine(event, names) + "\n");
    receiver = new EventReceiver(broker, { handlers: { "*": onEvent } });
    await receiver.start();
    if (options.wakeup) await wakeupWorkers(broker, receiver.clock).catch(() => {});
    if (options.mode === "dump") {
      console.error(`-> events: capturing from ${source} (Ctrl+C to stop)`);
    } else {
      top = true;
      write("\x1b[?1049h\x1b[?25l"); // alternate screen, hide cursor
      const draw = () => {
        const size = cli.size ?? consoleSize();
        const lines = renderTop(state, { now: Date.now() / 1000, source, ...size });
        // Cursor home, each line cleared to its end, then the rest of the screen cleared.
        write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join("\n")}\x1b[J`);
      };
      draw();
      timer = setInterval(draw, options.refresh * 1000);
    }
    if (!stop.signal.aborted) {
      await new Promise<void>((resolve) =>
        stop.signal.addEventListener("abort", () => resolve(), { once: true })
      );
    }
    return 0;
  } catch (err) {
    const hint = permissionHint(err);
    if (hint) console.error(`error: ${hint}`);
    else if (err instanceof ConfigError) {
      console.error(err.message.startsWith("Usage:") ? err.message : `error: ${err.message}`);
    } else console.error(`error: ${(err as Error)?.message ?? err}`);
    return err instanceof ConfigError && err.message.startsWith("Usage:") ? 0 : 1;
  } finally {
    clearInterval(timer);
    if (top) write("\x1b[?25h\x1b[?1049l"); // show cursor, leave the alternate screen
    stop.dispose();
    await receiver?.close().catch(() => {});
    if (broker && !cli.broker) await broker.close().catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exit(await runEventsCli(Deno.args));
}
