/**
 * The worker's V8 flags (docs/performance.md, "Young generation"): `deno task worker`,
 * `deno task compile`, the README's worker command and the bench's worker processes all
 * run with the same `--v8-flags`, and those flags do bound V8's young generation.
 */

import assert from "node:assert/strict";
import { v8FlagsIn, workerTaskV8Flags } from "../../bench/process.ts";
import { runChild } from "../helpers/process.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test("v8 flags: deno task worker, deno task compile, the README and the bench agree", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const flags = v8FlagsIn(config.tasks.worker);
  assert.equal(flags, "--max-semi-space-size=2");
  assert.equal(v8FlagsIn(config.tasks.compile), flags);
  assert.equal(workerTaskV8Flags(), flags);
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  // The "Run a worker against Redis" command, joined across its continuation lines.
  const command = /```sh\n(deno run [^`]*?worker\.ts --app[^`]*?)\n```/.exec(readme)?.[1];
  assert.ok(command, "README has a deno run … worker.ts --app command");
  assert.equal(v8FlagsIn(command.replace(/\\\n\s*/g, " ")), flags);
});

Deno.test("v8 flags: the worker's flags keep V8's new space at a few MiB under allocation churn", async () => {
  const churn = `
    import v8 from "node:v8";
    let keep = [];
    for (let i = 0; i < 2e6; i++) { keep.push({ i }); if (keep.length > 50000) keep = []; }
    const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    console.log(space.space_size);
  `;
  const newSpace = async (flags: string[]) => {
    const run = await runChild(Deno.execPath(), {
      args: ["eval", ...flags, churn],
      env: { NO_COLOR: "1" },
      timeoutMs: 60_000,
      label: "deno eval",
    });
    assert.equal(run.code, 0, run.stderr);
    return Number(run.stdout.trim()) / 2 ** 20;
  };
  const bounded = await newSpace([`--v8-flags=${workerTaskV8Flags()}`]);
  const unbounded = await newSpace([]);
  // Two semi-spaces of at most 2 MiB (V8 may round up a little), where V8's default grows
  // the new space to 16 MiB or more under the same churn.
  assert.ok(bounded <= 5, `new space with the worker's flags: ${bounded} MiB`);
  assert.ok(unbounded >= 8, `new space without: ${unbounded} MiB`);
});
