/**
 * The worker command line, in process: `parseWorkerArgs` (every flag and every error) and
 * `loadApp` (fixture modules under tests/fixtures/), plus the banner.
 */

import assert from "node:assert/strict";
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { App } from "../../src/app.ts";
import { ConfigError } from "../../src/errors.ts";
import { hostName } from "../../src/host.ts";
import { Worker } from "../../src/worker/worker.ts";
import { banner, loadApp, parseWorkerArgs, VERSION } from "../../worker.ts";

const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url);

/** The ConfigError `fn` throws. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("parseWorkerArgs: --app only gives the defaults (signals handled)", () => {
  const opts = parseWorkerArgs(["--app", "./tasks.ts"]);
  assert.equal(opts.app, "./tasks.ts");
  assert.equal(opts.broker, undefined);
  assert.equal(opts.backend, undefined);
  assert.deepEqual(opts.worker, { handleSignals: true });
});

Deno.test("parseWorkerArgs: every long flag", () => {
  const opts = parseWorkerArgs([
    "--app",
    "./tasks.ts",
    "--broker",
    "redis://127.0.0.1:6379/0",
    "--backend",
    "redis://127.0.0.1:6379/1",
    "--queues",
    "celery,urgent",
    "--concurrency",
    "100",
    "--hostname",
    "w1@%h",
    "--loglevel",
    "WARNING",
    "--acks-early",
    "--shutdown-timeout",
    "2.5",
    "--burst",
  ]);
  assert.equal(opts.app, "./tasks.ts");
  assert.equal(opts.broker, "redis://127.0.0.1:6379/0");
  assert.equal(opts.backend, "redis://127.0.0.1:6379/1");
  assert.deepEqual(opts.worker, {
    handleSignals: true,
    queues: ["celery", "urgent"],
    concurrency: 100,
    name: `w1@${hostName()}`,
    logLevel: "warning",
    acksLate: false,
    shutdownTimeout: 2.5,
    burst: true,
  });
});

Deno.test("parseWorkerArgs: short flags and --flag=value", () => {
  const opts = parseWorkerArgs([
    "-A",
    "./t.ts",
    "-b",
    "memory://x",
    "-Q",
    " a , b,,c ",
    "-c",
    "3",
    "-n",
    "node-%h-%h",
    "-l",
    "debug",
  ]);
  assert.equal(opts.app, "./t.ts");
  assert.equal(opts.broker, "memory://x");
  assert.deepEqual(opts.worker.queues, ["a", "b", "c"], "names are trimmed, empty ones dropped");
  assert.equal(opts.worker.concurrency, 3);
  assert.equal(opts.worker.name, `node-${hostName()}-${hostName()}`, "every %h is replaced");
  assert.equal(opts.worker.logLevel, "debug");

  const eq = parseWorkerArgs(["--app=./t.ts", "--concurrency=7", "--shutdown-timeout=0"]);
  assert.equal(eq.app, "./t.ts");
  assert.equal(eq.worker.concurrency, 7);
  assert.equal(eq.worker.shutdownTimeout, 0, "0 s is allowed (go cold at once)");
});

Deno.test("parseWorkerArgs: a bad --concurrency names the flag and the value", () => {
  for (const bad of ["0", "-2", "1.5", "abc", "", "NaN", "Infinity"]) {
    const err = configError(() => parseWorkerArgs(["--app", "t.ts", `--concurrency=${bad}`]));
    assert.match(err.message, /--concurrency/, `value ${JSON.stringify(bad)}`);
    assert.ok(err.message.includes(`"${bad}"`), err.message);
    assert.match(err.message, /positive integer/);
  }
});

Deno.test("parseWorkerArgs: a flag value that looks like a flag is refused, naming the flag", () => {
  const err = configError(() => parseWorkerArgs(["--app", "t.ts", "-c", "-2"]));
  assert.match(err.message, /^Cannot parse arguments: .*'-c'/);
});

Deno.test("parseWorkerArgs: a bad --loglevel names the flag and lists the levels", () => {
  const err = configError(() => parseWorkerArgs(["--app", "t.ts", "--loglevel", "verbose"]));
  assert.match(err.message, /--loglevel "verbose"/);
  assert.match(err.message, /debug, info, warning, error, critical/);
  configError(() => parseWorkerArgs(["--app", "t.ts", "-l", "trace"]));
});

Deno.test("parseWorkerArgs: a bad --shutdown-timeout names the flag", () => {
  for (const bad of ["-1", "soon", "NaN"]) {
    const err = configError(() => parseWorkerArgs(["--app", "t.ts", `--shutdown-timeout=${bad}`]));
    assert.match(err.message, /--shutdown-timeout/);
    assert.ok(err.message.includes(`"${bad}"`), err.message);
  }
});

Deno.test("parseWorkerArgs: a missing --app names the flag and shows the usage", () => {
  for (const args of [[], ["-c", "4"], ["--app", ""]]) {
    const err = configError(() => parseWorkerArgs(args));
    assert.match(err.message, /--app is required/, JSON.stringify(args));
    assert.match(err.message, /Usage: /);
  }
  assert.equal(parseWorkerArgs(["-c", "4"], false).app, "", "not required when told so");
});

Deno.test("parseWorkerArgs: unknown flags and missing values are ConfigErrors with the usage", () => {
  let err = configError(() => parseWorkerArgs(["--app", "t.ts", "--no-such-flag"]));
  assert.match(err.message, /^Cannot parse arguments: .*--no-such-flag/);
  assert.match(err.message, /Usage: /);
  err = configError(() => parseWorkerArgs(["--app", "t.ts", "--concurrency"]));
  assert.match(err.message, /^Cannot parse arguments: .*--concurrency/);
  err = configError(() => parseWorkerArgs(["--app", "t.ts", "stray"]));
  assert.match(err.message, /^Cannot parse arguments: .*stray/);
});

Deno.test("parseWorkerArgs: --help is a ConfigError holding only the usage", () => {
  for (const flag of ["--help", "-h"]) {
    const err = configError(() => parseWorkerArgs([flag]));
    assert.match(err.message, /^Usage: deno run -A worker\.ts --app <module>/);
    for (
      const f of [
        "--app",
        "--broker",
        "--backend",
        "--queues",
        "--concurrency",
        "--hostname",
        "--loglevel",
        "--acks-early",
        "--shutdown-timeout",
        "--burst",
      ]
    ) {
      assert.ok(err.message.includes(f), `usage lists ${f}`);
    }
  }
});

Deno.test("loadApp: the app exported as `app` or as default, by path or URL", async () => {
  const named = await loadApp(fixture("cli_app_named.ts").href);
  assert.ok(named instanceof App);
  assert.ok(named.tasks.has("fixture.named"));

  const byAbsolutePath = await loadApp(fromFileUrl(fixture("cli_app_default.ts")));
  assert.ok(byAbsolutePath.tasks.has("fixture.default"));

  const rel = relative(Deno.cwd(), fromFileUrl(fixture("cli_app_named.ts")));
  const byRelativePath = await loadApp(rel.startsWith(".") ? rel : `./${rel}`);
  assert.equal(byRelativePath, named, "the same module, the same app");
});

Deno.test("loadApp: a module exporting no app ⇒ ConfigError naming the module", async () => {
  for (const name of ["cli_no_app.ts", "cli_not_an_app.ts"]) {
    const specifier = fixture(name).href;
    const err = await loadApp(specifier).then(() => assert.fail("should reject"), (e) => e);
    assert.ok(err instanceof ConfigError, `${name}: ${err}`);
    assert.ok(err.message.includes(specifier), err.message);
    assert.match(err.message, /must export an app as "app" or default/);
  }
});

Deno.test("loadApp: a module that fails to import ⇒ ConfigError with the cause", async () => {
  for (const name of ["cli_throws.ts", "no_such_module.ts"]) {
    const err = await loadApp(fixture(name).href).then(
      () => assert.fail("should reject"),
      (e) => e,
    );
    assert.ok(err instanceof ConfigError, `${name}: ${err}`);
    assert.match(err.message, /^Cannot load app from /);
    assert.ok(err.cause, "the import error is kept as the cause");
  }
});

Deno.test("banner: node, transport, results, concurrency, queues and sorted tasks", async () => {
  const app = await loadApp(fixture("cli_app_named.ts").href);
  const worker = new Worker(app, { name: "w1@test", concurrency: 8, queues: ["celery", "urgent"] });
  const text = banner(app, worker, "./tasks.ts");
  assert.ok(text.startsWith(` -------------- w1@test v${VERSION} (Deno `));
  assert.match(text, /\.> app: +\.\/tasks\.ts/);
  assert.match(text, /\.> transport: +memory:\/\/cli-fixture-named/);
  assert.match(text, /\.> results: +memory:\/\/cli-fixture-named/);
  assert.match(text, /\.> concurrency: 8 \(async pool\)/);
  assert.match(text, /\.> celery +exchange=celery\(direct\) key=celery/);
  assert.match(text, /\.> urgent +exchange=urgent\(direct\) key=urgent/);
  assert.match(text, /\[tasks\]\n {2}\. fixture\.named\n/);

  const redis = new App({ broker: "redis://:secret@h:6379/0", backend: null });
  const redisText = banner(redis, new Worker(redis), "x.ts");
  assert.match(redisText, /transport: +redis:\/\/:\*\*@h:6379\/0/, "the password is hidden");
  assert.ok(!redisText.includes("secret"));
  assert.match(redisText, /results: +disabled/);
  assert.match(redisText, /\(none registered\)/);
});
