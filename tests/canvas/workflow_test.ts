/**
 * Workflows end to end on the memory broker and backend, with an in-process worker: chain,
 * group, chord, callbacks, errbacks, nesting (chain in group, group in chain, group | task
 * upgraded to a chord, chord | task, chain as chord body, chain in a chord header, nested
 * groups), result links (parent, children), GroupResult, tasks sent from inside tasks, and
 * chords on the embedded store.
 */

import assert from "node:assert/strict";
import {
  Chain,
  chain,
  Chord,
  chord,
  createApp,
  Group,
  group,
  GroupResult,
  signature,
  TaskFailedError,
  Worker,
} from "../../mod.ts";
import { AsyncResult as AsyncResultClass } from "../../src/async_result.ts";
import type { AsyncResult } from "../../src/async_result.ts";
import type { TaskContext } from "../../src/task.ts";
import type { Harness } from "../helpers/harness.ts";
import { harness } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";
import { tempStore } from "../helpers/temp_store.ts";

/** A harness with tasks.add, tasks.xsum, tasks.fail, tasks.echo, tasks.record and a worker. */
async function setup(prefix: string) {
  const h = await harness(prefix);
  const calls: { name: string; args: unknown[] }[] = [];
  const app = h.app;
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const xsum = app.task("tasks.xsum", (values: number[]) => values.reduce((a, b) => a + b, 0));
  const fail = app.task("tasks.fail", (message: string): never => {
    throw Object.assign(new Error(message), { name: "ValueError" });
  });
  const record = app.task("tasks.record", (...args: unknown[]) => {
    calls.push({ name: "tasks.record", args });
    return args;
  });
  const worker = h.worker({ concurrency: 8 });
  await worker.start();
  return { h, app, add, xsum, fail, record, calls, worker };
}

async function failure(promise: Promise<unknown>): Promise<TaskFailedError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TaskFailedError, `expected TaskFailedError, got ${err}`);
    return err;
  }
  assert.fail("expected a TaskFailedError");
}

async function withSetup(
  prefix: string,
  fn: (s: Awaited<ReturnType<typeof setup>>) => Promise<void>,
): Promise<void> {
  const s = await setup(prefix);
  try {
    await fn(s);
  } finally {
    await (s.h as Harness).close();
  }
}

Deno.test("chain: three steps, each result prepended; parents and children link the steps", async () => {
  await withSetup("cv-chain", async ({ add }) => {
    const result = await chain(add.s(1, 2), add.s(10), add.s(100)).applyAsync() as AsyncResult;
    assert.equal(await result.get({ timeout: 5 }), 113);
    const second = result.parent as AsyncResult;
    const first = second.parent as AsyncResult;
    assert.equal(first.parent, null);
    assert.equal(await second.get({ timeout: 5 }), 13);
    assert.equal(await first.get({ timeout: 5 }), 3);
    // Stored links, as Celery writes them.
    const firstMeta = await first.meta();
    assert.deepEqual(firstMeta?.children, [[[second.id, null], null]]);
    assert.equal(firstMeta?.parent_id, undefined);
    assert.equal((await second.meta())?.parent_id, first.id);
    assert.equal((await result.meta())?.parent_id, second.id);
    assert.deepEqual((await result.meta())?.children, []);
    const [child] = await first.children();
    assert.equal(child?.id, second.id);
    assert.deepEqual(result.asTuple(), [
      [result.id, [[second.id, [[first.id, null], null]], null]],
      null,
    ]);
  });
});

Deno.test("chain: partial args of applyAsync go to the first step; si() ignores the parent's result", async () => {
  await withSetup("cv-chain-args", async ({ add, record }) => {
    const r1 = await chain(add.s(2), add.s(3)).applyAsync([1]);
    assert.equal(await r1.get({ timeout: 5 }), 6);
    const r2 = await chain(add.s(1, 1), record.si("fixed"), record.s("tail")).applyAsync();
    assert.deepEqual(await r2.get({ timeout: 5 }), [["fixed"], "tail"]);
    const r3 = await add.s(1, 1).pipe(add.s(5)).delay();
    assert.equal(await r3.get({ timeout: 5 }), 7);
  });
});

