/**
 * Every file of shared/fixtures/celery-5.2 (traffic captured from Python Celery 5.2.6 on Redis
 * and RabbitMQ) through the protocol code: task messages decoded field by field and encoded
 * again from the same call, result records decoded and rebuilt, events, remote-control
 * messages, the unacked entry and the key snapshot decoded. The last test fails when a file
 * of the directory was handled by no case.
 */

import assert from "node:assert/strict";
import { DecodeError } from "../../src/errors.ts";
import { decodeJsonBody, type TransportMessage } from "../../src/protocol/message.ts";
import {
  decodeRedisEnvelope,
  encodeRedisEnvelope,
  markRedelivered,
} from "../../src/protocol/redis_envelope.ts";
import { decodeTaskMessage, encodeTaskMessage } from "../../src/protocol/task.ts";
import {
  buildResultMeta,
  decodeResultMeta,
  encodeResultMeta,
  EXCEPTION_STATES,
  READY_STATES,
} from "../../src/protocol/result.ts";
import { readException } from "../../src/protocol/exception.ts";
import { parseJson } from "../../src/protocol/json.ts";
import { parseIso } from "../../src/protocol/time.ts";
import {
  amqpMessage,
  type Fixture,
  FIXTURE_DIR,
  fixtureNames,
  fromBase64,
  keysWithout,
  loadFixture,
  pythonIsoMs,
  text,
} from "./_fixtures.ts";

const NAMES = fixtureNames();
const handled = new Set<string>();

/** Files matching `pattern`, marked as handled. */
function files(pattern: RegExp): string[] {
  const out = NAMES.filter((n) => pattern.test(n));
  for (const n of out) handled.add(n);
  return out;
}

Deno.test("the fixture directory resolves to shared/fixtures/celery-5.2 beside the repository", () => {
  assert.ok(FIXTURE_DIR.pathname.endsWith("/shared/fixtures/celery-5.2/"), FIXTURE_DIR.href);
  assert.ok(Deno.statSync(new URL("README.md", FIXTURE_DIR)).isFile);
  assert.ok(NAMES.length >= 79, `only ${NAMES.length} fixtures found in ${FIXTURE_DIR.href}`);
  for (const name of NAMES) {
    const f = loadFixture(name);
    assert.equal(f.fixture, name.replace(/\.json$/, ""));
    assert.equal(f.versions.celery, "5.2.6");
    assert.equal(f.versions.kombu, "5.2.4");
  }
});

// ---------------------------------------------------------------------------------------
// Task messages

const ETA_FORMAT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/;
/** kombu adds these to Redis envelope properties; not part of the message's own properties. */
const KOMBU_PROPS = ["delivery_info", "body_encoding", "delivery_tag"];
/** Leaked by Celery's retry into properties (an apply_async option); we do not send them. */
const LEAKED_PROPS = ["replaced_task_nesting", "origin"];

interface TaskSample {
  message: TransportMessage;
  headers: Record<string, unknown>;
  properties: Record<string, unknown>;
  body: [unknown[], Record<string, unknown>, Record<string, unknown>];
}

function taskSample(f: Fixture): TaskSample {
  if (f.transport === "redis") {
    const { message, deliveryTag } = decodeRedisEnvelope(f.raw);
    const props = f.envelope.properties;
    assert.equal(deliveryTag, props.delivery_tag);
    const info = { exchange: props.delivery_info.exchange, routingKey: "celery" };
    assert.equal(props.delivery_info.routing_key, "celery");
    assert.deepEqual(
      message.deliveryInfo,
      props.delivery_info.redelivered ? { ...info, redelivered: true } : info,
    );
    assert.deepEqual(message.headers, f.envelope.headers);
    const own = Object.fromEntries(
      Object.entries(props).filter(([k]) => !KOMBU_PROPS.includes(k)),
    );
    assert.deepEqual(message.properties, own);
    assert.equal(message.contentType, f.envelope["content-type"]);
    assert.equal(message.contentEncoding, f.envelope["content-encoding"]);
    assert.equal(text(message.body), fromBase64(f.envelope.body), "body bytes as sent");
    return { message, headers: f.envelope.headers, properties: props, body: f.body };
  }
  const message = amqpMessage(f);
  return { message, headers: f.headers, properties: f.properties, body: f.body_decoded };
}

