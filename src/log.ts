/**
 * A small leveled logger with Celery's line format:
 * `[2026-11-23 08:00:00,123: INFO/MainProcess] Task tasks.add[…] succeeded in 0.001s: 5`.
 *
 * @module
 */

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warning", "error", "critical"] as const;
/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Where log lines go; `write` gets one formatted line without newline. */
export interface LogSink {
  /** Writes one line. */
  (line: string, level: LogLevel): void;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

/** Formats a local time as Celery does: `2026-11-23 08:00:00,123`. */
export function formatLogTime(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${
    pad(d.getMinutes())
  }:${pad(d.getSeconds())},${pad(d.getMilliseconds(), 3)}`;
}

/**
 * A logger. Lines below `level` are dropped.
 *
 * @example Collect lines in a test
 * ```ts
 * import assert from "node:assert/strict";
 * import { Logger } from "./log.ts";
 * const lines: string[] = [];
 * const log = new Logger("info", (line) => lines.push(line));
 * log.debug("hidden");
 * log.info("shown");
 * assert.equal(lines.length, 1);
 * assert.match(lines[0]!, /INFO\/MainProcess\] shown$/);
 * ```
 */
export class Logger {
  #min: number;
  #sink: LogSink;

  /**
   * @param level The lowest level written. @default "info"
   * @param sink Where lines go. @default stderr
   * @throws {RangeError} For an unknown level.
   */
  constructor(level: LogLevel | string = "info", sink?: LogSink) {
    const min = LOG_LEVELS.indexOf(level.toLowerCase() as LogLevel);
    if (min < 0) {
      throw new RangeError(`Cannot use log level "${level}": use one of ${LOG_LEVELS.join(", ")}`);
    }
    this.#min = min;
    this.#sink = sink ?? ((line) => console.error(line));
  }

  /** Whether lines of this level are written. */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= this.#min;
  }

  #write(level: LogLevel, message: string): void {
    if (!this.enabled(level)) return;
    this.#sink(
      `[${formatLogTime(new Date())}: ${level.toUpperCase()}/MainProcess] ${message}`,
      level,
    );
  }

  /** Debug line. */
  debug(message: string): void {
    this.#write("debug", message);
  }
  /** Info line. */
  info(message: string): void {
    this.#write("info", message);
  }
  /** Warning line. */
  warning(message: string): void {
    this.#write("warning", message);
  }
  /** Error line. */
  error(message: string): void {
    this.#write("error", message);
  }
  /** Critical line. */
  critical(message: string): void {
    this.#write("critical", message);
  }
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger: Logger = new Logger("critical", () => {});
