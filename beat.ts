/**
 * The beat command line: sends periodic tasks on schedule.
 *
 * ```sh
 * deno run -A beat.ts --app ./tasks.ts --broker redis://127.0.0.1:6379/0 \
 *   [--schedule ./schedule.ts] --loglevel info
 * ```
 *
 * The app module exports the app (as `app` or default) and may export `beatSchedule`
 * (Celery's `beat_schedule` form: a record of entries) and `beatTimezone`; `--schedule` names
 * another module exporting them. With a Redis broker the state and the lease live in Redis,
 * so several beats may run (one sends, another takes over when it dies); otherwise the state
 * is the JSON file `celerybeat-schedule.json` and only one beat may run. See docs/beat.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { App } from "./src/app.ts";
import { Beat, type BeatOptions } from "./src/beat/beat.ts";
import { startBeat } from "./src/beat/embed.ts";
import { describeSchedule } from "./src/beat/schedule.ts";
import { EMBEDDED_DEFAULT_URL, redactUrl } from "./src/brokers/mod.ts";
import { ConfigError } from "./src/errors.ts";
import { hostName } from "./src/host.ts";
import { LOG_LEVELS, Logger, type LogLevel } from "./src/log.ts";
import { permissionHint } from "./src/permissions.ts";
import { loadApp, VERSION } from "./worker.ts";

export { Beat, type BeatCounters, type BeatOptions } from "./src/beat/beat.ts";
export {
  loadScheduleModule,
  type ScheduleModule,
  startBeat,
  type StartBeatOptions,
} from "./src/beat/embed.ts";

const USAGE = `Usage: deno run -A beat.ts --app <module> [options]

Options:
  -A, --app <module>        module exporting the app (as "app" or default), and
                            optionally beatSchedule and beatTimezone          (required)
  -b, --broker <url>        broker URL, overrides the app's; an app without a broker
                            uses the embedded ${EMBEDDED_DEFAULT_URL}
      --schedule <module>   module exporting beatSchedule (and beatTimezone), instead of
                            the app module's
  -s, --state <path|url>    where run state lives: a JSON file, or redis://host:port/db
                            (default: the broker's Redis, else celerybeat-schedule.json)
      --key-prefix <p>      Redis keys <p>.state and <p>.lease (default celeriac.beat)
      --timezone <zone>     IANA zone for crontabs that name none (default UTC)
      --lease-ttl <s>       seconds a leader's lease lives (Redis; default 30)
      --max-interval <s>    longest sleep between checks in seconds (default 300)
  -n, --hostname <name>     name in logs, %h is the host name (default beat@%h)
  -l, --loglevel <level>    debug, info, warning, error, critical (default info)
  -h, --help                show this help`;

/** Parsed beat command line. */
export interface BeatCliOptions {
  /** App module. */
  app: string;
  /** Broker override. */
  broker?: string;
  /** Schedule module. */
  schedule?: string;
  /** State spec (file path or Redis URL). */
  state?: string;
  /** Redis key prefix. */
  keyPrefix?: string;
  /** Beat options from flags. */
  beat: BeatOptions;
}

function seconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isFinite(n) && n > 0)) {
    throw new ConfigError(`Cannot use --${flag} "${value}": it must be a number of seconds > 0`);
  }
  return n * 1000;
}

/**
 * Parses the beat's arguments.
 *
 * @throws {ConfigError} On a missing `--app` or a bad value; the message names the flag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseBeatArgs } from "./beat.ts";
 * const opts = parseBeatArgs(["--app", "./tasks.ts", "--lease-ttl", "5", "-l", "debug"]);
 * assert.equal(opts.app, "./tasks.ts");
 * assert.equal(opts.beat.leaseTtlMs, 5000);
 * assert.equal(opts.beat.logLevel, "debug");
 * ```
 */