/** The `now` at which Python computed `expiration` (relative ms) from `expires`. */
function publishTime(expires: Date | null, properties: Record<string, unknown>): Date {
  if (!expires) return new Date(Date.UTC(2026, 10, 23, 7, 53, 25));
  const ms = Number(properties.expiration);
  return new Date(expires.getTime() - (ms > 0 ? ms : -5000));
}

for (const name of files(/^(redis|amqp)-task-.*\.json$/)) {
  Deno.test(`fixture ${name}: task message decodes to every field Python sent`, () => {
    const f = loadFixture(name);
    const { message, headers, properties, body } = taskSample(f);
    assert.deepEqual(decodeJsonBody(message), body, "body, big integers exact");
    const task = decodeTaskMessage(message);
    const [args, kwargs, embed] = body;
    assert.equal(task.id, headers.id);
    assert.equal(task.task, headers.task);
    assert.equal(task.displayName, headers.shadow ?? headers.task);
    assert.deepEqual(task.args, args);
    assert.deepEqual(task.kwargs, kwargs);
    assert.deepEqual(task.embed, embed);
    assert.equal(
      task.eta?.getTime() ?? null,
      headers.eta ? pythonIsoMs(String(headers.eta)) : null,
    );
    assert.equal(
      task.expires?.getTime() ?? null,
      headers.expires ? pythonIsoMs(String(headers.expires)) : null,
    );
    assert.equal(task.retries, headers.retries);
    assert.deepEqual(task.timelimit, headers.timelimit);
    assert.equal(task.rootId, headers.root_id);
    assert.equal(task.parentId, headers.parent_id);
    assert.equal(task.group, headers.group);
    assert.equal(task.groupIndex, headers.group_index);
    assert.equal(task.origin, headers.origin);
    assert.equal(task.ignoreResult, headers.ignore_result);
    assert.equal(task.argsrepr, headers.argsrepr);
    assert.equal(task.kwargsrepr, headers.kwargsrepr);
    assert.equal(task.replyTo, properties.reply_to);
    assert.equal(task.correlationId, properties.correlation_id);
    assert.equal(task.priority, properties.priority);
    assert.deepEqual(task.headers, headers);
  });

  Deno.test(`fixture ${name}: the same call encoded by us matches Python field by field`, () => {
    const f = loadFixture(name);
    const { message, headers, properties, body } = taskSample(f);
    const task = decodeTaskMessage(message);
    const again = encodeTaskMessage({
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
      shadow: task.headers.shadow as string | null,
      origin: task.origin!,
      ignoreResult: task.ignoreResult,
      replyTo: task.replyTo!,
      priority: task.priority,
      embed: task.embed,
    }, publishTime(task.expires, properties));

    // Headers: Celery's 16 keys in Celery's order, the same values (argsrepr/kwargsrepr
    // computed by us from the arguments), eta/expires as the same instant.
    const pythonKeys = keysWithout(headers, "redelivered");
    assert.deepEqual(Object.keys(again.headers), pythonKeys, "header keys and order");
    for (const key of pythonKeys) {
      if (key === "eta" || key === "expires") {
        if (headers[key] === null) assert.equal(again.headers[key], null, key);
        else {
          assert.match(String(again.headers[key]), ETA_FORMAT, `${key}: 6 digits and +00:00`);
          assert.equal(
            parseIso(String(again.headers[key]))?.getTime(),
            pythonIsoMs(String(headers[key])),
            key,
          );
        }
      } else assert.deepEqual(again.headers[key], headers[key], `header ${key}`);
    }

    // Properties: the same keys and values (expiration included), kombu's additions and the
    // retry's leaked options aside.
    const pythonProps = keysWithout(
      properties,
      ...KOMBU_PROPS,
      ...LEAKED_PROPS,
      "content_type",
      "content_encoding",
    );
    assert.deepEqual(Object.keys(again.properties).sort(), [...pythonProps].sort());
    for (const key of pythonProps) {
      assert.deepEqual(again.properties[key], properties[key], `property ${key}`);
    }
    assert.equal(again.contentType, message.contentType);
    assert.equal(again.contentEncoding, message.contentEncoding);
    assert.deepEqual(decodeJsonBody(again), body, "same decoded body");

    if (f.transport !== "redis") return;
    // The envelope: same keys, kombu's property order, the restore marks where kombu puts them.
    const info = properties.delivery_info as { exchange: string; routing_key: string };
    let raw = encodeRedisEnvelope(again, {
      exchange: info.exchange,
      routingKey: info.routing_key,
      deliveryTag: String(properties.delivery_tag),
    });
    if (headers.redelivered === true) raw = markRedelivered(raw);
    const env = JSON.parse(raw);
    assert.deepEqual(Object.keys(env), Object.keys(f.envelope));
    assert.equal(env["content-type"], f.envelope["content-type"]);
    assert.equal(env["content-encoding"], f.envelope["content-encoding"]);
    assert.deepEqual(Object.keys(env.headers), Object.keys(headers));
    const pythonEnvProps = Object.fromEntries(
      Object.entries(properties).filter(([k]) => !LEAKED_PROPS.includes(k)),
    );
    assert.deepEqual(env.properties, pythonEnvProps);
    assert.deepEqual(Object.keys(env.properties), Object.keys(pythonEnvProps), "property order");
    const back = decodeTaskMessage(decodeRedisEnvelope(raw).message);
    assert.deepEqual({ ...back, headers: null }, { ...task, headers: null });
  });
}

