/**
 * src/protocol/task.ts: what specific Celery 5.2 samples carry (canvas links, times,
 * retries, restore marks, big integers), what a worker must refuse, and how we encode.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { DecodeError, InvalidTaskError } from "../../src/errors.ts";
import { decodeJsonBody, type TransportMessage } from "../../src/protocol/message.ts";
import { decodeRedisEnvelope, markRedelivered } from "../../src/protocol/redis_envelope.ts";
import {
  decodeTaskMessage,
  encodeTaskMessage,
  type TaskCall,
  type TaskMessage,
} from "../../src/protocol/task.ts";
import { amqpMessage, loadFixture, text, utf8 } from "./_fixtures.ts";

function redisTask(name: string): TaskMessage {
  return decodeTaskMessage(decodeRedisEnvelope(loadFixture(name).raw).message);
}

function amqpTask(name: string): TaskMessage {
  return decodeTaskMessage(amqpMessage(loadFixture(name)));
}

/** A minimal message: headers {task, id} and a JSON body. */
function message(
  overrides: Partial<TransportMessage> & { bodyText?: string } = {},
): TransportMessage {
  const { bodyText, ...rest } = overrides;
  return {
    headers: { task: "tasks.add", id: "id-1" },
    properties: {},
    contentType: "application/json",
    contentEncoding: "utf-8",
    body: utf8(bodyText ?? "[[1, 2], {}, {}]"),
    ...rest,
  };
}

const NOW = new Date(Date.UTC(2026, 10, 23, 7, 53, 23, 703));

/** The call that produced a decoded message. */
function callOf(task: TaskMessage, origin = "gen1@h"): TaskCall {
  return {
    id: task.id,
    task: task.task,
    args: task.args,
    kwargs: task.kwargs,
    eta: task.eta,
    expires: task.expires,
    retries: task.retries,
    timelimit: task.timelimit,
    rootId: task.rootId,
    parentId: task.parentId,
    group: task.group,
    groupIndex: task.groupIndex,
    origin,
    ignoreResult: task.ignoreResult,
    replyTo: task.replyTo ?? "",
    priority: task.priority,
    embed: task.embed,
  };
}

// ---------------------------------------------------------------------------------------
// Samples

Deno.test("kwargs-unicode: 2**53 + 1 stays an exact bigint; text and floats as Python sent", () => {
  for (
    const task of [redisTask("redis-task-kwargs-unicode"), amqpTask("amqp-task-kwargs-unicode")]
  ) {
    assert.equal(task.task, "tasks.echo");
    assert.deepEqual(task.args, []);
    assert.equal(typeof task.kwargs.big, "bigint");
    assert.equal(task.kwargs.big, 9007199254740993n);
    assert.deepEqual(task.kwargs, {
      name: "Zoë ☃",
      n: 1,
      f: 1.5,
      big: 9007199254740993n,
      none: null,
      list: [1, "a", null, true],
      nested: { k: [1.25] },
    });
    assert.equal(
      task.kwargsrepr,
      "{'name': 'Zoë ☃', 'n': 1, 'f': 1.5, 'big': 9007199254740993, 'none': None, " +
        "'list': [1, 'a', None, True], 'nested': {'k': [1.25]}}",
    );
    const again = encodeTaskMessage(callOf(task), NOW);
    assert.equal(again.headers.kwargsrepr, task.kwargsrepr);
    assert.equal(again.headers.argsrepr, "()");
    assert.match(text(again.body), /"big":9007199254740993[,}]/, "written back exactly");
  }
});

Deno.test("basic: (2,) and {'y': 3} on both transports", () => {
  for (const task of [redisTask("redis-task-basic"), amqpTask("amqp-task-basic")]) {
    assert.deepEqual([task.args, task.kwargs], [[2], { y: 3 }]);
    assert.deepEqual([task.argsrepr, task.kwargsrepr], ["(2,)", "{'y': 3}"]);
    assert.equal(task.rootId, task.id);
    assert.equal(task.correlationId, task.id);
    assert.deepEqual(task.timelimit, [null, null]);
    assert.deepEqual(task.embed, { callbacks: null, errbacks: null, chain: null, chord: null });
    assert.equal(task.eta, null);
    assert.equal(task.expires, null);
    assert.equal(task.retries, 0);
    assert.equal(task.priority, 0);
    assert.match(task.origin ?? "", /^gen\d+@vm$/);
  }
});

