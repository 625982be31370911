/**
 * Canvas messages and records against the real Celery 5.2.6 captures in
 * shared/fixtures/celery-5.2, field by field:
 *
 * - producer side: what celeriac sends for `chain(add.s(1, 2), add.s(10), add.s(100))`,
 *   `group(add.s(1, 1), add.s(2, 2))` (+ `save()`), `chord([add.s(3, 3), add.s(4, 4)],
 *   xsum.s())` and `add.s(2, 3)` with `link`/`link_error`, compared with Python's messages;
 * - worker side: Python's own captured messages are replayed into a celeriac worker, and
 *   what it sends next (chain step 2, chord body) and stores (result records) is compared
 *   with what the Python worker sent and stored.
 *
 * Run-specific values (ids, origin, delivery tags) differ; where a value is derived from
 * another (root_id = id, parent_id = previous step) that relation is checked instead.
 * Decision: celeriac producers have no per-thread "oid", so frozen options carry no
 * `reply_to` and `properties.reply_to` is `""` (Python's RPC backend is not used); a
 * `reply_to` from a Python-frozen step is kept and used, as the replay tests show.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type AsyncResult, chain, chord, group, GroupResult } from "../../mod.ts";
import { MemoryBackend } from "../../src/backends/memory.ts";
import type { MemoryBroker } from "../../src/brokers/memory.ts";
import { decodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";
import type { TransportMessage } from "../../src/protocol/message.ts";
import { decodeTaskMessage, type TaskMessage } from "../../src/protocol/task.ts";
import { parseJson } from "../../src/protocol/json.ts";
import { harness } from "../helpers/harness.ts";
import { waitFor } from "../helpers/wait.ts";

const DIR = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);
// deno-lint-ignore no-explicit-any
type Fixture = Record<string, any>;
const load = (name: string): Fixture =>
  JSON.parse(Deno.readTextFileSync(new URL(`${name}.json`, DIR)));

/** The fixture's task body, parsed exactly (big integers kept). */
function fixtureBody(f: Fixture): unknown[] {
  return parseJson(Buffer.from(f.envelope.body, "base64").toString("utf8"));
}

const rawOf = new WeakMap<TaskMessage, TransportMessage>();

/** Everything waiting in a memory queue, decoded (and acked). */
async function drain(broker: MemoryBroker, queue: string): Promise<TaskMessage[]> {
  const out: TaskMessage[] = [];
  for (;;) {
    const deliveries = await broker.fetch([queue], { max: 100, timeoutMs: 0 });
    if (!deliveries.length) return out;
    for (const d of deliveries) {
      const message = decodeTaskMessage(d.message!);
      rawOf.set(message, d.message!);
      out.push(message);
      await d.ack();
    }
  }
}

/** Publishes a drained message again, to another queue. */
async function forward(broker: MemoryBroker, message: TaskMessage, queue: string): Promise<void> {
  await broker.publish(rawOf.get(message)!, { exchange: "", routingKey: queue });
}

/** Headers of a decoded message in wire form (the 16 keys, in order). */
function headersOf(message: TaskMessage): Record<string, unknown> {
  return message.headers;
}

const RUN_SPECIFIC = new Set(["id", "root_id", "parent_id", "origin", "group"]);

/** Same 16 header names in the same order, same values except run-specific ones. */
function assertHeadersLike(actual: Record<string, unknown>, expected: Record<string, unknown>) {
  assert.deepEqual(Object.keys(actual), Object.keys(expected), "header names and order");
  for (const [key, value] of Object.entries(expected)) {
    if (!RUN_SPECIFIC.has(key)) assert.deepEqual(actual[key], value, `header ${key}`);
  }
}

/** A signature dict like Python's: same keys in order; options compared without ids. */
function assertSignatureLike(actual: unknown, expected: Record<string, unknown>): void {
  const a = actual as Record<string, unknown>;
  assert.deepEqual(Object.keys(a), Object.keys(expected), "signature keys and order");
  for (const key of ["task", "args", "kwargs", "subtask_type", "immutable"]) {
    assert.deepEqual(a[key], expected[key], `signature ${key}`);
  }
  const options = { ...(a.options as Record<string, unknown>) };
  const expectedOptions = { ...(expected.options as Record<string, unknown>) };
  delete expectedOptions.reply_to; // see the module doc
  assert.deepEqual(Object.keys(options), Object.keys(expectedOptions), "option names");
  if ("task_id" in expectedOptions) assert.equal(typeof options.task_id, "string");
}

