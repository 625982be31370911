/**
 * The built-in remote-control commands, by name and by alias.
 *
 * @module
 */

import { CONTROL_COMMANDS } from "./control.ts";
import { INSPECT_COMMANDS } from "./inspect.ts";
import type { CommandSpec } from "./types.ts";

export * from "./types.ts";
export { CONTROL_COMMANDS, signalNumber } from "./control.ts";
export { brokerInfo, INSPECT_COMMANDS, requestInfo, rusage } from "./inspect.ts";

/**
 * Every built-in command, under its name and its alias (`dump_active` ⇒ `active`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BUILTIN_COMMANDS } from "./mod.ts";
 * assert.equal(BUILTIN_COMMANDS.get("dump_tasks")?.name, "registered");
 * assert.equal(BUILTIN_COMMANDS.get("rate_limit")?.kind, "control");
 * ```
 */
export const BUILTIN_COMMANDS: ReadonlyMap<string, CommandSpec> = commandMap([
  ...INSPECT_COMMANDS,
  ...CONTROL_COMMANDS,
]);

/**
 * A name-and-alias map of commands.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { commandMap, defineCommand } from "./mod.ts";
 * const map = commandMap([defineCommand("a", () => 1, { alias: "b" })]);
 * assert.equal(map.get("b")?.name, "a");
 * ```
 */
export function commandMap(specs: Iterable<CommandSpec>): Map<string, CommandSpec> {
  const map = new Map<string, CommandSpec>();
  for (const spec of specs) {
    map.set(spec.name, spec);
    if (spec.alias) map.set(spec.alias, spec);
  }
  return map;
}