Deno.test("chain: remaining steps reversed in embed.chain; step 2 as the worker sent it", () => {
  const first = redisTask("redis-task-chain");
  assert.deepEqual(first.args, [1, 2]);
  const chain = first.embed.chain!;
  assert.deepEqual(chain.map((s) => s.args), [[100], [10]], "last element = next step");
  for (const sig of chain) {
    assert.deepEqual(Object.keys(sig), [
      "task",
      "args",
      "kwargs",
      "options",
      "subtask_type",
      "immutable",
    ]);
    assert.equal(sig.subtask_type, null);
    assert.equal(sig.immutable, false);
  }
  const step2 = redisTask("redis-task-chain-step2");
  assert.equal(step2.id, chain[1]!.options!.task_id, "the frozen id of the next step");
  assert.deepEqual(step2.args, [3, 10], "(retval,) + the signature's args");
  assert.equal(step2.argsrepr, "(3, 10)");
  assert.equal(step2.parentId, first.id);
  assert.equal(step2.rootId, first.id);
  assert.deepEqual(step2.embed.chain, [chain[0]]);
  assert.equal(step2.replyTo, first.replyTo);
  const amqp = amqpTask("amqp-task-chain");
  assert.deepEqual(amqp.embed.chain!.map((s) => s.args), [[100], [10]]);
});

