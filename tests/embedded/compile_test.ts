/**
 * The standalone-binary pattern (`deno task compile`, docs/compile.md): `examples/main.ts`
 * type-checks with its whole graph (what `deno compile` checks before it downloads its
 * runtime), and runs as a worker with exactly the permissions the task bakes in (plus read
 * access to the sources, which a compiled binary carries inside itself), on the embedded
 * store in its working directory, without `--app`.
 */

import assert from "node:assert/strict";
import { createApp } from "../../mod.ts";
import { REPO_ROOT } from "../helpers/python_celery.ts";
import { runChild } from "../helpers/process.ts";

/** The `deno compile` flags of the `compile` task, and its entry point. */
async function compileTask(): Promise<{ flags: string[]; output: string; entry: string }> {
  const config = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  const words = String(config.tasks.compile).split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "compile"]);
  const o = words.indexOf("-o");
  assert.ok(o > 0, "the task names its output with -o");
  return {
    // Permission flags only: `--include` is compile-only (it embeds the thread entry script).
    flags: words.slice(2).filter((w, i) =>
      w.startsWith("--") && i + 2 !== o && !w.startsWith("--include")
    ),
    output: words[o + 1]!,
    entry: words.at(-1)!,
  };
}

Deno.test("compile: the task's entry point type-checks (everything deno compile does before its download)", async () => {
  const { entry, output, flags } = await compileTask();
  assert.equal(entry, "examples/main.ts");
  assert.equal(output, "dist/celeriac-worker");
  assert.ok(flags.includes("--no-prompt"));
  assert.ok(!flags.some((f) => f === "-A" || f === "--allow-all"), "scoped permissions only");
  const run = await runChild(Deno.execPath(), {
    args: ["check", entry],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    timeoutMs: 120_000,
    label: "deno check",
  });
  assert.equal(run.code, 0, run.stderr);
});

Deno.test("compile: examples/main.ts runs as a burst worker with the baked-in permissions, no --app", async () => {
  const { flags, entry } = await compileTask();
  const dir = await Deno.makeTempDir({ prefix: "celeriac-compile-" });
  const app = createApp({ broker: `sqlite://${dir}/.celeriac/celeriac.db` });
  try {
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push(await app.sendTask<number>("tasks.add", [i, 1]));
    // A binary reads its modules from inside itself; `deno run` reads them from the repo.
    const permissions = flags.map((f) => f.startsWith("--allow-read=") ? `${f},${REPO_ROOT}` : f);
    const run = await runChild(Deno.execPath(), {
      args: ["run", ...permissions, `${REPO_ROOT}/${entry}`, "--burst", "-n", "bin@test"],
      cwd: dir,
      env: { NO_COLOR: "1" },
      timeoutMs: 60_000,
      label: "examples/main.ts",
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /\.> app:\s+\(compiled in\)$/m);
    assert.match(run.stdout, /transport:\s+sqlite:\/\/\.\/\.celeriac\/celeriac\.db$/m);
    assert.match(run.stdout, /^burst: ran 3 task\(s\) \(tasks\.add: 3\), rejected 0$/m);
    assert.doesNotMatch(run.stderr, /Missing permission|NotCapable|PermissionDenied/);
    for (const [i, result] of sent.entries()) assert.equal(await result.get({ timeout: 1 }), i + 1);
  } finally {
    await app.close();
    await Deno.remove(dir, { recursive: true });
  }
});
