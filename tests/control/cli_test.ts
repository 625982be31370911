/**
 * control.ts in-process on the memory broker: Celery's human output (compared with the
 * fixtures' captured `celery inspect`/`celery control` output), `--json`, exit codes, the
 * broker-side purge and move, and the worker CLI's remote-control flags.
 */

import assert from "node:assert/strict";
import { parseControlArgs, runControlCli } from "../../control.ts";
import type { App } from "../../src/app.ts";
import { ConfigError } from "../../src/errors.ts";
import { parseWorkerArgs } from "../../worker.ts";
import { harness } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

const FIXTURES = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);
// deno-lint-ignore no-explicit-any
const fixture = (name: string): any =>
  JSON.parse(Deno.readTextFileSync(new URL(`${name}.json`, FIXTURES)));

const NODE = "w1@fixtures";

async function run(
  app: App,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runControlCli(args, {
    app,
    write: (t) => out += t,
    writeError: (t) => err += t,
  });
  return { code, out, err };
}

Deno.test("control.ts: inspect and control print what celery inspect/control print", async () => {
  const h = await harness("control-cli");
  try {
    for (const name of ["tasks.add", "tasks.echo", "tasks.fail", "tasks.retry_once"]) {
      h.app.task(name, () => null);
    }
    h.app.task("tasks.sleep", () => null);
    h.app.task("tasks.xsum", () => null);
    const worker = h.worker({ name: NODE });
    await worker.start();
    const d = ["-d", NODE];
    assert.deepEqual(await run(h.app, "inspect", "ping", ...d), {
      code: 0,
      out: fixture("redis-pidbox-reply-ping").cli_output,
      err: "",
    });
    assert.equal(
      (await run(h.app, "inspect", "registered", ...d)).out,
      fixture("redis-pidbox-reply-registered").cli_output,
    );
    assert.equal(
      (await run(h.app, "inspect", "active", ...d)).out,
      fixture("redis-pidbox-reply-active").cli_output,
    );
    // A scheduled task with the fixture's id, args and eta prints the same Python dict line.
    const id = "c15d01d0-69d6-459c-90e3-97f715acee65";
    await h.app.sendTask("tasks.add", [2, 3], {}, {
      taskId: id,
      eta: new Date("2031-01-01T12:00:00Z"),
    });
    await waitFor(() => worker.scheduledIds.includes(id));
    const line = fixture("redis-pidbox-reply-scheduled").cli_output.split("\n")[2];
    assert.equal(
      (await run(h.app, "inspect", "scheduled", ...d)).out,
      `->  ${NODE}: OK\n${line}\n\n1 node online.\n`,
    );
    assert.equal(
      (await run(h.app, "control", "rate_limit", "tasks.add", "10/m", ...d)).out,
      fixture("redis-pidbox-reply-rate-limit").cli_output,
    );
    // Errors print as Celery's: status ERROR, the message indented.
    assert.equal(
      (await run(h.app, "control", "rate_limit", "tasks.nope", "1/s", ...d)).out,
      `->  ${NODE}: ERROR\n        unknown task\n`,
    );
    // stats: a dict without ok/error is sorted JSON, indented.
    const stats = (await run(h.app, "inspect", "stats", ...d)).out;
    assert.match(stats, /^-> {2}w1@fixtures: OK\n {4}\{\n {8}"broker": \{\n/);
    assert.match(stats, /\n {8}"prefetch_count": 10,\n/);
    // --json: inspect flattens to {node: reply}; control keeps the list.
    assert.equal(
      (await run(h.app, "inspect", "ping", "--json", ...d)).out,
      `{"${NODE}": {"ok": "pong"}}\n`,
    );
    assert.equal(
      (await run(h.app, "control", "rate_limit", "tasks.add", "5/s", "-j", ...d)).out,
      `[{"${NODE}": {"ok": "new rate limit set successfully"}}]\n`,
    );
    assert.equal((await run(h.app, "status", ...d)).out, `->  ${NODE}: OK\n\n1 node online.\n`);
    assert.equal(
      (await run(h.app, "inspect", "query_task", "x", "y", ...d)).out,
      `->  ${NODE}: OK\n    {}\n\n1 node online.\n`,
    );
  } finally {
    await h.close();
  }
});

Deno.test("control.ts: no reply exits 69; usage errors exit 1 with a clear message", async () => {
  const h = await harness("control-cli-errors");
  try {
    assert.deepEqual(await run(h.app, "inspect", "ping", "-t", "0.05"), {
      code: 69,
      out: "",
      err: "Error: No nodes replied within time constraint\n",
    });
    const wrongKind = await run(h.app, "inspect", "rate_limit", "t", "1/s");
    assert.equal(wrongKind.code, 1);
    assert.match(wrongKind.err, /rate_limit: it is a control command/);
    const tooMany = await run(h.app, "control", "cancel_consumer", "a", "b");
    assert.equal(tooMany.code, 1);
    assert.match(tooMany.err, /Command 'cancel_consumer' takes arguments: <queue>/);
    const unknownArgs = await run(h.app, "control", "custom_cmd", "oops");
    assert.match(unknownArgs.err, /give key=value/);
    assert.equal((await run(h.app, "nonsense")).code, 1);
    const help = await run(h.app, "--help");
    assert.equal(help.code, 0);
    assert.match(help.err, /^Usage: deno run -A control.ts/);
    assert.throws(() => parseControlArgs(["inspect", "ping", "-t", "0"]), ConfigError);
    assert.throws(() => parseControlArgs(["inspect", "ping", "--matcher", "x"]), ConfigError);
    assert.deepEqual(
      parseControlArgs(["control", "revoke", "--task-name", "tasks.slow", "-Q", "celery"]),
      {
        ...parseControlArgs(["control", "revoke_by_name"]),
        taskName: "tasks.slow",
        queue: "celery",
      },
    );
  } finally {
    await h.close();
  }
});

Deno.test("control.ts: purge and move by task name, straight in the broker", async () => {
  const h = await harness("control-cli-purge");
  try {
    for (let i = 0; i < 10; i++) {
      await h.app.sendTask(i % 2 ? "tasks.slow" : "tasks.sms", [i], {}, { taskId: `t${i}` });
    }
    const refused = await run(h.app, "purge", "--task-name", "tasks.slow");
    assert.equal(refused.code, 1);
    assert.match(refused.err, /without -f\/--force/);
    assert.deepEqual(
      await run(h.app, "move", "--task-name", "tasks.slow", "--from", "celery", "--to", "slow"),
      {
        code: 0,
        out: "Moved 5 messages of tasks.slow from celery to slow.\n",
        err: "",
      },
    );
    assert.equal(await h.broker.queueSize("slow"), 5);
    assert.deepEqual(
      await run(h.app, "purge", "-Q", "slow", "--task-name", "tasks.slow", "-f", "--json"),
      { code: 0, out: '{"queue": "slow", "task_name": "tasks.slow", "purged": 5}\n', err: "" },
    );
    assert.equal((await run(h.app, "purge", "-f")).out, "Purged 5 messages from queue celery.\n");
  } finally {
    await h.close();
  }
});

Deno.test("control.ts: revoke --task-name revokes the waiting messages of one task", async () => {
  const h = await harness("control-cli-revoke");
  try {
    h.app.task("tasks.slow", () => 1);
    h.app.task("tasks.sms", () => 2);
    const results = [];
    for (let i = 0; i < 9; i++) {
      results.push(
        await h.app.sendTask(i % 3 ? "tasks.slow" : "tasks.sms", [], {}, { queue: "q" }),
      );
    }
    const worker = h.worker({ name: "w1@r", queues: ["other"] });
    await worker.start();
    const { code, out } = await run(
      h.app,
      "control",
      "revoke",
      "--task-name",
      "tasks.slow",
      "-Q",
      "q",
      "-d",
      "w1@r",
    );
    assert.equal(code, 0);
    assert.equal(
      out,
      "->  w1@r: OK\n        tasks.slow: revoked 6 waiting in q, 0 held, 0 still running\n",
    );
    assert.equal(await h.broker.queueSize("q"), 3);
    for (const [i, r] of results.entries()) {
      if (i % 3) assert.equal((await h.backend!.get(r.id))?.status, "REVOKED");
      else assert.equal(await h.backend!.get(r.id), null);
    }
  } finally {
    await h.close();
  }
});

Deno.test("worker.ts: --without-control and --control-allow", () => {
  assert.equal(parseWorkerArgs(["--app", "a.ts", "--without-control"]).worker.remoteControl, false);
  assert.deepEqual(
    parseWorkerArgs(["--app", "a.ts", "--control-allow", "ping, stats,active"]).worker
      .remoteControl,
    { allow: ["ping", "stats", "active"] },
  );
  assert.equal(parseWorkerArgs(["--app", "a.ts"]).worker.remoteControl, undefined);
  assert.throws(
    () => parseWorkerArgs(["--app", "a.ts", "--without-control", "--control-allow", "ping"]),
    ConfigError,
  );
});
