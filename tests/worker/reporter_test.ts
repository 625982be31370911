/**
 * The reporter's choice between one step (`Delivery.ackWith`: the store carried with the
 * ack) and two (store, workflow, then ack), with a fake backend and fake deliveries.
 */
import assert from "node:assert/strict";
import { createApp } from "../../mod.ts";
import type { ResultBackend, ResultWrite } from "../../src/backends/backend.ts";
import type { Delivery } from "../../src/brokers/broker.ts";
import { Workflow } from "../../src/canvas/worker_side.ts";
import { Logger } from "../../src/log.ts";
import type { ResultMeta } from "../../src/protocol/result.ts";
import { decodeTaskMessage, encodeTaskMessage, type TaskCall } from "../../src/protocol/task.ts";
import { Reporter } from "../../src/worker/reporter.ts";
import { uniqueName } from "../helpers/harness.ts";

/** What the fakes saw, in order. */
type Step = string;

function fakeBackend(steps: Step[]): ResultBackend {
  return {
    kind: "fake",
    displayUrl: "fake://",
    connect: () => Promise.resolve(),
    store(meta: ResultMeta) {
      steps.push(`store ${meta.status}`);
      return Promise.resolve();
    },
    resultWrite(meta: ResultMeta): ResultWrite {
      return {
        kind: "redis",
        server: "redis://fake:1",
        db: 1,
        key: `celery-task-meta-${meta.task_id}`,
        value: JSON.stringify(meta),
        ttlSeconds: 60,
      };
    },
    get: () => Promise.resolve(null),
    waitFor: () => Promise.reject(new Error("unused")),
    forget: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

function fakeDelivery(steps: Step[], carry: "ok" | "fail" | "cannot"): Delivery {
  return {
    message: null,
    queue: "celery",
    raw: "",
    redelivered: false,
    ack() {
      steps.push("ack");
      return Promise.resolve();
    },
    ackWith(write: ResultWrite) {
      if (carry === "cannot") {
        steps.push("refused");
        return null;
      }
      steps.push(`store+ack ${JSON.parse(write.value).status}`);
      return carry === "ok" ? Promise.resolve() : Promise.reject(new Error("connection lost"));
    },
    requeue(position) {
      steps.push(`requeue ${position}`);
      return Promise.resolve();
    },
    deadLetter: () => Promise.resolve(),
  };
}

function message(extra: Partial<TaskCall> = {}) {
  return decodeTaskMessage(
    encodeTaskMessage(
      { id: crypto.randomUUID(), task: "tasks.t", origin: "gen1@h", ...extra },
      new Date(),
    ),
  );
}

function setup(options: { acksBeforeFetch?: boolean } = {}) {
  const steps: Step[] = [];
  const logs: string[] = [];
  const log = new Logger("debug", (line) => logs.push(line));
  const app = createApp({ broker: `memory://${uniqueName("reporter")}` });
  const backend = fakeBackend(steps);
  const reporter = new Reporter(backend, log, new Workflow(app, backend, log), options);
  return { steps, logs, app, reporter };
}

Deno.test("reporter: a plain success, failure, revoke and retry go as one store+ack", async () => {
  const { steps, app, reporter } = setup();
  try {
    const d = () => fakeDelivery(steps, "ok");
    const settle = { ack: true, ignoreResult: false };
    assert.equal(await reporter.succeeded(message(), d(), 1, 1, settle), true);
    assert.equal(await reporter.failed(message(), d(), new Error("boom"), settle), true);
    await reporter.revoked(message(), d(), "revoked", true);
    assert.equal(
      await reporter.retried(message(), d(), new Error("again"), 1, { ack: true }),
      true,
    );
    assert.deepEqual(steps, [
      "store+ack SUCCESS",
      "store+ack FAILURE",
      "store+ack REVOKED",
      "store+ack RETRY",
    ]);
  } finally {
    await app.close();
  }
});

Deno.test("reporter: store, then ack, when the workflow has work in between or nothing is stored", async () => {
  const { steps, app, reporter } = setup();
  const sig = (task: string) => ({
    task,
    args: [],
    kwargs: {},
    options: {},
    subtask_type: null,
    immutable: false,
  });
  const cases: [string, () => Promise<unknown>, Step[]][] = [
    [
      "a failure with errbacks",
      () =>
        reporter.failed(
          message({ embed: { errbacks: [sig("tasks.on_error")] } }),
          fakeDelivery(steps, "ok"),
          new Error("x"),
          { ack: true, ignoreResult: false },
        ),
      ["store FAILURE", "ack"],
    ],
    [
      "a chord header member",
      () =>
        reporter.succeeded(
          message({ group: "g1", embed: { chord: sig("tasks.body") } }),
          fakeDelivery(steps, "ok"),
          1,
          1,
          { ack: true, ignoreResult: false },
        ),
      ["store SUCCESS", "ack"],
    ],
    [
      "an ignored result",
      () =>
        reporter.succeeded(message(), fakeDelivery(steps, "ok"), 1, 1, {
          ack: true,
          ignoreResult: true,
        }),
      ["ack"],
    ],
    [
      "an early-acked message",
      () =>
        reporter.succeeded(message(), fakeDelivery(steps, "ok"), 1, 1, {
          ack: false,
          ignoreResult: false,
        }),
      ["store SUCCESS"],
    ],
  ];
  try {
    for (const [what, run, expected] of cases) {
      steps.length = 0;
      await run();
      assert.deepEqual(steps, expected, what);
    }
  } finally {
    await app.close();
  }
});

Deno.test("reporter: a broker that cannot carry the write gets store, then ack, and is not asked again", async () => {
  const { steps, app, reporter } = setup();
  try {
    for (let i = 0; i < 2; i++) {
      await reporter.succeeded(message(), fakeDelivery(steps, "cannot"), 1, 1, {
        ack: true,
        ignoreResult: false,
      });
    }
    assert.deepEqual(steps, ["refused", "store SUCCESS", "ack", "store SUCCESS", "ack"]);
  } finally {
    await app.close();
  }
});

Deno.test("reporter: a failed store+ack is reported as not stored", async () => {
  const { steps, logs, app, reporter } = setup();
  try {
    const msg = message();
    const stored = await reporter.succeeded(msg, fakeDelivery(steps, "fail"), 1, 1, {
      ack: true,
      ignoreResult: false,
    });
    assert.equal(stored, false);
    assert.deepEqual(steps, ["store+ack SUCCESS"], "the delivery gives the message back itself");
    assert.ok(
      logs.some((l) =>
        l.includes(`Cannot store result of task ${msg.id} (SUCCESS): connection lost`) &&
        l.includes("goes back to its queue")
      ),
    );
  } finally {
    await app.close();
  }
});

Deno.test("reporter: release comes when the ack is issued only for an acksBeforeFetch broker", async () => {
  for (const acksBeforeFetch of [true, false]) {
    for (const ignoreResult of [true, false]) {
      const { app, reporter } = setup({ acksBeforeFetch });
      try {
        let release = 0;
        let confirm!: () => void;
        const held = () => new Promise<void>((resolve) => confirm = resolve);
        // ignoreResult: a plain ack; else the store carried with the ack.
        const delivery: Delivery = { ...fakeDelivery([], "ok"), ack: held, ackWith: held };
        const done = reporter.succeeded(message(), delivery, 1, 1, {
          ack: true,
          ignoreResult,
          release: () => release++,
        });
        await new Promise((resolve) => setTimeout(resolve, 0));
        assert.equal(release, acksBeforeFetch ? 1 : 0, `${acksBeforeFetch}, ${ignoreResult}`);
        confirm();
        assert.equal(await done, true);
      } finally {
        await app.close();
      }
    }
  }
});