Deno.test("chain: a failing step fails the remaining steps at once and sends its errbacks with its id", async () => {
  await withSetup("cv-chain-fail", async ({ add, fail, record, calls }) => {
    const failing = fail.si("boom");
    failing.linkError(record.s("errback"));
    const result = await chain(add.s(1, 2), failing, add.s(5), add.s(6))
      .applyAsync() as AsyncResult;
    const err = await failure(result.get({ timeout: 5 }));
    assert.equal(err.excType, "ValueError");
    assert.deepEqual(err.excMessage, ["boom"]);
    const third = result.parent as AsyncResult;
    assert.equal(await third.state, "FAILURE", "the step after the failure is failed too");
    const failed = third.parent as AsyncResult;
    await waitFor(() => calls.length === 1, { message: "the errback ran" });
    assert.deepEqual(calls[0]!.args, [failed.id, "errback"]);
    assert.equal(await failed.state, "FAILURE");
  });
});

Deno.test("link: one callback gets the result; several are sent as a group; a group callback gets it too", async () => {
  await withSetup("cv-link", async ({ add, record, calls }) => {
    const one = add.s(2, 3);
    one.link(record.s("one"));
    const r1 = await one.applyAsync();
    assert.equal(await r1.get({ timeout: 5 }), 5);
    await waitFor(() => calls.length === 1);
    assert.deepEqual(calls[0]!.args, [5, "one"]);

    const many = add.s(1, 1);
    many.link(record.s("a"));
    many.link(record.s("b"));
    many.link(group([record.s("g1"), record.s("g2")]));
    const r2 = await many.applyAsync();
    assert.equal(await r2.get({ timeout: 5 }), 2);
    await waitFor(() => calls.length === 5, { message: "four more callbacks ran" });
    assert.deepEqual(
      calls.slice(1).map((c) => c.args).sort((a, b) => String(a[1]).localeCompare(String(b[1]))),
      [[2, "a"], [2, "b"], [2, "g1"], [2, "g2"]],
    );
    // children: the group callback's GroupResult, then the plain ones as one group.
    const children = await r2.children();
    assert.equal(children.length, 2);
    assert.ok(children.every((c) => c instanceof GroupResult));
    assert.deepEqual(children.map((c) => (c as GroupResult).length), [2, 2]);
    const meta = await ((children[1] as GroupResult).results[0] as AsyncResult).meta();
    assert.equal(meta?.parent_id, r2.id);
    assert.equal(meta?.group_id, children[1]!.id);

    // An immutable callback ignores the result.
    const im = add.s(0, 1);
    im.link(record.si("ignored"));
    await (await im.applyAsync()).get({ timeout: 5 });
    await waitFor(() => calls.some((c) => c.args[0] === "ignored"));
    assert.deepEqual(calls.find((c) => c.args[0] === "ignored")!.args, ["ignored"]);
  });
});