// ---------------------------------------------------------------------------------------
// Results (Redis backend, db 1)

/** A naive UTC ISO `date_done` as a Date (for rebuilding the same record). */
function dateDone(meta: { date_done: string | null }): Date {
  return meta.date_done ? new Date(pythonIsoMs(meta.date_done)) : new Date(0);
}

for (const name of files(/^redis-result-.*\.json$/)) {
  const f = loadFixture(name);
  if (f.decoded?.status) {
    Deno.test(`fixture ${name}: result record decodes, and we rebuild it in Python's order`, () => {
      const meta = decodeResultMeta(f.raw);
      assert.deepEqual(meta, f.decoded);
      assert.deepEqual(Object.keys(meta), Object.keys(f.decoded));
      const ours = buildResultMeta({
        taskId: meta.task_id,
        status: meta.status,
        result: meta.result,
        traceback: meta.traceback,
        children: meta.children,
        groupId: meta.group_id,
        parentId: meta.parent_id,
      }, dateDone(meta));
      assert.deepEqual(Object.keys(ours), Object.keys(f.decoded), "field order");
      assert.deepEqual({ ...ours, date_done: null }, { ...f.decoded, date_done: null });
      if (READY_STATES.has(meta.status)) {
        assert.match(String(ours.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$/);
        assert.match(String(f.decoded.date_done), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$/);
        assert.equal(pythonIsoMs(String(ours.date_done)), pythonIsoMs(f.decoded.date_done));
      } else assert.equal(ours.date_done, null);
      assert.deepEqual(decodeResultMeta(encodeResultMeta(ours)), ours, "round trip");
      if (EXCEPTION_STATES.has(meta.status)) {
        assert.deepEqual(readException(meta.result), f.decoded.result);
      }
    });
  } else if (name === "redis-result-group.json") {
    Deno.test(`fixture ${name}: GroupResult.save() record (not a task record)`, () => {
      assert.throws(() => decodeResultMeta(f.raw), DecodeError);
      const value = parseJson(f.raw);
      assert.deepEqual(value, f.decoded);
      assert.deepEqual(value.result[0], [f.group_id, null]);
      assert.deepEqual(
        value.result[1],
        f.member_ids.map((id: string) => [[id, null], null]),
      );
    });
  } else if (name === "redis-result-chord-size.json") {
    Deno.test(`fixture ${name}: chord size counter (not a task record)`, () => {
      assert.throws(() => decodeResultMeta(f.raw), DecodeError);
      assert.equal(parseJson(f.raw), 2);
      assert.deepEqual(f.commands, [
        ["SETEX", f.key, "86400", "2"],
        ["PUBLISH", f.key, "2"],
      ]);
    });
  } else if (name === "redis-result-chord-join.json") {
    Deno.test(`fixture ${name}: ZADD members are [1, id, state, result] in header order`, () => {
      const member = loadFixture("redis-task-chord-member");
      const bodyTask = loadFixture("redis-task-chord-body");
      assert.equal(f.group_id, member.envelope.headers.group);
      const key = `celery-taskset-meta-${f.group_id}.j`;
      const zadds = (f.commands as string[][]).filter((c) => c[0] === "ZADD");
      assert.equal(zadds.length, 2);
      const entries = zadds.map(([, k, score, value]) => {
        assert.equal(k, key);
        const [version, id, state, result] = parseJson(value!);
        assert.deepEqual([version, state], [1, "SUCCESS"]);
        return { index: Number(score), id, result };
      });
      assert.deepEqual(entries.map((e) => e.index), [0, 1]);
      assert.equal(entries[0]!.id, member.envelope.headers.id, "header member 0");
      // The body received the results ordered by group_index.
      assert.deepEqual(bodyTask.body[0], [entries.map((e) => e.result)]);
      const commands = (f.commands as string[][]).map((c) => c[0]);
      assert.ok(commands.includes("ZRANGE") && commands.includes("DEL"));
    });
  } else {
    Deno.test(`fixture ${name}: unknown result sample`, () => {
      assert.fail(`no case for ${name}`);
    });
  }
}

// ---------------------------------------------------------------------------------------
// Events and remote control (pidbox)

/** The capture sanitized the task file path in `body` but not in the raw bytes. */
function samePaths(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(
      value,
      (_k, v) =>
        typeof v === "string" ? v.replace(/File "[^"]*\/tasks\.py"/g, 'File "tasks.py"') : v,
    ),
  );
}

