/**
 * `deno task demo` (the README's first command) on a fresh machine: the quick start runs
 * on the embedded store, creating `./.celeriac/celeriac.db` in its working directory (here a
 * fresh temporary directory, so nothing is left behind).
 */

import assert from "node:assert/strict";
import { REPO_ROOT } from "../helpers/python_celery.ts";
import { runChild } from "../helpers/process.ts";

Deno.test("deno task demo: the quick start runs on a fresh embedded store and prints its results", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  assert.equal(config.tasks.demo, "deno run -A examples/quickstart.ts");
  const dir = await Deno.makeTempDir({ prefix: "celeriac-demo-" });
  try {
    for (const round of [1, 2]) {
      const run = await runChild(Deno.execPath(), {
        args: ["run", "-A", `${REPO_ROOT}/examples/quickstart.ts`],
        cwd: dir,
        env: { NO_COLOR: "1" },
        timeoutMs: 60_000,
        label: `demo ${round}`,
      });
      assert.equal(run.code, 0, run.stderr);
      const out = run.stdout;
      assert.match(out, /^broker and results: sqlite:\/\/\.\/\.celeriac\/celeriac\.db/m);
      assert.match(out, /^tasks\.add\(2, 3\) = 5$/m);
      assert.match(out, /^20 x tasks\.slow_square .* = \[0, 1, 4, 9, .*, 361\] in \d+ ms$/m);
      assert.match(
        out,
        /^tasks\.fail raised Error: this task fails on purpose \(state FAILURE\)$/m,
      );
      assert.match(out, /^done$/m);
      assert.ok((await Deno.stat(`${dir}/.celeriac/celeriac.db`)).isFile, `round ${round}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