Deno.test("fixture redis-task-chain: the first message of a 3-step chain carries the rest reversed", async () => {
  const h = await harness("fx-chain");
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const f = load("redis-task-chain");
    const result = await chain(add.s(1, 2), add.s(10), add.s(100)).applyAsync() as AsyncResult;
    const [message] = await drain(h.broker, "celery");
    assert.ok(message);
    assertHeadersLike(headersOf(message), f.envelope.headers);
    assert.equal(message.rootId, message.id, "root_id defaults to the first task's id");
    assert.equal(message.parentId, null);
    const [args, kwargs, embed] = fixtureBody(f) as [unknown[], unknown, Record<string, unknown>];
    assert.deepEqual(message.args, args);
    assert.deepEqual(message.kwargs, kwargs);
    assert.deepEqual(Object.keys(message.embed), Object.keys(embed));
    const steps = embed.chain as Record<string, unknown>[];
    assert.equal(message.embed.chain?.length, 2);
    message.embed.chain!.forEach((step, i) => assertSignatureLike(step, steps[i]!));
    // Reversed: the last step first; the ids are the results' ids.
    assert.equal(message.embed.chain![0]!.options!.task_id, result.id);
    assert.equal(message.embed.chain![1]!.options!.task_id, result.parent!.id);
    assert.equal(result.parent!.parent!.id, message.id);
    assert.equal(message.correlationId, message.id);
  } finally {
    await h.close();
  }
});

Deno.test("fixture redis-task-group-member + redis-result-group: members carry group, no index; save() writes the tuple", async () => {
  const h = await harness("fx-group");
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const f = load("redis-task-group-member");
    const result = await group(add.s(1, 1), add.s(2, 2)).applyAsync();
    const messages = await drain(h.broker, "celery");
    assert.equal(messages.length, 2);
    for (const [i, message] of messages.entries()) {
      assertHeadersLike(headersOf(message), {
        ...f.envelope.headers,
        argsrepr: ["(1, 1)", "(2, 2)"][i],
      });
      assert.equal(message.group, result.id);
      assert.equal(message.groupIndex, null, "plain group members have group_index null");
      assert.equal(message.rootId, message.id);
      assert.equal(message.id, result.results[i]!.id);
      assert.deepEqual(message.embed, fixtureBody(f)[2]);
    }
    assert.deepEqual(messages[0]!.args, fixtureBody(f)[0]);
    // GroupResult.save(): {"result": [[gid, null], [[[id, null], null], …]]}
    await result.save();
    const saved = await (h.backend as MemoryBackend).restoreGroup(result.id);
    const expected = load("redis-result-group").decoded.result;
    const shape = (t: unknown) => JSON.stringify(t).replace(/"[0-9a-f-]{36}"/g, '"ID"');
    assert.equal(shape(saved), shape(expected));
    assert.deepEqual(saved, [[result.id, null], result.ids.map((id) => [[id, null], null])]);
  } finally {
    await h.close();
  }
});

Deno.test("fixture redis-task-chord-member: size stored first, members with group, index and the body", async () => {
  const order: string[] = [];
  const ref: { broker?: MemoryBroker } = {};
  class Recording extends MemoryBackend {
    override async setChordSize(groupId: string, size: number): Promise<void> {
      order.push(`size ${size} queued=${await ref.broker!.queueSize("celery")}`);
      return super.setChordSize(groupId, size);
    }
  }
  const h = await harness("fx-chord", { backend: new Recording() });
  ref.broker = h.broker;
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const xsum = h.app.task("tasks.xsum", (v: number[]) => v.reduce((a, b) => a + b, 0));
    const f = load("redis-task-chord-member");
    const result = await chord([add.s(3, 3), add.s(4, 4)], xsum.s()).applyAsync();
    assert.deepEqual(order, ["size 2 queued=0"], "the size is stored before any member is sent");
    const messages = await drain(h.broker, "celery");
    assert.equal(messages.length, 2);
    const header = result.parent as GroupResult;
    const body = fixtureBody(f) as [unknown[], unknown, Record<string, unknown>];
    for (const [i, message] of messages.entries()) {
      assertHeadersLike(headersOf(message), {
        ...f.envelope.headers,
        group_index: i,
        argsrepr: ["(3, 3)", "(4, 4)"][i],
      });
      assert.equal(message.group, header.id);
      assert.equal(message.groupIndex, i);
      assert.equal(message.rootId, message.id);
      assertSignatureLike(message.embed.chord, body[2].chord as Record<string, unknown>);
      assert.equal(message.embed.chord!.options!.task_id, result.id);
      assert.deepEqual(
        { ...message.embed, chord: null },
        { ...body[2], chord: null },
      );
    }
    assert.deepEqual(messages[0]!.args, body[0]);
    assert.deepEqual(messages[1]!.args, [4, 4]);
  } finally {
    await h.close();
  }
});