Deno.test("linkError: an errback gets the failed task's id; onError returns the signature", async () => {
  await withSetup("cv-errback", async ({ fail, record, calls }) => {
    const sig = fail.s("kaput").onError(record.s()).onError(record.si("second"));
    assert.equal(sig.task, "tasks.fail");
    const result = await sig.applyAsync();
    await failure(result.get({ timeout: 5 }));
    await waitFor(() => calls.length === 2, { message: "both errbacks ran" });
    const args = calls.map((c) => c.args).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    assert.deepEqual(
      args,
      [[result.id], ["second"]].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
  });
});

Deno.test("applyAsync({ link, linkError }): callbacks and errbacks as Celery's apply_async(link=, link_error=)", async () => {
  await withSetup("cv-apply-link", async ({ app, add, fail, record, calls }) => {
    const ok = await add.applyAsync([2, 3], {}, { link: record.s("cb") });
    assert.equal(await ok.get({ timeout: 5 }), 5);
    await waitFor(() => calls.length === 1, { message: "the callback ran" });
    assert.deepEqual(calls[0]!.args, [5, "cb"]);

    // A list, a signature dict (as a Python client would give it), and an errback.
    const dict = record.s("dict").toDict();
    const bad = await fail.applyAsync(["boom"], {}, {
      link: record.s("never"),
      linkError: [record.s("eb"), dict],
    });
    await failure(bad.get({ timeout: 5 }));
    await waitFor(() => calls.length === 3, { message: "both errbacks ran" });
    assert.deepEqual(
      calls.slice(1).map((c) => c.args).sort((a, b) => String(a[1]).localeCompare(String(b[1]))),
      [[bad.id, "dict"], [bad.id, "eb"]],
    );
    assert.ok(!calls.some((c) => c.args.includes("never")), "no callback after a failure");

    // sendTask takes them too; a link that is not a signature is refused before sending.
    const byName = await app.sendTask("tasks.add", [1, 1], {}, { link: record.s("named") });
    assert.equal(await byName.get({ timeout: 5 }), 2);
    await waitFor(() => calls.some((c) => c.args[1] === "named"));
    await assert.rejects(
      add.applyAsync([1, 1], {}, { link: { nope: 1 } as never }),
      (e: unknown) => e instanceof TypeError && /'link'/.test(e.message),
    );
  });
});

Deno.test("AsyncResult.revoke(): a held task is never run; terminate aborts a running one", async () => {
  await withSetup("cv-result-revoke", async ({ app, add, worker }) => {
    const held = await add.applyAsync([1, 1], {}, { countdown: 60 });
    await waitFor(() => worker.scheduledIds.includes(held.id), { message: "held" });
    await held.revoke();
    const value: unknown = await held.get({ timeout: 5, propagate: false });
    assert.equal((value as { exc_type: string }).exc_type, "TaskRevokedError");
    assert.equal(await held.state, "REVOKED");
    assert.deepEqual(worker.scheduledIds, []);

    let aborted = false;
    const stuck = app.task(
      "tasks.stuck",
      (ctx: TaskContext) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => {
            aborted = true;
            reject(ctx.signal.reason);
          })
        ),
      { bind: true },
    );
    const running = await stuck.delay();
    await waitFor(() => worker.activeIds.includes(running.id), { message: "running" });
    await running.revoke({ terminate: true });
    await waitFor(() => aborted, { message: "the running task's signal aborted" });
    await running.get({ timeout: 5, propagate: false });
    assert.equal(await running.state, "REVOKED");

    // A handle built without the app has no remote control.
    const bare = new AsyncResultClass("x", () => Promise.resolve(null));
    await assert.rejects(bare.revoke(), TypeError);
  });
});

Deno.test("group: GroupResult in member order, completedCount, ready, failed, join with timeout", async () => {
  await withSetup("cv-group", async ({ h, add, fail }) => {
    const result = await group([add.s(1, 1), add.s(2, 2), add.s(3, 3)]).applyAsync();
    assert.ok(result instanceof GroupResult);
    assert.deepEqual(await result.get({ timeout: 5 }), [2, 4, 6]);
    assert.deepEqual(await result.join({ timeout: 5 }), [2, 4, 6]);
    assert.equal(await result.completedCount(), 3);
    assert.equal(await result.ready(), true);
    assert.equal(await result.successful(), true);
    // Every member carries the group id, and no group_index (Celery's plain group).
    for (const member of result.results) {
      assert.equal((await (member as AsyncResult).meta())?.group_id, result.id);
    }
    const mixed = await group(add.s(1, 1), fail.s("no")).applyAsync();
    await failure(mixed.get({ timeout: 5 }));
    assert.deepEqual(await mixed.get({ timeout: 5, propagate: false }), [2, {
      exc_type: "ValueError",
      exc_message: ["no"],
      exc_module: "builtins",
    }]);
    assert.equal(await mixed.completedCount(), 1);
    assert.equal(await mixed.failed(), true);
    // A member nobody runs: join times out.
    const stuck = await group(signature(h.app, "tasks.nobody", { options: { queue: "nowhere" } }))
      .applyAsync();
    await assert.rejects(stuck.get({ timeout: 0.2 }), { name: "ResultTimeoutError" });
    assert.equal(await stuck.waiting(), true);
  });
});

