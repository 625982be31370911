/**
 * The events CLI in-process on the memory broker (`--dump`, `--json`, `top`), its argument
 * parsing and its errors. The same CLI against Redis and real Python Celery is in
 * `interop_test.ts`.
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { EMBEDDED_DEFAULT_URL } from "../../src/brokers/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { Worker } from "../../src/worker/worker.ts";
import { parseEventsArgs, runEventsCli } from "../../events.ts";
import { parseWorkerArgs } from "../../worker.ts";
import { uniqueName } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

Deno.test("events CLI: arguments", () => {
  const d = parseEventsArgs([]);
  assert.deepEqual(d, {
    mode: "dump",
    broker: EMBEDDED_DEFAULT_URL,
    json: false,
    refresh: 1,
    wakeup: true,
  });
  assert.equal(parseEventsArgs([], true).mode, "top", "top on a terminal, like `celery events`");
  assert.equal(parseEventsArgs(["-d"], true).mode, "dump");
  const t = parseEventsArgs(["top", "-b", "redis://h:1/2", "--refresh", "0.5", "--no-wakeup"]);
  assert.deepEqual([t.mode, t.broker, t.refresh, t.wakeup], ["top", "redis://h:1/2", 0.5, false]);
  assert.throws(() => parseEventsArgs(["--refresh", "0"]), ConfigError);
  assert.throws(() => parseEventsArgs(["stats"]), /use --dump or top/);
  assert.throws(() => parseEventsArgs(["top", "--dump"]), ConfigError);
  assert.throws(() => parseEventsArgs(["--nope"]), ConfigError);
  assert.throws(() => parseEventsArgs(["--help"]), /^ConfigError: Usage:/);
  // The worker's -E / --events.
  assert.equal(parseWorkerArgs(["--app", "x.ts", "-E"]).worker.sendEvents, true);
  assert.equal(parseWorkerArgs(["--app", "x.ts", "--events"]).worker.sendEvents, true);
  assert.equal(parseWorkerArgs(["--app", "x.ts"]).worker.sendEvents, undefined);
});

/** Runs the CLI in-process until `run` is done; returns what it wrote and its exit code. */
async function withCli(
  args: string[],
  run: (out: string[]) => Promise<void>,
): Promise<{ out: string[]; code: number }> {
  const out: string[] = [];
  const stop = new AbortController();
  const url = args[args.indexOf("--broker") + 1];
  // The CLI casts a `heartbeat` on start, after it subscribed: wait for that.
  const broker = await createApp({ broker: url }).broker();
  let woken = false;
  const sub = await broker.subscribe!("celery.pidbox", "", () => woken = true);
  const cli = runEventsCli(args, {
    write: (text) => out.push(text),
    signal: stop.signal,
    size: { columns: 120, rows: 30 },
  });
  try {
    await waitFor(() => woken, { message: "the CLI's wake-up cast" });
    await run(out);
  } finally {
    stop.abort();
    await sub.close();
  }
  return { out, code: await cli };
}

async function runWorkerOnce(url: string, name: string): Promise<string> {
  const app = createApp({ broker: url });
  app.task("tasks.add", (x: number, y: number) => x + y);
  const worker = new Worker(app, {
    name,
    sendEvents: true,
    logLevel: "critical",
    fetchTimeoutMs: 50,
  });
  try {
    await worker.start();
    const result = await app.sendTask("tasks.add", [2, 3]);
    await result.get({ timeout: 5 });
    return result.id;
  } finally {
    await worker.stop();
    await app.close();
  }
}

Deno.test("events CLI: --dump prints one Celery-like line per event", async () => {
  const url = `memory://${uniqueName("cli-dump")}`;
  let id = "";
  const { out, code } = await withCli(["--broker", url, "--dump"], async (out) => {
    id = await runWorkerOnce(url, "w1@cli");
    await waitFor(() => out.join("").includes("worker-offline"));
  });
  assert.equal(code, 0);
  const lines = out.join("").trimEnd().split("\n");
  const at = String.raw`\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\]`;
  const of = (type: string) => lines.find((l) => l.includes(` ${type} `))!;
  assert.match(
    of("worker-online"),
    new RegExp(`^w1@cli ${at} worker-online freq=2 active=0 processed=0 loadavg=\\[`),
  );
  assert.match(
    of("task-received"),
    new RegExp(
      `^w1@cli ${at} task-received uuid=${id} name=tasks\\.add args=\\(2, 3\\) kwargs=\\{\\}`,
    ),
  );
  assert.match(of("task-started"), new RegExp(`task-started uuid=${id} name=tasks\\.add$`));
  assert.match(
    of("task-succeeded"),
    new RegExp(`task-succeeded uuid=${id} name=tasks\\.add result=5 runtime=\\d`),
  );
  assert.match(lines.at(-1)!, /worker-offline .*processed=1/);
});

Deno.test("events CLI: --dump --json prints the received events as JSON lines", async () => {
  const url = `memory://${uniqueName("cli-json")}`;
  const { out, code } = await withCli(["--broker", url, "--dump", "--json"], async (out) => {
    await runWorkerOnce(url, "w2@cli");
    await waitFor(() => out.join("").includes("worker-offline"));
  });
  assert.equal(code, 0);
  const events = out.join("").trimEnd().split("\n").map((l) => JSON.parse(l));
  const succeeded = events.find((e) => e.type === "task-succeeded");
  assert.equal(succeeded.result, "5");
  assert.equal(typeof succeeded.local_received, "number");
  assert.equal(succeeded.hostname, "w2@cli");
});

Deno.test("events CLI: top draws in place (cursor home, clear) and restores the terminal", async () => {
  const url = `memory://${uniqueName("cli-top")}`;
  const { out, code } = await withCli(
    ["--broker", url, "top", "--refresh", "0.02"],
    async (out) => {
      await runWorkerOnce(url, "w3@cli");
      await waitFor(() => out.some((s) => /tasks\.add\s+SUCCESS/.test(s)), {
        message: "a SUCCESS row",
      });
    },
  );
  assert.equal(code, 0);
  assert.equal(out[0], "\x1b[?1049h\x1b[?25l");
  const frame = out.findLast((s) => s.startsWith("\x1b[H"))!;
  assert.ok(frame.endsWith("\x1b[J"));
  assert.match(frame, /w3@cli\s+OFFLINE\s+0\s+1/);
  assert.match(frame, /STATES {2}SUCCESS 1/);
  assert.equal(out.at(-1), "\x1b[?25h\x1b[?1049l");
});

Deno.test("events CLI: errors and help give exit codes, never a stack", async () => {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-events-cli-" });
  try {
    const noSignal = new AbortController();
    noSignal.abort();
    const run = (args: string[]) =>
      runEventsCli(args, { write: () => {}, signal: noSignal.signal });
    assert.equal(await run(["--help"]), 0);
    assert.equal(await run(["--bogus"]), 1);
    // The embedded store has fanout too: a dump that is stopped at once exits 0.
    assert.equal(await run(["--broker", `sqlite://${dir}/x.db`, "--dump"]), 0);
    assert.equal(await run(["--broker", "nope://x", "--dump"]), 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