Deno.test("fixture redis-task-link: callbacks and errbacks in the embed, exactly as Python writes them", async () => {
  const h = await harness("fx-link");
  try {
    const add = h.app.task("tasks.add", (x: number, y: number) => x + y);
    const fail = h.app.task("tasks.fail", (m: string): never => {
      throw new Error(m);
    });
    const f = load("redis-task-link");
    const sig = add.s(2, 3);
    sig.link(add.s(10));
    sig.linkError(fail.si("errback"));
    await sig.applyAsync();
    const [message] = await drain(h.broker, "celery");
    assertHeadersLike(headersOf(message!), f.envelope.headers);
    assert.deepEqual(
      [message!.args, message!.kwargs, message!.embed],
      fixtureBody(f),
      "args, kwargs and embed equal Python's, byte for byte once parsed",
    );
  } finally {
    await h.close();
  }
});

/** Publishes a captured Python message (its Redis envelope) to a memory queue. */
async function replay(broker: MemoryBroker, raw: string, queue: string): Promise<void> {
  const { message } = decodeRedisEnvelope(raw);
  await broker.publish(message, { exchange: "", routingKey: queue });
}

Deno.test("fixture redis-task-chain-step2 + redis-result-chain-*: a celeriac worker continues Python's chain as Python does", async () => {
  const h = await harness("fx-chain-replay");
  try {
    h.app.task("tasks.add", (x: number, y: number) => x + y);
    const worker = h.worker({ queues: ["replay"] });
    await worker.start();
    const first = load("redis-task-chain");
    const step2 = load("redis-task-chain-step2");
    await replay(h.broker, first.raw, "replay");
    const firstId = first.envelope.headers.id;
    const meta = await h.app.asyncResult(firstId).get({ timeout: 5 });
    assert.equal(meta, 3);
    // What the worker sent next (to the default queue, not consumed here).
    await waitFor(async () => (await h.broker.queueSize("celery")) === 1);
    const [sent] = await drain(h.broker, "celery");
    assertHeadersLike(headersOf(sent!), step2.envelope.headers);
    for (const key of ["id", "root_id", "parent_id", "group"]) {
      assert.deepEqual(sent!.headers[key], step2.envelope.headers[key], `header ${key}`);
    }
    assert.equal(sent!.replyTo, step2.envelope.properties.reply_to, "same reply_to");
    assert.equal(sent!.correlationId, step2.envelope.properties.correlation_id);
    assert.deepEqual([sent!.args, sent!.kwargs, sent!.embed], fixtureBody(step2));
    // The first step's record lists the second as its child, as Python's does.
    const record = await h.app.asyncResult(firstId).meta();
    const expected = load("redis-result-chain-first").decoded;
    assert.deepEqual(Object.keys(record!), Object.keys(expected));
    assert.deepEqual(record!.children, expected.children);
    assert.deepEqual(record!.result, expected.result);
    // Run step 2 and 3 the same way: the last record has parent_id = step 2, no children.
    await replay(h.broker, step2.raw, "replay");
    await waitFor(async () => (await h.broker.queueSize("celery")) === 1);
    const [step3] = await drain(h.broker, "celery");
    assert.deepEqual(step3!.embed.chain, [], "the last step carries chain: []");
    await forward(h.broker, step3!, "replay");
    const last = load("redis-result-chain-last").decoded;
    assert.equal(await h.app.asyncResult(step3!.id).get({ timeout: 5 }), last.result);
    const lastRecord = await h.app.asyncResult(step3!.id).meta();
    assert.equal(step3!.id, last.task_id);
    assert.deepEqual(Object.keys(lastRecord!), Object.keys(last));
    assert.equal(lastRecord!.parent_id, last.parent_id);
    assert.deepEqual(lastRecord!.children, []);
  } finally {
    await h.close();
  }
});

