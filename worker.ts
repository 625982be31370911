/**
 * The worker command line:
 *
 * ```sh
 * deno run -A worker.ts --app ./tasks.ts --broker redis://127.0.0.1:6379/0 \
 *   --backend redis://127.0.0.1:6379/1 -Q celery,urgent -c 100 -n w1@%h --loglevel info
 * ```
 *
 * The app module exports the app as `app` (or as its default export). Scoped permissions
 * are enough: `--allow-net=<broker host:port>` (and the backend's), `--allow-read=<app dir>`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { App } from "./src/app.ts";
import { ConfigError } from "./src/errors.ts";
import { hostName } from "./src/host.ts";
import { LOG_LEVELS, Logger, type LogLevel } from "./src/log.ts";
import { permissionHint } from "./src/permissions.ts";
import { EMBEDDED_DEFAULT_URL, redactUrl } from "./src/brokers/mod.ts";
import { Worker, type WorkerOptions } from "./src/worker/worker.ts";
import type { Beat } from "./src/beat/beat.ts";
import { startBeat } from "./src/beat/embed.ts";

export { Worker, type WorkerOptions } from "./src/worker/worker.ts";

/** Version shown in the banner. */
export const VERSION = "0.1.0";

const USAGE = `Usage: deno run -A worker.ts --app <module> [options]

Options:
  -A, --app <module>        module exporting the app (as "app" or default)   (required)
  -b, --broker <url>        broker URL, overrides the app's (redis://host:port/db,
                            amqp://user:pass@host:port/vhost, sqlite://<file>,
                            memory://); an app without a broker uses the embedded
                            ${EMBEDDED_DEFAULT_URL}
      --backend <url>       result backend URL, overrides the app's (redis://…, rpc://
                            with an amqp:// broker)
  -Q, --queues <a,b>        queues to consume (default: the app's default queue)
  -c, --concurrency <n>     tasks run at once (default 10)
      --prefetch-multiplier <n>
                            keep up to concurrency × n messages reserved (default 1:
                            fetch only for free slots)
  -n, --hostname <name>     node name, %h is the host name (default celeriac@%h)
  -l, --loglevel <level>    debug, info, warning, error, critical (default info)
      --acks-early          ack on receipt (Celery's default) instead of after the task
      --shutdown-timeout <s> seconds a warm shutdown waits for running tasks (default 60)
      --burst               drain the queues, then exit 0
  -E, --events              send task events (worker events are always sent on fanout brokers)
  -B, --beat                also run beat: send the app module's beatSchedule (docs/beat.md)
      --without-control     serve no remote-control command (inspect, rate_limit, …)
      --control-allow <a,b> serve only these remote-control commands (e.g. ping,stats,
                            active,registered); others get an error reply (docs/control.md)
  -h, --help                show this help`;

/** Parsed command line. */
export interface WorkerCliOptions {
  /** Path or URL of the app module. */
  app: string;
  /** Broker override. */
  broker?: string;
  /** Backend override. */
  backend?: string;
  /** Worker options. */
  worker: WorkerOptions;
  /** Run a beat alongside the worker (`-B`). */
  beat?: boolean;
}

/**
 * Parses the worker's arguments. `appRequired: false` accepts a command line without
 * `--app` (a program that passes its app to {@linkcode runWorkerCli}).
 *
 * @throws {ConfigError} On a missing `--app` or a bad value; the message names the flag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWorkerArgs } from "./worker.ts";
 * const opts = parseWorkerArgs(["--app", "./tasks.ts", "-Q", "a,b", "-c", "100", "-n", "w1@%h"]);
 * assert.deepEqual(opts.worker.queues, ["a", "b"]);
 * assert.equal(opts.worker.concurrency, 100);
 * assert.match(opts.worker.name!, /^w1@/);
 * ```
 */
export function parseWorkerArgs(args: string[], appRequired = true): WorkerCliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        app: { type: "string", short: "A" },
        broker: { type: "string", short: "b" },
        backend: { type: "string" },
        queues: { type: "string", short: "Q" },
        concurrency: { type: "string", short: "c" },
        "prefetch-multiplier": { type: "string" },
        hostname: { type: "string", short: "n" },
        loglevel: { type: "string", short: "l" },
        "acks-early": { type: "boolean" },
        events: { type: "boolean", short: "E" },
        "shutdown-timeout": { type: "string" },
        burst: { type: "boolean" },
        beat: { type: "boolean", short: "B" },
        "without-control": { type: "boolean" },
        "control-allow": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError(`Cannot parse arguments: ${(err as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new ConfigError(USAGE);
  if (!values.app && appRequired) {
    throw new ConfigError(`Cannot start worker: --app is required\n\n${USAGE}`);
  }
  const worker: WorkerOptions = { handleSignals: true };
  if (values.queues) worker.queues = values.queues.split(",").map((q) => q.trim()).filter(Boolean);
  if (values.concurrency !== undefined) {
    const n = Number(values.concurrency);
    if (!Number.isInteger(n) || n < 1) {
      throw new ConfigError(
        `Cannot use --concurrency "${values.concurrency}": it must be a positive integer`,
      );
    }
    worker.concurrency = n;
  }
  if (values["prefetch-multiplier"] !== undefined) {
    const n = Number(values["prefetch-multiplier"]);
    if (!Number.isInteger(n) || n < 1) {
      throw new ConfigError(
        `Cannot use --prefetch-multiplier "${
          values["prefetch-multiplier"]
        }": it must be a positive integer`,
      );
    }
    worker.prefetchMultiplier = n;
  }
  if (values.hostname) worker.name = values.hostname.replaceAll("%h", hostName());
  if (values.loglevel) {
    const level = values.loglevel.toLowerCase();
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new ConfigError(
        `Cannot use --loglevel "${values.loglevel}": use one of ${LOG_LEVELS.join(", ")}`,
      );
    }
    worker.logLevel = level as LogLevel;
  }
  if (values["acks-early"]) worker.acksLate = false;
  if (values["shutdown-timeout"] !== undefined) {
    const s = Number(values["shutdown-timeout"]);
    if (!(s >= 0)) {
      throw new ConfigError(
        `Cannot use --shutdown-timeout "${values["shutdown-timeout"]}": it must be >= 0`,
      );
    }
    worker.shutdownTimeout = s;
  }
  if (values.burst) worker.burst = true;
  if (values.events) worker.sendEvents = true;
  if (values["without-control"] && values["control-allow"] !== undefined) {
    throw new ConfigError("Cannot use --without-control together with --control-allow");
  }
  if (values["without-control"]) worker.remoteControl = false;
  if (values["control-allow"] !== undefined) {
    worker.remoteControl = {
      allow: values["control-allow"].split(",").map((c) => c.trim()).filter(Boolean),
    };
  }
  return {
    app: values.app ?? "",
    broker: values.broker,
    backend: values.backend,
    worker,
    beat: values.beat,
  };
}

