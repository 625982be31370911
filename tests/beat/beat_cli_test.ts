/** The beat CLI's flags and start-up errors (no server needed). */
import assert from "node:assert/strict";
import { spawnChild } from "../helpers/process.ts";
import { REPO_ROOT } from "../helpers/python_celery.ts";

const APP = "tests/beat/fixture_app.ts";

Deno.test("beat CLI: --help, a missing --app and bad flags", async () => {
  const run = async (args: string[]) => {
    const child = spawnChild(Deno.execPath(), {
      args: ["run", "-A", `${REPO_ROOT}/beat.ts`, ...args],
      cwd: REPO_ROOT,
      env: { NO_COLOR: "1" },
      label: "beat cli",
    });
    return await child.waitForExit(20_000);
  };
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stderr, /Usage: deno run -A beat\.ts --app <module>/);
  const noApp = await run([]);
  assert.equal(noApp.code, 1);
  assert.match(noApp.stderr, /error: Cannot start beat: --app is required/);
  const badTtl = await run(["--app", APP, "--lease-ttl", "0"]);
  assert.equal(badTtl.code, 1);
  assert.match(badTtl.stderr, /Cannot use --lease-ttl "0"/);
  const badZone = await run(["--app", APP, "--timezone", "Nowhere/City"]);
  assert.equal(badZone.code, 1);
  assert.match(badZone.stderr, /Cannot use time zone "Nowhere\/City"/);
  const badSchedule = await run(["--app", APP, "--schedule", "./no/such/module.ts"]);
  assert.equal(badSchedule.code, 1);
  assert.match(badSchedule.stderr, /Cannot load beat schedule from "\.\/no\/such\/module\.ts"/);
});