function checkEventBody(f: Fixture, body: unknown, routingKey: string): void {
  if (!f.event) return;
  assert.equal(
    routingKey,
    f.event.type.startsWith("task-") ? "task.multi" : f.event.type
      .replace(/-/g, "."),
  );
  const events = Array.isArray(body) ? body : [body];
  assert.equal(Array.isArray(body), routingKey === "task.multi", "task events come batched");
  assert.ok(
    events.some((e) => JSON.stringify(samePaths(e)) === JSON.stringify(samePaths(f.event))),
    `event ${f.event.type} in the body`,
  );
  for (const e of events) {
    for (const field of ["hostname", "utcoffset", "pid", "clock", "timestamp", "type"]) {
      assert.ok(field in e, `${e.type} has ${field}`);
    }
  }
}

function checkPidboxBody(f: Fixture, body: Record<string, unknown>, headers: Fixture): void {
  if (/-request-/.test(f.fixture)) {
    assert.deepEqual(Object.keys(body).slice(0, 5), [
      "method",
      "arguments",
      "destination",
      "pattern",
      "matcher",
    ]);
    const cast = body.method === "revoke";
    assert.equal("ticket" in body, !cast, "ticket only when a reply is wanted");
    assert.equal("reply_to" in body, !cast);
    assert.deepEqual(Object.keys(headers), ["clock", "expires"]);
  } else if (/-reply-/.test(f.fixture)) {
    assert.deepEqual(Object.keys(body), ["w1@fixtures"], "{nodename: reply}");
    assert.deepEqual(Object.keys(headers), ["ticket", "clock"]);
    // The reply answers the request of the same command (same ticket, reply queue).
    const request = loadFixture(f.fixture.replace("-reply-", "-request-"));
    const req = request.transport === "redis" ? request.body : request.body_decoded;
    assert.equal(headers.ticket, req.ticket);
    const rk = req.reply_to.routing_key;
    if (f.transport === "redis") assert.equal(f.key, `${rk}.reply.celery.pidbox`);
    else assert.deepEqual(f.published_to, { exchange: "reply.celery.pidbox", routing_keys: [rk] });
  }
}