Deno.test("fixture redis-task-chord-body + redis-result-chord-body: a celeriac worker completes Python's chord as Python does", async () => {
  const h = await harness("fx-chord-replay");
  try {
    h.app.task("tasks.add", (x: number, y: number) => x + y);
    const worker = h.worker({ queues: ["replay"] });
    await worker.start();
    const member = load("redis-task-chord-member");
    const bodyFixture = load("redis-task-chord-body");
    const gid = member.envelope.headers.group;
    await (h.backend as MemoryBackend).setChordSize(gid, 2);
    // Member 0 as captured; member 1 built the same way (Python captured only member 0).
    await replay(h.broker, member.raw, "replay");
    assert.equal(await h.app.asyncResult(member.envelope.headers.id).get({ timeout: 5 }), 6);
    const member1Id = bodyFixture.envelope.headers.parent_id; // the member that finished last
    const env = JSON.parse(member.raw);
    const [, kwargs, embed] = fixtureBody(member);
    env.body = Buffer.from(JSON.stringify([[4, 4], kwargs, embed])).toString("base64");
    Object.assign(env.headers, {
      id: member1Id,
      root_id: member1Id,
      group_index: 1,
      argsrepr: "(4, 4)",
    });
    env.properties.correlation_id = member1Id;
    await replay(h.broker, JSON.stringify(env), "replay");
    await waitFor(async () => (await h.broker.queueSize("celery")) === 1, {
      message: "the chord body was sent",
    });
    const [sent] = await drain(h.broker, "celery");
    assertHeadersLike(headersOf(sent!), bodyFixture.envelope.headers);
    for (const key of ["id", "root_id", "parent_id", "group", "argsrepr"]) {
      assert.deepEqual(sent!.headers[key], bodyFixture.envelope.headers[key], `header ${key}`);
    }
    assert.equal(sent!.replyTo, bodyFixture.envelope.properties.reply_to);
    assert.deepEqual([sent!.args, sent!.kwargs, sent!.embed], fixtureBody(bodyFixture));
    // The bookkeeping is gone.
    assert.equal(
      await (h.backend as MemoryBackend).chordPartReturn({
        groupId: gid,
        taskId: "late",
        groupIndex: 5,
        state: "SUCCESS",
        result: 0,
      }),
      null,
    );
    // Run the body here: its record is Python's (parent_id = the last member).
    h.app.task("tasks.xsum", (v: number[]) => v.reduce((a, b) => a + b, 0));
    const w2 = h.worker({ queues: ["celery"] });
    await w2.start();
    await forward(h.broker, sent!, "celery");
    const expected = load("redis-result-chord-body").decoded;
    assert.equal(await h.app.asyncResult(sent!.id).get({ timeout: 5 }), expected.result);
    const record = await h.app.asyncResult(sent!.id).meta();
    assert.deepEqual(Object.keys(record!), Object.keys(expected));
    assert.equal(record!.parent_id, expected.parent_id);
  } finally {
    await h.close();
  }
});

Deno.test("fixture redis-result-group-member: a group member's record carries group_id", async () => {
  const h = await harness("fx-group-member");
  try {
    h.app.task("tasks.add", (x: number, y: number) => x + y);
    const worker = h.worker({ queues: ["replay"] });
    await worker.start();
    const f = load("redis-task-group-member");
    await replay(h.broker, f.raw, "replay");
    const expected = load("redis-result-group-member").decoded;
    assert.equal(await h.app.asyncResult(f.envelope.headers.id).get({ timeout: 5 }), 2);
    const record = await h.app.asyncResult(f.envelope.headers.id).meta();
    assert.deepEqual(Object.keys(record!), Object.keys(expected));
    assert.equal(record!.group_id, expected.group_id);
  } finally {
    await h.close();
  }
});

Deno.test("fixtures amqp-task-chain/chord-member/group-member: the same canvas bodies and headers as on Redis", () => {
  // The canvas is transport-neutral: what the Redis tests above check covers AMQP too.
  const ids = (v: unknown) => JSON.stringify(v).replace(/"[0-9a-f-]{36}"/g, '"ID"');
  for (const name of ["chain", "chord-member", "group-member"]) {
    const amqp = load(`amqp-task-${name}`);
    const redis = load(`redis-task-${name}`);
    assert.equal(ids(amqp.body_decoded), ids(fixtureBody(redis)), `${name} body`);
    for (const key of ["group_index", "argsrepr", "task", "retries", "parent_id"]) {
      assert.deepEqual(amqp.headers[key], redis.envelope.headers[key], `${name} header ${key}`);
    }
  }
});