Deno.test("group: save/restore/delete, forget, partial args, link rules, empty group", async () => {
  await withSetup("cv-group-save", async ({ h, add, record }) => {
    const result = await group([add.s(1), add.s(2)]).applyAsync([10]);
    assert.deepEqual(await result.get({ timeout: 5 }), [11, 12]);
    await result.save();
    const restored = await GroupResult.restore(h.app, result.id);
    assert.deepEqual(restored?.ids, result.ids);
    assert.deepEqual(await restored?.get({ timeout: 5 }), [11, 12]);
    await result.delete();
    assert.equal(await GroupResult.restore(h.app, result.id), null);
    await result.forget();
    assert.equal(await (result.results[0] as AsyncResult).state, "PENDING");

    const g = group([add.s(1, 1), add.s(2, 2)]);
    await assert.rejects(g.applyAsync([], {}, { link: record.s() }), TypeError);
    const linked = g.link(record.s("after-first"));
    assert.equal(linked.immutable, true);
    const empty = await new Group(h.app, []).applyAsync();
    assert.deepEqual(await empty.get({ timeout: 1 }), []);
    assert.throws(() => group([]), RangeError);
  });
});

Deno.test("group: revoke() revokes every member through app.control; a revoked chord member fails the body", async () => {
  await withSetup("cv-group-revoke", async ({ add, xsum }) => {
    // Held members (countdown) are revoked before they run.
    const result = await group([add.s(1, 1), add.s(2, 2)]).applyAsync([], {}, { countdown: 60 });
    await result.revoke();
    const values = await result.get({ timeout: 5, propagate: false });
    assert.deepEqual(values.map((v) => (v as { exc_type: string }).exc_type), [
      "TaskRevokedError",
      "TaskRevokedError",
    ]);
    const c = await chord([add.s(1, 1), add.s(2, 2).set({ countdown: 60 })], xsum.s())
      .applyAsync();
    const header = c.parent as GroupResult;
    await (header.results[0] as AsyncResult).get({ timeout: 5 });
    await header.revoke();
    const err = await failure(c.get({ timeout: 5 }));
    assert.equal(err.excType, "ChordError");
    assert.match(String(err.excMessage[0]), /raised TaskRevokedError\('revoked'\)$/);
    // Results read without the app (no remote control) cannot revoke.
    const bare = new GroupResult("g", [], { backend: () => Promise.resolve(null) });
    await assert.rejects(bare.revoke(), TypeError);
  });
});

Deno.test("chord: the body gets the header's results in header order", async () => {
  await withSetup("cv-chord", async ({ h, add, xsum, record }) => {
    const result = await chord([add.s(3, 3), add.s(4, 4), add.s(5, 5)], record.s()).applyAsync();
    assert.deepEqual(await result.get({ timeout: 5 }), [[6, 8, 10]]);
    const header = result.parent as GroupResult;
    assert.ok(header instanceof GroupResult);
    assert.deepEqual(await header.get({ timeout: 5 }), [6, 8, 10]);
    assert.equal((await (header.results[2] as AsyncResult).meta())?.group_id, header.id);
    const body = await result.meta();
    assert.ok(header.ids.includes(body?.parent_id ?? ""), "the body's parent is a header member");
    // The bookkeeping is gone once the body was sent.
    const backend = h.backend!;
    assert.equal(
      await backend.chordPartReturn!({
        groupId: header.id,
        taskId: "late",
        groupIndex: 9,
        state: "SUCCESS",
        result: 1,
      }),
      null,
    );
    const sum = await chord([add.s(1, 1), add.s(2, 2)], xsum.s()).applyAsync();
    assert.equal(await sum.get({ timeout: 5 }), 6);
    // Partial args go to every header member.
    const partial = await chord([add.s(1), add.s(2)], xsum.s()).applyAsync([100]);
    assert.equal(await partial.get({ timeout: 5 }), 203);
    // An empty header sends the body at once with [].
    const empty = await chord([], xsum.s()).applyAsync();
    assert.equal(await empty.get({ timeout: 5 }), 0);
  });
});

Deno.test("chord: a failed member fails the body with ChordError and calls the body's errbacks", async () => {
  await withSetup("cv-chord-fail", async ({ add, fail, xsum, record, calls }) => {
    const body = xsum.s();
    body.linkError(record.s("chord-errback"));
    const result = await chord([add.s(1, 1), fail.s("member failed")], body).applyAsync();
    const err = await failure(result.get({ timeout: 5 }));
    assert.equal(err.excType, "ChordError");
    assert.equal(err.excModule, "celery.exceptions");
    const failedId = (result.parent as GroupResult).ids[1];
    assert.deepEqual(err.excMessage, [`Dependency ${failedId} raised ValueError('member failed')`]);
    await waitFor(() => calls.length === 1, { message: "the body's errback ran" });
    assert.deepEqual(calls[0]!.args, [result.id, "chord-errback"]);
  });
});