export function parseBeatArgs(args: string[]): BeatCliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        app: { type: "string", short: "A" },
        broker: { type: "string", short: "b" },
        schedule: { type: "string" },
        state: { type: "string", short: "s" },
        "key-prefix": { type: "string" },
        timezone: { type: "string" },
        "lease-ttl": { type: "string" },
        "max-interval": { type: "string" },
        hostname: { type: "string", short: "n" },
        loglevel: { type: "string", short: "l" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError(`Cannot parse arguments: ${(err as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new ConfigError(USAGE);
  if (!values.app) throw new ConfigError(`Cannot start beat: --app is required\n\n${USAGE}`);
  const beat: BeatOptions = { handleSignals: true };
  if (values.timezone) beat.timezone = values.timezone;
  beat.leaseTtlMs = seconds("lease-ttl", values["lease-ttl"]);
  beat.maxIntervalMs = seconds("max-interval", values["max-interval"]);
  if (values.hostname) beat.name = values.hostname.replaceAll("%h", hostName());
  if (values.loglevel) {
    const level = values.loglevel.toLowerCase();
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new ConfigError(
        `Cannot use --loglevel "${values.loglevel}": use one of ${LOG_LEVELS.join(", ")}`,
      );
    }
    beat.logLevel = level as LogLevel;
  }
  return {
    app: values.app,
    broker: values.broker,
    schedule: values.schedule,
    state: values.state,
    keyPrefix: values["key-prefix"],
    beat,
  };
}

/** The start-up banner. */
export function beatBanner(app: App, beat: Beat): string {
  const broker = app.brokerSpec;
  return [
    `celeriac beat v${VERSION} (Deno ${Deno.version.deno}) is starting.`,
    `Configuration ->`,
    `    . broker -> ${typeof broker === "string" ? redactUrl(broker) : broker.displayUrl}`,
    `    . state -> ${beat.store?.description ?? "(default)"}${
      beat.store?.highlyAvailable ? " (leased: several beats may run)" : ""
    }`,
    `    . timezone -> ${beat.timezone}`,
    `[entries]`,
    ...(beat.entries.length
      ? beat.entries.map((e) =>
        `  . ${e.name}: ${e.task} ${describeSchedule(e.schedule, beat.timezone)}`
      )
      : ["  (none)"]),
    ``,
  ].join("\n");
}

/** Options of {@linkcode runBeatCli}. */
export interface RunBeatCliOptions {
  /** The app, imported by the caller (then `--app` only names it). */
  app?: App;
}

/**
 * Runs the beat CLI until it is stopped (SIGINT/SIGTERM); returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runBeatCli(Deno.args));
 * ```
 */
export async function runBeatCli(args: string[], cli: RunBeatCliOptions = {}): Promise<number> {
  let app: App | undefined;
  let beat: Beat | undefined;
  try {
    const options = parseBeatArgs(args);
    app = cli.app ?? await loadApp(options.app);
    // As the worker CLI: an app that set no broker uses the embedded store.
    const broker = options.broker ?? (app.brokerDefaulted ? EMBEDDED_DEFAULT_URL : undefined);
    if (broker !== undefined) app.configure({ broker });
    beat = await startBeat(app, {
      ...options.beat,
      scheduleModule: options.schedule ?? options.app,
      state: options.state,
      keyPrefix: options.keyPrefix,
      logger: new Logger(options.beat.logLevel ?? "info"),
    });
    console.log(beatBanner(app, beat));
    await beat.done;
    return 0;
  } catch (err) {
    const hint = permissionHint(err);
    if (hint) console.error(`error: ${hint}`);
    else if (err instanceof ConfigError && err.message.startsWith("Usage:")) {
      console.error(err.message);
    } else console.error(`error: ${(err as Error)?.message ?? err}`);
    return err instanceof ConfigError && err.message.startsWith("Usage:") ? 0 : 1;
  } finally {
    await beat?.stop().catch(() => {});
    await app?.close().catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exit(await runBeatCli(Deno.args));
}
