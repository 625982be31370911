/**
 * `deno task test`: runs every test (unit, doc examples, Redis and Python interop) and ends
 * with one line `N passed, N failed`, as CI expects. Extra arguments go to `deno test`
 * (e.g. `deno task test --filter redis`).
 *
 * @module
 */

const args = [
  "test",
  "-A",
  "--doc",
  ...Deno.args,
  ...(Deno.args.some((a) => !a.startsWith("-"))
    ? []
    : ["tests/", "src/", "mod.ts", "worker.ts", "events.ts", "control.ts", "beat.ts"]),
];
const child = new Deno.Command(Deno.execPath(), {
  args,
  stdout: "piped",
  stderr: "inherit",
}).spawn();

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
}
const status = await child.status;
// deno test ends with e.g. "ok | 12 passed (3 steps) | 0 failed (1s)".
// deno-lint-ignore no-control-regex
const plain = tail.replace(/\x1b\[[0-9;]*m/g, "");
const summary = [...plain.matchAll(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/g)].at(-1);
const passed = summary ? Number(summary[1]) : 0;
const failed = summary ? Number(summary[2]) : status.success ? 0 : 1;
console.log(`\n${passed} passed, ${failed} failed`);
Deno.exit(status.success && failed === 0 ? 0 : 1);
