/**
 * Beat inside another program: load a schedule module, and start a beat for an app the way
 * the CLIs do (`beat.ts`, and `worker.ts -B`, which runs a beat alongside the worker).
 *
 * @module
 */

import type { App } from "../app.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Beat, type BeatOptions } from "./beat.ts";
import type { BeatScheduleInput } from "./entry.ts";
import { createBeatStore } from "./store.ts";

/** What a schedule module exports. */
export interface ScheduleModule {
  /** The entries (Celery's `beat_schedule` form, or a list). */
  beatSchedule?: BeatScheduleInput;
  /** IANA zone for crontabs that name none. */
  beatTimezone?: string;
}

/** The URL to import for a module path or URL, relative paths against the working directory. */
export function moduleUrl(specifier: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) return specifier;
  if (specifier.startsWith("/")) return new URL(`file://${specifier}`).href;
  return new URL(specifier, `file://${Deno.cwd()}/`).href;
}

/**
 * Imports a module and returns its `beatSchedule` and `beatTimezone` exports.
 *
 * @throws {ConfigError} When the module cannot be imported.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadScheduleModule } from "./embed.ts";
 * const mod = await loadScheduleModule(new URL("../../tests/beat/fixture_app.ts", import.meta.url).href);
 * assert.deepEqual(Object.keys(mod.beatSchedule ?? {}), ["add-every-second"]);
 * ```
 */
export async function loadScheduleModule(specifier: string): Promise<ScheduleModule> {
  let mod;
  try {
    mod = await import(moduleUrl(specifier));
  } catch (err) {
    throw new ConfigError(
      `Cannot load beat schedule from "${specifier}": ${(err as Error)?.message ?? err}`,
      { cause: err },
    );
  }
  return { beatSchedule: mod.beatSchedule, beatTimezone: mod.beatTimezone };
}

/** Options of {@linkcode startBeat}. */
export interface StartBeatOptions extends Omit<BeatOptions, "schedule" | "store"> {
  /** Module exporting `beatSchedule` (and `beatTimezone`), e.g. the app module. */
  scheduleModule: string;
  /**
   * Where state lives: a file path or `redis://…`. @default the broker's Redis when the broker
   * is Redis, in-process for `memory://`, else `celerybeat-schedule.json`
   */
  state?: string;
  /** Redis key prefix for state and lease. @default "celeriac.beat" */
  keyPrefix?: string;
  /** Logger. */
  logger?: Logger;
}

/**
 * Loads the schedule module and starts a {@linkcode Beat} on `app`. With a Redis broker the
 * beat is leased, so running it in every worker (`worker.ts -B`) is safe: one sends.
 *
 * @throws {ConfigError} When the module cannot be imported or the state is unusable.
 * @throws {TypeError} For a bad entry.
 *
 * @example
 * ```ts ignore
 * const beat = await startBeat(app, { scheduleModule: "./tasks.ts", logger });
 * // …
 * await beat.stop();
 * ```
 */
export async function startBeat(app: App, options: StartBeatOptions): Promise<Beat> {
  const { scheduleModule, state, keyPrefix, ...beatOptions } = options;
  const mod = await loadScheduleModule(scheduleModule);
  const broker = app.brokerSpec;
  const stateSpec = state ??
    (typeof broker === "string" && /^rediss?:\/\//i.test(broker) ? broker : undefined);
  const beat = new Beat(app, {
    ...beatOptions,
    timezone: beatOptions.timezone ?? mod.beatTimezone,
    schedule: mod.beatSchedule,
    store: stateSpec === undefined ? undefined : await createBeatStore(stateSpec, { keyPrefix }),
  });
  try {
    await beat.start();
  } catch (err) {
    await beat.stop().catch(() => {}); // closes a store that opened
    throw err;
  }
  return beat;
}