Deno.test("chord: header members carry group, group_index and the body; the body gets [[r0, r1]]", () => {
  for (const member of [redisTask("redis-task-chord-member"), amqpTask("amqp-task-chord-member")]) {
    assert.match(member.group ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(member.groupIndex, 0);
    assert.equal(member.embed.chord?.task, "tasks.xsum");
    assert.deepEqual(member.embed.chord?.args, []);
  }
  const member = redisTask("redis-task-chord-member");
  const body = redisTask("redis-task-chord-body");
  assert.equal(body.id, member.embed.chord!.options!.task_id);
  assert.deepEqual(body.args, [[6, 8]]);
  assert.equal(body.argsrepr, "([6, 8],)");
  assert.equal(body.group, null);
  assert.equal(body.groupIndex, null);
  assert.notEqual(body.parentId, null);
  assert.equal(body.parentId, body.rootId);
});

Deno.test("group member: group set, group_index null", () => {
  for (const task of [redisTask("redis-task-group-member"), amqpTask("amqp-task-group-member")]) {
    assert.match(task.group ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(task.groupIndex, null);
    assert.equal(task.headers.group_index, null);
  }
});

Deno.test("link and link_error: callbacks and errbacks in the embed", () => {
  const task = redisTask("redis-task-link");
  assert.deepEqual(task.embed.callbacks, [{
    task: "tasks.add",
    args: [10],
    kwargs: {},
    options: {},
    subtask_type: null,
    immutable: false,
  }]);
  assert.deepEqual(task.embed.errbacks, [{
    task: "tasks.fail",
    args: ["errback"],
    kwargs: {},
    options: {},
    subtask_type: null,
    immutable: true,
  }]);
});

Deno.test("countdown=60, expires=120: eta and expires 60 s apart, expiration 120000", () => {
  for (const name of ["redis-task-countdown-expires", "amqp-task-countdown-expires"]) {
    const f = loadFixture(name);
    const task = name.startsWith("redis") ? redisTask(name) : amqpTask(name);
    assert.equal(task.expires!.getTime() - task.eta!.getTime(), 60_000);
    const props = f.transport === "redis" ? f.envelope.properties : f.properties;
    assert.equal(props.expiration, "120000");
    const publishedAt = new Date(task.eta!.getTime() - 60_000);
    const again = encodeTaskMessage(
      { id: task.id, task: task.task, origin: "o", eta: task.eta, expires: task.expires },
      publishedAt,
    );
    assert.equal(again.properties.expiration, "120000");
    // Python's microseconds, cut to our milliseconds.
    assert.equal(again.headers.eta, String(task.headers.eta).replace(/(\.\d{3})\d{3}/, "$1000"));
    assert.equal(
      again.headers.expires,
      String(task.headers.expires).replace(/(\.\d{3})\d{3}/, "$1000"),
    );
  }
});

Deno.test("aware datetimes: Python drops a zero fraction, we always write six digits", () => {
  const task = redisTask("redis-task-eta-expires-datetime");
  assert.equal(task.headers.eta, "2031-01-01T12:00:00+00:00");
  assert.equal(task.eta?.toISOString(), "2031-01-01T12:00:00.000Z");
  assert.equal(task.expires?.toISOString(), "2031-01-01T13:00:00.000Z");
  const again = encodeTaskMessage(callOf(task), NOW);
  assert.equal(again.headers.eta, "2031-01-01T12:00:00.000000+00:00");
  assert.equal(again.headers.expires, "2031-01-01T13:00:00.000000+00:00");
});

Deno.test('already expired when sent: expiration is clamped to "0"', () => {
  const f = loadFixture("redis-task-expired");
  const task = redisTask("redis-task-expired");
  assert.equal(f.envelope.properties.expiration, "0");
  const later = new Date(task.expires!.getTime() + 5000);
  assert.equal(
    encodeTaskMessage(callOf(task), later).properties.expiration,
    "0",
  );
});

Deno.test("priority 5: a property on both transports (Redis bucket celery\\x06\\x163)", () => {
  const f = loadFixture("redis-task-priority");
  assert.equal(f.key, "celery\x06\x163");
  assert.equal(redisTask("redis-task-priority").priority, 5);
  assert.equal(amqpTask("amqp-task-priority").priority, 5);
  const again = encodeTaskMessage({ id: "i", task: "t", origin: "o", priority: 5 }, NOW);
  assert.equal(again.properties.priority, 5);
});

Deno.test("restored at shutdown: markRedelivered of the sent envelope is what kombu pushed back", () => {
  const sent = loadFixture("redis-task-countdown-expires");
  const restored = loadFixture("redis-task-restored");
  const ours = markRedelivered(sent.raw);
  assert.deepEqual(JSON.parse(ours), JSON.parse(restored.raw));
  assert.deepEqual(Object.keys(JSON.parse(ours).headers), Object.keys(restored.envelope.headers));
  const { message, deliveryTag } = decodeRedisEnvelope(restored.raw);
  assert.equal(deliveryTag, sent.envelope.properties.delivery_tag, "the tag is kept");
  assert.equal(message.deliveryInfo?.redelivered, true);
  const task = decodeTaskMessage(message);
  assert.equal(task.headers.redelivered, true);
  assert.equal(task.id, sent.envelope.headers.id);
});

Deno.test("retry republish: same id, retries 1, parent_id = own id, new eta, leaked properties", () => {
  const f = loadFixture("redis-task-retry-republished");
  const task = redisTask("redis-task-retry-republished");
  assert.equal(task.task, "tasks.retry_once");
  assert.equal(task.retries, 1);
  assert.equal(task.parentId, task.id);
  assert.equal(task.rootId, task.id);
  assert.ok(task.eta instanceof Date);
  assert.deepEqual(task.args, [7]);
  const props = f.envelope.properties;
  assert.equal(props.replaced_task_nesting, 0);
  assert.match(props.origin, /^gen\d+@vm$/);
  assert.deepEqual(decodeRedisEnvelope(f.raw).message.properties.replaced_task_nesting, 0);
  const again = encodeTaskMessage({
    id: task.id,
    task: task.task,
    args: task.args,
    retries: task.retries,
    parentId: task.id,
    rootId: task.rootId,
    eta: task.eta,
    origin: task.origin!,
  }, NOW);
  assert.equal(again.headers.retries, 1);
  assert.equal(again.headers.parent_id, task.id);
  assert.equal(again.headers.argsrepr, "(7,)");
});

// ---------------------------------------------------------------------------------------
// What a worker must refuse

Deno.test("decodeTaskMessage refuses protocol-breaking messages with InvalidTaskError", () => {
  const cases: [string, TransportMessage, RegExp, string | undefined][] = [
    ["no task header (v1)", message({ headers: { id: "i" } }), /header 'task' is missing/, "i"],
    ["no id header", message({ headers: { task: "t" } }), /header 'id' is missing/, undefined],
    ["empty id", message({ headers: { task: "t", id: "" } }), /header 'id' is missing/, undefined],
    ["2-element body", message({ bodyText: "[[1], {}]" }), /\[args, kwargs, embed\]/, "id-1"],
    [
      "4-element body",
      message({ bodyText: "[[1], {}, {}, 1]" }),
      /\[args, kwargs, embed\]/,
      "id-1",
    ],
    ["object body", message({ bodyText: '{"args": []}' }), /\[args, kwargs, embed\]/, "id-1"],
    [
      "wrong element types",
      message({ bodyText: "[{}, [], {}]" }),
      /\[array, object, object\]/,
      "id-1",
    ],
    ["embed a list", message({ bodyText: "[[], {}, []]" }), /\[array, object, object\]/, "id-1"],
    ["bad JSON", message({ bodyText: "[[1], {}, {" }), /Cannot parse message body as JSON/, "id-1"],
    ["empty body", message({ bodyText: "" }), /Cannot parse message body as JSON/, "id-1"],
    [
      "pickle",
      message({ contentType: "application/x-python-serialize" }),
      /only "application\/json" is accepted/,
      "id-1",
    ],
    [
      "bad eta",
      message({ headers: { task: "t", id: "i", eta: "tomorrow" } }),
      /Cannot read header 'eta' of task "i"/,
      "i",
    ],
    [
      "impossible eta",
      message({ headers: { task: "t", id: "i", eta: "2026-02-30T10:00:00+00:00" } }),
      /header 'eta'/,
      "i",
    ],
    [
      "bad expires",
      message({ headers: { task: "t", id: "i", expires: ["2026"] } }),
      /Cannot read header 'expires'/,
      "i",
    ],
  ];
  for (const [what, msg, pattern, taskId] of cases) {
    assert.throws(() => decodeTaskMessage(msg), (err: unknown) => {
      assert.ok(err instanceof InvalidTaskError, `${what}: ${err}`);
      assert.ok(err instanceof DecodeError, what);
      assert.match(err.message, pattern, what);
      assert.equal(err.taskId, taskId, what);
      assert.ok(err.raw instanceof Uint8Array, what);
      assert.deepEqual(err.raw, msg.body, `${what}: carries the raw body`);
      return true;
    }, what);
  }
});

Deno.test("minimal messages decode with defaults (headers {task, id}, embed {} or null)", () => {
  for (const bodyText of ["[[1, 2], {}, {}]", "[[1, 2], {}, null]"]) {
    const task = decodeTaskMessage(message({ bodyText }));
    assert.deepEqual(task.embed, { callbacks: null, errbacks: null, chain: null, chord: null });
    assert.equal(task.argsrepr, "(1, 2)", "computed when the header is absent");
    assert.equal(task.kwargsrepr, "{}");
    assert.deepEqual(task.timelimit, [null, null]);
    assert.equal(task.retries, 0);
    assert.equal(task.rootId, null);
    assert.equal(task.replyTo, null);
    assert.equal(task.displayName, "tasks.add");
  }
  const shadowed = decodeTaskMessage(
    message({ headers: { task: "tasks.add", id: "i", shadow: "nice name" } }),
  );
  assert.equal(shadowed.displayName, "nice name");
});

Deno.test("eta/expires: +00:00, Z, naive (UTC), other offsets, 1 to 9 digits, unix seconds", () => {
  const at = Date.UTC(2026, 10, 23, 6, 23, 39, 669);
  for (
    const eta of [
      "2026-11-23T06:23:39.669930+00:00",
      "2026-11-23T06:23:39.669930Z",
      "2026-11-23T06:23:39.669930",
      "2026-11-23T08:23:39.669+02:00",
      "2026-11-23T06:23:39.669930123+00:00",
      "2026-11-23T06:23:39.6699",
      at / 1000,
    ]
  ) {
    const task = decodeTaskMessage(message({ headers: { task: "t", id: "i", eta } }));
    assert.equal(task.eta?.getTime(), at, String(eta));
  }
  const tenths = decodeTaskMessage(
    message({ headers: { task: "t", id: "i", expires: "2026-11-23T06:23:39.5Z" } }),
  );
  assert.equal(tenths.expires?.getTime(), Date.UTC(2026, 10, 23, 6, 23, 39, 500));
  const none = decodeTaskMessage(message({ headers: { task: "t", id: "i", eta: "" } }));
  assert.equal(none.eta, null);
  const rounded = decodeTaskMessage(message({ headers: { task: "t", id: "i", eta: 1.001 } }));
  assert.equal(rounded.eta?.getTime(), 1001, "1.001 * 1000 is 1000.9999999999999");
});

Deno.test("compressed bodies: application/x-gzip is a zlib stream; unknown methods are refused", () => {
  const plain = Buffer.from("[[7], {}, {}]");
  const zlib = message({
    headers: { task: "t", id: "i", compression: "application/x-gzip" },
    body: new Uint8Array(deflateSync(plain)),
  });
  assert.deepEqual(decodeTaskMessage(zlib).args, [7]);
  const brotli = message({
    headers: { task: "t", id: "i", compression: "application/x-brotli" },
    body: new Uint8Array(brotliCompressSync(plain)),
  });
  assert.deepEqual(decodeTaskMessage(brotli).args, [7]);
  // A real gzip file is not what kombu's "gzip" means.
  const gzip = message({
    headers: { task: "t", id: "i", compression: "application/x-gzip" },
    body: new Uint8Array(gzipSync(plain)),
  });
  assert.throws(() => decodeTaskMessage(gzip), DecodeError);
  for (const compression of ["application/x-bz2", "application/x-lzma", "application/x-snappy"]) {
    const msg = message({ headers: { task: "t", id: "i", compression } });
    assert.throws(() => decodeJsonBody(msg), (err: unknown) => {
      assert.ok(err instanceof DecodeError && !(err instanceof InvalidTaskError));
      assert.match(err.message, /is not supported/);
      assert.deepEqual(err.raw, msg.body);
      return true;
    });
    assert.throws(() => decodeTaskMessage(msg), (err: unknown) => {
      assert.ok(err instanceof InvalidTaskError && err instanceof DecodeError);
      assert.equal(err.taskId, "i");
      return true;
    });
  }
});

// ---------------------------------------------------------------------------------------
// Encoding

Deno.test("encodeTaskMessage: Celery's 16 headers in order, then extra headers (never replacing)", () => {
  const msg = encodeTaskMessage({
    id: "x",
    task: "tasks.add",
    args: [1],
    origin: "o",
    headers: { custom: 1, task: "evil", zz: "last" },
  }, NOW);
  assert.deepEqual(Object.keys(msg.headers), [
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "custom",
    "zz",
  ]);
  assert.equal(msg.headers.task, "tasks.add");
  assert.deepEqual(Object.keys(msg.properties), [
    "correlation_id",
    "reply_to",
    "delivery_mode",
    "priority",
  ]);
  assert.deepEqual(msg.properties, {
    correlation_id: "x",
    reply_to: "",
    delivery_mode: 2,
    priority: 0,
  });
  assert.deepEqual(decodeJsonBody(msg), [[1], {}, {
    callbacks: null,
    errbacks: null,
    chain: null,
    chord: null,
  }]);
});

Deno.test("encodeTaskMessage: root_id defaults to id (also when empty), expiration only with expires", () => {
  const msg = encodeTaskMessage({ id: "x", task: "t", origin: "o", rootId: "" }, NOW);
  assert.equal(msg.headers.root_id, "x");
  assert.ok(!("expiration" in msg.properties));
  const withExpires = encodeTaskMessage({
    id: "x",
    task: "t",
    origin: "o",
    expires: new Date(NOW.getTime() + 1500),
  }, NOW);
  assert.equal(withExpires.properties.expiration, "1500");
  assert.deepEqual(Object.keys(withExpires.properties), [
    "correlation_id",
    "reply_to",
    "delivery_mode",
    "expiration",
    "priority",
  ]);
});

Deno.test("encodeTaskMessage refuses bad calls", () => {
  assert.throws(() => encodeTaskMessage({ id: "", task: "t", origin: "o" }, NOW), TypeError);
  assert.throws(() => encodeTaskMessage({ id: "i", task: "", origin: "o" }, NOW), TypeError);
  assert.throws(
    () => encodeTaskMessage({ id: "i", task: "t", origin: "o", args: {} as never }, NOW),
    TypeError,
  );
  assert.throws(
    () => encodeTaskMessage({ id: "i", task: "t", origin: "o", kwargs: [] as never }, NOW),
    TypeError,
  );
  assert.throws(
    () => encodeTaskMessage({ id: "i", task: "t", origin: "o", eta: new Date(NaN) }, NOW),
    RangeError,
  );
});

Deno.test("encode then decode keeps every field", () => {
  const call = {
    id: "0a0f69e8-f252-4f8a-ab67-5b6a59e13357",
    task: "tasks.add",
    args: [2, "x", 2n ** 64n],
    kwargs: { debug: true },
    eta: new Date(NOW.getTime() + 60_000),
    expires: new Date(NOW.getTime() + 120_000),
    retries: 2,
    timelimit: [30, 20] as [number, number],
    rootId: "root",
    parentId: "parent",
    group: "g",
    groupIndex: 1,
    shadow: "shown",
    origin: "gen7@host",
    ignoreResult: true,
    replyTo: "reply",
    priority: 3,
    embed: { chain: [{ task: "tasks.next", args: [], kwargs: {}, options: {} }] },
  };
  const task = decodeTaskMessage(encodeTaskMessage(call, NOW));
  assert.deepEqual(
    {
      id: task.id,
      task: task.task,
      args: task.args,
      kwargs: task.kwargs,
      eta: task.eta,
      expires: task.expires,
      retries: task.retries,
      timelimit: task.timelimit,
      rootId: task.rootId,
      parentId: task.parentId,
      group: task.group,
      groupIndex: task.groupIndex,
      shadow: task.displayName,
      origin: task.origin,
      ignoreResult: task.ignoreResult,
      replyTo: task.replyTo,
      priority: task.priority,
      embed: { chain: task.embed.chain },
    },
    call,
  );
  assert.equal(task.argsrepr, "(2, 'x', 18446744073709551616)");
  assert.equal(task.kwargsrepr, "{'debug': True}");
  assert.equal(task.correlationId, call.id);
});