Deno.test("chord: without chord support in the backend, applyAsync throws ConfigError", async () => {
  const h = await harness("cv-chord-nobackend", { backend: null });
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    await assert.rejects(chord([add.s(1, 1)], add.s(1)).applyAsync(), { name: "ConfigError" });
  } finally {
    await h.close();
  }
});

Deno.test("nesting: group | task and chain(group, task) are upgraded to chords; chord | task extends the body", async () => {
  await withSetup("cv-upgrade", async ({ add, xsum }) => {
    const upgraded = group([add.s(1, 1), add.s(2, 2)]).pipe(xsum.s());
    assert.ok(upgraded instanceof Chord);
    assert.equal(await (await upgraded.applyAsync()).get({ timeout: 5 }), 6);

    const inChain = chain(add.s(1, 1), group([add.s(1), add.s(2)]), xsum.s(), add.s(100));
    assert.ok(inChain instanceof Chain);
    assert.equal((inChain as Chain).tasks.length, 2, "add, chord(group, xsum | add)");
    const result = await inChain.applyAsync() as AsyncResult;
    // 1+1=2 → [3, 4] → 7 → 107
    assert.equal(await result.get({ timeout: 5 }), 107);

    const extended = chord([add.s(1, 1), add.s(2, 2)], xsum.s()).pipe(add.s(1000));
    assert.ok(extended instanceof Chord);
    assert.equal(await (await extended.applyAsync()).get({ timeout: 5 }), 1006);
  });
});

Deno.test("nesting: a group at the end of a chain returns a GroupResult linked to the chain", async () => {
  await withSetup("cv-group-end", async ({ add }) => {
    const result = await chain(add.s(1, 1), group([add.s(10), add.s(20)])).applyAsync();
    assert.ok(result instanceof GroupResult);
    assert.deepEqual(await result.get({ timeout: 5 }), [12, 22]);
    assert.equal(await (result.parent as AsyncResult).get({ timeout: 5 }), 2);
    // The first step lists the group as its child.
    const children = await (result.parent as AsyncResult).children();
    assert.deepEqual(children.map((c) => c.id), [result.id]);
  });
});

Deno.test("nesting: a chain inside a group, nested groups flattened, a single-member group unrolled", async () => {
  await withSetup("cv-chain-in-group", async ({ add }) => {
    const result = await group([chain(add.s(1, 1), add.s(10)), add.s(5, 5)]).applyAsync();
    assert.deepEqual(await result.get({ timeout: 5 }), [12, 10]);
    const flat = await group([group([add.s(1, 1), add.s(2, 2)]), add.s(3, 3)]).applyAsync();
    assert.deepEqual(await flat.get({ timeout: 5 }), [2, 4, 6]);
    assert.equal(flat.length, 3);
    const unrolled = chain(add.s(1, 1), group([add.s(1)]));
    assert.ok(!((unrolled as Chain).tasks[1] instanceof Group));
    assert.equal(await (await unrolled.applyAsync()).get({ timeout: 5 }), 3);
  });
});

Deno.test("nesting: a chain as chord body, a chain and a group inside a chord header, a chord inside a group", async () => {
  await withSetup("cv-chord-nesting", async ({ add, xsum, record }) => {
    const chainBody = await chord([add.s(1, 1), add.s(2, 2)], chain(xsum.s(), add.s(10)))
      .applyAsync();
    assert.equal(await chainBody.get({ timeout: 5 }), 16);

    const headerChain = await chord([chain(add.s(1, 1), add.s(100)), add.s(5, 5)], record.s())
      .applyAsync();
    assert.deepEqual(await headerChain.get({ timeout: 5 }), [[102, 10]]);

    const headerGroup = await chord([group([add.s(1, 1), add.s(2, 2)]), add.s(3, 3)], record.s())
      .applyAsync();
    assert.deepEqual(await headerGroup.get({ timeout: 5 }), [[2, 4, 6]]);

    const chordInGroup = await group([chord([add.s(1, 1), add.s(2, 2)], xsum.s()), add.s(7, 7)])
      .applyAsync();
    assert.deepEqual(await chordInGroup.get({ timeout: 5 }), [6, 14]);

    // chord inside a chain, then more steps: chain(a, chord, b) → the chord's body gets b.
    const middle = await chain(add.s(1, 1), chord([add.s(1), add.s(2)], xsum.s()), add.s(1))
      .applyAsync();
    assert.equal(await middle.get({ timeout: 5 }), 8);
  });
});

