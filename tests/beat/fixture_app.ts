/**
 * App module for the beat CLI tests: an app (its broker comes from `--broker`) and a beat
 * schedule with one entry every second.
 *
 * @module
 */
import { createApp } from "../../src/app.ts";

/** The app. */
export const app = createApp({ broker: "memory://beat-fixture" });

/** One entry: `tasks.add(2, 3)` every second. */
export const beatSchedule = {
  "add-every-second": { task: "tasks.add", schedule: 1, args: [2, 3] },
};

/** Registered so that a worker with `-B` runs what its beat sends. */
export const add = app.task("tasks.add", (x: number, y: number) => x + y);