/**
 * Imports the app module and returns its app.
 *
 * @throws {ConfigError} When the module cannot be imported or exports no app.
 */
export async function loadApp(specifier: string): Promise<App> {
  let url: string;
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) url = specifier;
  else if (specifier.startsWith("/")) url = new URL(`file://${specifier}`).href;
  else url = new URL(specifier, `file://${Deno.cwd()}/`).href;
  let mod;
  try {
    mod = await import(url);
  } catch (err) {
    // A missing permission keeps its own one-line hint (see runWorkerCli).
    if (permissionHint(err)) throw err;
    throw new ConfigError(
      `Cannot load app from "${specifier}": ${(err as Error)?.message ?? err}`,
      { cause: err },
    );
  }
  const app = mod.app ?? mod.default;
  if (!(app instanceof App)) {
    throw new ConfigError(
      `Cannot load app from "${specifier}": the module must export an app as "app" or default`,
    );
  }
  return app;
}

function specText(spec: unknown): string {
  if (spec === null) return "disabled";
  if (typeof spec === "string") return redactUrl(spec);
  return (spec as { displayUrl?: string }).displayUrl ?? "custom";
}

/** The start-up banner: node, broker, backend, concurrency, queues and tasks. */
export function banner(app: App, worker: Worker, appSpecifier: string): string {
  const tasks = [...app.tasks.keys()].sort();
  return [
    ` -------------- ${worker.name} v${VERSION} (Deno ${Deno.version.deno})`,
    `--- ***** -----`,
    `-- ******* ---- [config]`,
    `- *** --- * --- .> app:         ${appSpecifier}`,
    `- ** ---------- .> transport:   ${specText(app.brokerSpec)}`,
    `- ** ---------- .> results:     ${specText(app.backendSpec)}`,
    `- *** --- * --- .> concurrency: ${worker.pool.size} (async pool)`,
    `-- ******* ----`,
    `--- ***** ----- [queues]`,
    ...worker.queues.map((q) =>
      ` -------------- .> ${q.padEnd(16)} exchange=${q}(direct) key=${q}`
    ),
    ``,
    `[tasks]`,
    ...(tasks.length ? tasks.map((t) => `  . ${t}`) : ["  (none registered)"]),
    ``,
  ].join("\n");
}

/** Options of {@linkcode runWorkerCli}. */
export interface RunWorkerCliOptions {
  /**
   * The app to run, imported statically by the caller (then `--app` is optional and, when
   * given, only names the app in the banner). This is the pattern for `deno compile`: a
   * compiled binary cannot import an app module that was not compiled in.
   */
  app?: App;
}

/**
 * Runs the worker CLI until it is stopped; returns the exit code. Without `--broker`, an
 * app that set no broker runs on the embedded store {@linkcode EMBEDDED_DEFAULT_URL}.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runWorkerCli(Deno.args));
 * ```
 *
 * @example A program with its tasks compiled in (see examples/main.ts)
 * ```ts ignore
 * import { app } from "./tasks.ts";
 * Deno.exit(await runWorkerCli(Deno.args, { app }));
 * ```
 */
export async function runWorkerCli(
  args: string[],
  cli: RunWorkerCliOptions = {},
): Promise<number> {
  let worker: Worker | undefined;
  let beat: Beat | undefined;
  let app: App | undefined;
  try {
    const options = parseWorkerArgs(args, !cli.app);
    app = cli.app ?? await loadApp(options.app);
    if (!options.app) options.app = "(compiled in)";
    const broker = options.broker ?? (app.brokerDefaulted ? EMBEDDED_DEFAULT_URL : undefined);
    if (broker !== undefined || options.backend !== undefined) {
      app.configure({ broker, backend: options.backend });
    }
    worker = new Worker(app, {
      ...options.worker,
      logger: new Logger(options.worker.logLevel ?? "info"),
    });
    console.log(banner(app, worker, options.app));
    await worker.start();
    if (options.beat) {
      const logger = new Logger(options.worker.logLevel ?? "info");
      beat = await startBeat(app, { scheduleModule: options.app, logger });
    }
    await worker.done;
    if (options.worker.burst) {
      const total = Object.entries(worker.counters.total).map(([n, c]) => `${n}: ${c}`).join(", ");
      console.log(
        `burst: ran ${worker.counters.processed} task(s)${
          total ? ` (${total})` : ""
        }, rejected ${worker.counters.rejected}`,
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
    await beat?.stop().catch(() => {});
    await worker?.stop().catch(() => {});
    await app?.close().catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exit(await runWorkerCli(Deno.args));
}