Deno.test("tasks sent from inside a task get its id as parent, its root, and are its children", async () => {
  await withSetup("cv-inside", async ({ h, add }) => {
    const spawner = h.app.task("tasks.spawn", async (n: number) => {
      const r = await add.delay(n, n);
      await group([add.s(1, 1), add.s(2, 2)]).applyAsync();
      return r.id;
    });
    const result = await spawner.delay(21);
    const childId = await result.get({ timeout: 5 }) as string;
    const child = h.app.asyncResult(childId);
    assert.equal(await child.get({ timeout: 5 }), 42);
    assert.equal((await child.meta())?.parent_id, result.id);
    const children = await result.children();
    assert.equal(children.length, 2);
    assert.equal(children[0]!.id, childId);
    assert.ok(children[1] instanceof GroupResult);
    // Outside a task nothing is set.
    const outside = await add.delay(1, 1);
    await outside.get({ timeout: 5 });
    assert.equal((await outside.meta())?.parent_id, undefined);
  });
});

Deno.test("chain and group dicts round-trip through signatureFromDict and run the same", async () => {
  await withSetup("cv-roundtrip", async ({ h, add, xsum }) => {
    const { signatureFromDict } = await import("../../mod.ts");
    const c = chain(add.s(1, 2), group([add.s(1), add.s(2)]), xsum.s());
    const copy = signatureFromDict(h.app, JSON.parse(JSON.stringify(c)));
    assert.deepEqual(copy.toDict(), c.toDict());
    assert.equal(await (await copy.applyAsync()).get({ timeout: 5 }), 9);
  });
});

Deno.test("chord and saved groups on the embedded store (sqlite broker and backend)", async () => {
  await using store = await tempStore();
  const app = createApp({ broker: store.url });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const xsum = app.task("tasks.xsum", (values: number[]) => values.reduce((a, b) => a + b, 0));
  const worker = new Worker(app, { concurrency: 4, logLevel: "critical", fetchTimeoutMs: 50 });
  await worker.start();
  try {
    const result = await chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], xsum.s()).applyAsync();
    assert.equal(await result.get({ timeout: 10 }), 12);
    const upgraded = await chain(group([add.s(5, 5), add.s(6, 6)]), xsum.s()).applyAsync();
    assert.equal(await upgraded.get({ timeout: 10 }), 22);
    const g = await group([add.s(1, 2), add.s(3, 4)]).applyAsync();
    assert.deepEqual(await g.get({ timeout: 10 }), [3, 7]);
    await g.save();
    assert.deepEqual((await GroupResult.restore(app, g.id))?.ids, g.ids);
    assert.deepEqual(store.all("SELECT count(*) AS n FROM celeriac_chord_parts"), [{ n: 0 }]);
  } finally {
    await worker.stop();
    await app.close();
  }
});

Deno.test("Workflow.hasWorkOnSuccess: only callbacks or a next chain step make work before the store", async () => {
  const { Workflow } = await import("../../src/canvas/worker_side.ts");
  const { Logger } = await import("../../src/log.ts");
  const app = createApp({ broker: "memory://has-work-on-success" });
  try {
    const workflow = new Workflow(app, null, new Logger("critical"));
    const step = { task: "tasks.add", args: [1], kwargs: {}, options: {}, subtask_type: null };
    const message = (embed: Record<string, unknown>) => ({ embed }) as never;
    assert.equal(workflow.hasWorkOnSuccess(message({ callbacks: null, chain: null })), false);
    assert.equal(workflow.hasWorkOnSuccess(message({ callbacks: [], chain: [] })), false);
    assert.equal(workflow.hasWorkOnSuccess(message({ callbacks: [step], chain: null })), true);
    assert.equal(workflow.hasWorkOnSuccess(message({ callbacks: null, chain: [step] })), true);
    assert.equal(
      workflow.hasWorkOnSuccess(message({ errbacks: [step], chord: step })),
      false,
      "errbacks and chords wait for the store",
    );
  } finally {
    await app.close();
  }
});