for (const name of files(/^redis-(event|pidbox)-.*\.json$/)) {
  Deno.test(`fixture ${name}: kombu envelope and body decode`, () => {
    const f = loadFixture(name);
    const { message, deliveryTag } = decodeRedisEnvelope(f.raw);
    const props = f.envelope.properties;
    assert.equal(deliveryTag, props.delivery_tag);
    assert.deepEqual(message.deliveryInfo, {
      exchange: props.delivery_info.exchange,
      routingKey: props.delivery_info.routing_key,
    });
    assert.deepEqual(message.headers, f.envelope.headers);
    assert.deepEqual(message.properties, { delivery_mode: props.delivery_mode, priority: 0 });
    assert.equal(message.contentType, "application/json");
    const body = decodeJsonBody(message) as Record<string, unknown>;
    assert.deepEqual(body, parseJson(fromBase64(f.envelope.body)), "the bytes sent");
    assert.deepEqual(samePaths(body), samePaths(f.body), "the capture's decoded copy");
    const { exchange, routingKey } = message.deliveryInfo!;
    if (f.channel) {
      // Fan-out over pub/sub: /<db>.<exchange>[/<routing key>], routing key in the envelope.
      assert.equal(f.channel, `/0.${exchange}${routingKey ? `/${routingKey}` : ""}`);
    }
    checkEventBody(f, body, routingKey);
    if (name.startsWith("redis-pidbox-")) checkPidboxBody(f, body, message.headers);
  });
}

for (const name of files(/^amqp-(event|pidbox)-.*\.json$/)) {
  Deno.test(`fixture ${name}: AMQP body decodes`, () => {
    const f = loadFixture(name);
    const message = amqpMessage(f);
    const body = decodeJsonBody(message) as Record<string, unknown>;
    assert.deepEqual(body, f.body_decoded);
    assert.deepEqual(message.headers, f.headers);
    checkEventBody(f, body, message.deliveryInfo!.routingKey);
    if (name.startsWith("amqp-pidbox-")) checkPidboxBody(f, body, message.headers);
  });
}

// ---------------------------------------------------------------------------------------
// kombu bookkeeping

for (const name of files(/^redis-unacked-entry\.json$/)) {
  Deno.test(`fixture ${name}: the [envelope, exchange, routing_key] triple`, () => {
    const f = loadFixture(name);
    const triple = parseJson(f.raw);
    assert.deepEqual(triple, f.decoded);
    assert.equal(triple.length, 3);
    const [envelope, exchange, routingKey] = triple;
    assert.deepEqual([exchange, routingKey], ["", "celery"]);
    const { message, deliveryTag } = decodeRedisEnvelope(JSON.stringify(envelope));
    assert.equal(deliveryTag, f.delivery_tag);
    assert.deepEqual(message.deliveryInfo, { exchange, routingKey });
    const task = decodeTaskMessage(message);
    // The ETA message the worker held: the same envelope as redis-task-eta-expires-datetime.
    const sent = loadFixture("redis-task-eta-expires-datetime");
    assert.deepEqual(envelope, sent.envelope);
    assert.equal(task.eta?.toISOString(), "2031-01-01T12:00:00.000Z");
    assert.equal(task.expires?.toISOString(), "2031-01-01T13:00:00.000Z");
    assert.deepEqual(task.args, [2, 3]);
    assert.equal(typeof f.unacked_index_score, "number");
  });
}

for (const name of files(/^redis-keys-snapshot\.json$/)) {
  Deno.test(`fixture ${name}: binding members are routing key SEP pattern SEP queue`, () => {
    const f = loadFixture(name);
    const SEP = "\x06\x16";
    const bindings = Object.fromEntries(
      Object.entries(f.keys as Record<string, { members?: string[] }>)
        .filter(([k]) => k.startsWith("_kombu.binding."))
        .map(([k, v]) => [k, v.members!.map((m) => m.split(SEP))]),
    );
    assert.deepEqual(bindings["_kombu.binding.celery"], [["celery", "", "celery"]]);
    assert.deepEqual(bindings["_kombu.binding.celery.pidbox"], [[
      "",
      "",
      "w1@fixtures.celery.pidbox",
    ]]);
    const [ev] = bindings["_kombu.binding.celeryev"]!;
    assert.equal(ev![0], "worker.#");
    assert.match(ev![2]!, /^celeryev\.[0-9a-f-]{36}$/);
    assert.deepEqual(f.keys.unacked, { type: "hash", fields: 2 });
    assert.deepEqual(f.keys.unacked_index, { type: "zset", members: 2 });
  });
}

Deno.test("every file of the fixture directory is handled by a case above", () => {
  const all = [...Deno.readDirSync(FIXTURE_DIR)].map((e) => e.name).sort();
  const missing = all.filter((n) => n !== "README.md" && !handled.has(n));
  assert.deepEqual(missing, [], "fixture files with no test case");
  assert.equal(handled.size, all.length - 1);
});
