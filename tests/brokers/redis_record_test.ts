/**
 * The FETCH/RECORD scripts' fast path (src/brokers/redis/scripts.ts): `fast` reads
 * `delivery_tag`, `delivery_info.exchange` and `delivery_info.routing_key` with substring
 * searches instead of `cjson.decode`. Checked against a reference (the `cjson.decode` reading
 * every earlier release used) on envelopes written by Python Celery 5.2 (fixtures), by
 * celeriac, and tricky hand-written ones; then end to end through the broker, where a
 * message the fast path records but cannot be decoded still ends in the dead-letter list.
 * One redis-server for the file, stopped by the last test.
 */
import assert from "node:assert/strict";
import { RedisBroker } from "../../src/brokers/redis/broker.ts";
import { connectRedis, parseRedisUrl } from "../../src/brokers/redis/connection.ts";
import { FETCH, RECORD, RECORD_FUNCTIONS } from "../../src/brokers/redis/scripts.ts";
import { encodeRedisEnvelope } from "../../src/protocol/redis_envelope.ts";
import { decodeTaskMessage, encodeTaskMessage } from "../../src/protocol/task.ts";
import { startRedis } from "../helpers/redis_server.ts";

const FIXTURES = new URL("../../../shared/fixtures/celery-5.2/", import.meta.url);

const r = await startRedis();
const client = await connectRedis(parseRedisUrl(r.url(0)), "test");

/** What `fast` returns: [tag, exchange, routing key], or null when it declines. */
async function fast(raw: string): Promise<[string, string, string] | null> {
  const out = await client.call(
    "EVAL",
    `${RECORD_FUNCTIONS}
local tag, ex, rk = fast(ARGV[1])
if tag then return {tag, ex, rk} end
return false`,
    0,
    raw,
  ) as [string, string, string] | null;
  return out;
}

/** What `cjson.decode` reads (the reference): [tag, exchange, routing key] or null. */
async function reference(raw: string): Promise<[string, string, string] | null> {
  return await client.call(
    "EVAL",
    `local ok, env = pcall(cjson.decode, ARGV[1])
if ok and type(env) == 'table' and type(env.properties) == 'table' then
  local t = env.properties.delivery_tag
  local info = env.properties.delivery_info
  if type(t) == 'string' and t ~= '' and type(info) == 'table'
    and type(info.exchange) == 'string' and type(info.routing_key) == 'string' then
    return {t, info.exchange, info.routing_key}
  end
end
return false`,
    0,
    raw,
  ) as [string, string, string] | null;
}

/** Every Redis envelope Python wrote among the fixtures (tasks, events, pidbox). */
function pythonEnvelopes(): [string, string][] {
  const out: [string, string][] = [];
  for (const entry of Deno.readDirSync(FIXTURES)) {
    if (!entry.name.startsWith("redis-") || !entry.name.endsWith(".json")) continue;
    const f = JSON.parse(Deno.readTextFileSync(new URL(entry.name, FIXTURES)));
    if (typeof f.raw === "string" && f.raw.startsWith('{"body": ')) out.push([entry.name, f.raw]);
    if (entry.name === "redis-unacked-entry.json") {
      const suffix = ', "", "celery"]';
      assert.ok(f.raw.endsWith(suffix));
      out.push([`${entry.name} (envelope)`, f.raw.slice(1, -suffix.length)]);
    }
  }
  assert.ok(out.length >= 30, `only ${out.length} Python envelopes found`);
  return out.sort();
}

function ours(
  routingKey = "celery",
  exchange = "",
  extra: { kwargs?: Record<string, unknown>; headers?: Record<string, unknown> } = {},
): string {
  const message = encodeTaskMessage(
    { id: crypto.randomUUID(), task: "tasks.add", args: [2], kwargs: extra.kwargs, origin: "g@h" },
    new Date(),
  );
  Object.assign(message.headers, extra.headers);
  return encodeRedisEnvelope(message, { exchange, routingKey, deliveryTag: crypto.randomUUID() });
}

/** A minimal envelope in kombu's key order, with `properties` given as JSON text. */
function env(properties: string, headers = "{}"): string {
  return `{"body": "W10=", "content-encoding": "utf-8", "content-type": "application/json", "headers": ${headers}, "properties": ${properties}}`;
}

const INFO = '"delivery_info": {"exchange": "", "routing_key": "q"}';

Deno.test("redis record fast path: every envelope Python Celery 5.2 wrote takes it and reads what cjson reads", async () => {
  for (const [name, raw] of pythonEnvelopes()) {
    const expected = await reference(raw);
    assert.ok(expected, name);
    assert.deepEqual(await fast(raw), expected, name);
  }
});

Deno.test("redis record fast path: celeriac's envelopes, compact and re-spaced, take it", async () => {
  const cases: string[] = [
    ours(),
    ours("a/b.c", "tasks"), // '/' is escaped by cjson.encode, not by the fast path
    ours("café ☃"), // JSON.stringify leaves non-ASCII as UTF-8
    ours("celery", "", { kwargs: { big: 9007199254740993n, s: 'say "hi" \\ ok' } }), // in the body
    ours("celery", "", {
      headers: {
        note: '{"delivery_tag": "fake", "exchange": "x"}',
        exchange: "h",
        routing_key: "h",
      },
    }),
  ];
  const py = pythonEnvelopes().find(([n]) => n === "redis-task-basic.json")![1];
  const parsed = JSON.parse(py);
  cases.push(
    JSON.stringify(parsed), // compact separators
    JSON.stringify(parsed, null, 2), // newlines and indentation
    JSON.stringify(parsed, null, "\t").replaceAll("\n", "\r\n"),
    ` \n${py}\r\n `, // whitespace around
    py.replace('"delivery_info": {', '"delivery_info"  :  {  ').replace(
      '"}, "priority"',
      '" } , "priority"',
    ),
    // Other orders inside delivery_info, extra members, duplicate keys (last wins).
    env(
      `{"delivery_info": {"redelivered": true, "routing_key": "q", "n": -5, "x": null, "exchange": "e"}, "delivery_tag": "t1"}`,
    ),
    env(
      `{"delivery_info": {"exchange": "a", "routing_key": "q", "exchange": "b"}, "delivery_tag": "t2"}`,
    ),
    // properties before headers, tag still last.
    `{"properties": {${INFO}, "delivery_tag": "t3"}}`,
  );
  for (const raw of cases) {
    const expected = await reference(raw);
    assert.ok(expected, raw);
    assert.deepEqual(await fast(raw), expected, raw);
  }
});

Deno.test("redis record fast path: declines whenever it could be wrong, and cjson decides", async () => {
  const declined: [string, string][] = [
    ["escaped quote in the tag", env(`{${INFO}, "delivery_tag": "a\\"b"}`)],
    ["escape in the tag", env(`{${INFO}, "delivery_tag": "caf\\u00e9"}`)],
    [
      "escape in the routing key",
      env(`{"delivery_info": {"exchange": "", "routing_key": "q\\/r"}, "delivery_tag": "t"}`),
    ],
    [
      "key spelled with an escape, decoy spelled plainly",
      env(`{${INFO}, "delivery\\u005ftag": "real"}`, '{"delivery_tag": "decoy"}'),
    ],
    ["tag not last in properties", env(`{"delivery_tag": "t", ${INFO}}`)],
    ["properties not last", `{"properties": {${INFO}, "delivery_tag": "t"}, "body": "W10="}`],
    ["tag also a header", env(`{${INFO}, "delivery_tag": "t"}`, '{"delivery_tag": "h"}')],
    ["the word as a string value", env(`{${INFO}, "delivery_tag": "t"}`, '{"x": "delivery_tag"}')],
    [
      "nested object in delivery_info",
      env(
        `{"delivery_info": {"exchange": "", "routing_key": "q", "x": {"y": 1}}, "delivery_tag": "t"}`,
      ),
    ],
    [
      "float in delivery_info",
      env(`{"delivery_info": {"exchange": "", "routing_key": "q", "f": 1.5}, "delivery_tag": "t"}`),
    ],
    ["empty delivery_info", env(`{"delivery_info": {}, "delivery_tag": "t"}`)],
    [
      "null exchange",
      env(`{"delivery_info": {"exchange": null, "routing_key": "q"}, "delivery_tag": "t"}`),
    ],
    [
      "numeric routing key",
      env(`{"delivery_info": {"exchange": "", "routing_key": 5}, "delivery_tag": "t"}`),
    ],
    ["no routing key", env(`{"delivery_info": {"exchange": ""}, "delivery_tag": "t"}`)],
    ["string delivery_info", env(`{"delivery_info": "x", "delivery_tag": "t"}`)],
    ["empty tag", env(`{${INFO}, "delivery_tag": ""}`)],
    ["numeric tag", env(`{${INFO}, "delivery_tag": 7}`)],
    ["no tag", env(`{${INFO}}`)],
    ["no delivery_info", env(`{"delivery_tag": "t"}`)],
    ["key ending in an escaped quote", env(`{${INFO}}`, '{"x\\"delivery_tag": "t"}')],
    [
      "key ending in an escaped quote, last in properties",
      `{"body": "W10=", "properties": {${INFO}, "x\\"delivery_tag": "t"}}`,
    ],
    [
      "tag key spelled with an escape in properties, plain decoy last",
      `{"body": "W10=", "properties": {"delivery\\u005ftag": "real", ${INFO}}, "h": {"delivery_tag": "decoy"}}`,
    ],
    [
      "info key spelled with an escape in properties, plain decoy",
      `{"body": "W10=", "h": {"delivery_info": {"exchange": "", "routing_key": "decoy"}}, "properties": {"delivery\\u005Finfo": {"exchange": "", "routing_key": "q"}, "delivery_tag": "t"}}`,
    ],
    ["cut short", env(`{${INFO}, "delivery_tag": "t"}`).slice(0, -1)],
    ["trailing text", env(`{${INFO}, "delivery_tag": "t"}`) + " x"],
    ["not an object", `[${env(`{${INFO}, "delivery_tag": "t"}`)}]`],
    ["control character in the tag", env(`{${INFO}, "delivery_tag": "a\tb"}`)],
    ["not JSON", "not json {"],
    ["empty", ""],
  ];
  for (const [what, raw] of declined) assert.equal(await fast(raw), null, what);
  // Where cjson can read them, it gives what every release recorded.
  assert.deepEqual(await reference(declined[0]![1]), ['a"b', "", "q"]);
  assert.deepEqual(await reference(declined[1]![1]), ["café", "", "q"]);
  assert.deepEqual(await reference(declined[2]![1]), ["t", "", "q/r"]);
  assert.deepEqual(await reference(declined[3]![1]), ["real", "", "q"]);
  assert.deepEqual(await reference(declined[4]![1]), ["t", "", "q"]);
  const named = new Map(declined);
  for (
    const [what, expected] of [
      ["key ending in an escaped quote, last in properties", null],
      ["tag key spelled with an escape in properties, plain decoy last", ["real", "", "q"]],
      ["info key spelled with an escape in properties, plain decoy", ["t", "", "q"]],
    ] as const
  ) assert.deepEqual(await reference(named.get(what)!), expected, what);
});

Deno.test("redis record: the unacked entry is kombu's [envelope, exchange, routing_key], byte for byte", async () => {
  await client.call("FLUSHALL");
  const now = (Date.now() / 1000).toFixed(6);
  const cases: [string, string, string, string][] = [
    // raw, tag, and the exchange / routing key JSON the entry must end with
    ...pythonEnvelopes().filter(([n]) => n.startsWith("redis-task-")).map(([, raw]) => {
      const e = JSON.parse(raw);
      return [
        raw,
        e.properties.delivery_tag,
        JSON.stringify(e.properties.delivery_info.exchange),
        JSON.stringify(e.properties.delivery_info.routing_key),
      ] as [string, string, string, string];
    }),
    [
      env(`{"delivery_info": {"exchange": "ex", "routing_key": "a/b"}, "delivery_tag": "fast/1"}`),
      "fast/1",
      '"ex"',
      '"a/b"',
    ],
    [
      env(
        `{"delivery_info": {"exchange": "e\\/x", "routing_key": "a/b"}, "delivery_tag": "slow\\"1"}`,
      ),
      'slow"1',
      '"e\\/x"',
      '"a\\/b"',
    ], // cjson.encode escapes '/'
  ];
  for (const [raw, tag, ex, rk] of cases) {
    assert.equal(
      await client.call("EVAL", RECORD, 3, "unacked", "unacked_index", "dead", raw, now, "celery"),
      tag,
    );
    assert.equal(await client.call("HGET", "unacked", tag), `[${raw}, ${ex}, ${rk}]`, raw);
    // Whole seconds, rounded up (listpack keeps them as integers; see RECORD_FUNCTIONS).
    assert.equal(
      await client.call("ZSCORE", "unacked_index", tag),
      String(Math.ceil(Number(now))),
    );
  }
  assert.equal(await client.call("LLEN", "dead"), 0);
  const bad = env(`{"delivery_info": {"exchange": null, "routing_key": "q"}, "delivery_tag": "t"}`);
  assert.equal(
    await client.call("EVAL", RECORD, 3, "unacked", "unacked_index", "dead", bad, now, "q"),
    "",
  );
  const dead = JSON.parse(await client.call("LINDEX", "dead", 0) as string);
  assert.equal(dead.raw, bad);
  assert.equal(dead.queue, "q");
  assert.equal(await client.call("HEXISTS", "unacked", "t"), 0);
});

Deno.test("redis record: a message the fast path records but nobody can decode ends in the dead-letter list", async () => {
  await client.call("FLUSHALL");
  const broker = new RedisBroker(r.url(0), { restoreIntervalMs: 0 });
  await broker.connect();
  try {
    // The two texts the fast path accepts although cjson would not (see scripts.ts).
    const outside =
      `{"body": "W10=", "properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}, "body_encoding": "base64"}, "h": {"delivery_tag": "outside"}}`;
    const garbage =
      `{"body": "W10=", oops, "properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}, "delivery_tag": "garbage"}}`;
    const good = ours();
    for (const raw of [outside, garbage, good]) await r.cli("LPUSH", "celery", raw);
    assert.deepEqual(await fast(outside), ["outside", "", "celery"]);
    assert.equal(await reference(outside), null);
    assert.deepEqual(await fast(garbage), ["garbage", "", "celery"]);
    assert.equal(await reference(garbage), null);

    const got = await broker.fetch(["celery"], { max: 5, timeoutMs: 100 });
    assert.deepEqual(got.map((d) => d.raw), [outside, garbage, good]);
    assert.equal(await client.call("HLEN", "unacked"), 3, "all three recorded: none can be lost");
    for (const d of got.slice(0, 2)) {
      assert.equal(d.message, null);
      assert.ok(d.decodeError);
      await d.deadLetter("cannot decode"); // what the worker does with it
    }
    assert.equal(decodeTaskMessage(got[2]!.message!).task, "tasks.add");
    await got[2]!.ack();
    assert.deepEqual(
      (await broker.deadLetters()).map((x) => x.raw).sort(),
      [garbage, outside].sort(),
    );
    assert.equal(await client.call("HLEN", "unacked"), 0);
    assert.equal(await client.call("ZCARD", "unacked_index"), 0);
  } finally {
    await broker.close();
  }
});

Deno.test("redis record: Python's and celeriac's messages through FETCH and BRPOP+RECORD decode with the recorded tag", async () => {
  await client.call("FLUSHALL");
  const broker = new RedisBroker(r.url(0), { restoreIntervalMs: 0 });
  await broker.connect();
  try {
    // One message per tag (the restored fixture is the countdown one again, same tag).
    const byTag = new Map<string, string>();
    for (const [name, raw] of pythonEnvelopes()) {
      const tag = JSON.parse(raw).properties.delivery_tag;
      if (name.startsWith("redis-task-") && !byTag.has(tag)) byTag.set(tag, raw);
    }
    const raws = [
      ...byTag.values(),
      ours(),
      ours("celery", "", { headers: { note: 'a "quoted" \\ header' } }),
    ];
    for (const raw of raws) await r.cli("LPUSH", "celery", raw);
    const got = await broker.fetch(["celery"], { max: raws.length - 1, timeoutMs: 100 }); // FETCH
    const waiting = broker.fetch(["celery"], { max: 1, timeoutMs: 2000 }); // BRPOP + RECORD
    got.push(...await waiting);
    assert.deepEqual(got.map((d) => d.raw), raws);
    for (const d of got) {
      const raw = d.raw as string;
      assert.ok(d.message, raw);
      const tag = JSON.parse(raw).properties.delivery_tag;
      assert.equal(await client.call("HGET", "unacked", tag), `[${raw}, "", "celery"]`);
      await d.ack();
    }
    assert.equal(await client.call("HLEN", "unacked"), 0);
  } finally {
    await broker.close();
  }
});

/** Runs FETCH on the test server: [out, RPOP calls it made] (from `INFO commandstats`). */
async function fetchScript(
  buckets: string[],
  max: number,
  popCount: "0" | "1",
): Promise<[string[], number]> {
  await client.call("CONFIG", "RESETSTAT");
  const out = await client.call(
    "EVAL",
    FETCH,
    3 + buckets.length,
    "unacked",
    "unacked_index",
    "dead",
    ...buckets,
    max,
    (Date.now() / 1000).toFixed(6),
    popCount,
    ...buckets.map(() => "q"),
  ) as string[];
  const stats = String(await client.call("INFO", "commandstats"));
  return [out, Number(/cmdstat_rpop:calls=(\d+)/.exec(stats)?.[1] ?? 0)];
}

for (const popCount of ["0", "1"] as const) {
  Deno.test(`redis record: one FETCH of 1,202 with slow and dead messages among them keeps order and records each (count pops: ${popCount})`, async () => {
    await client.call("FLUSHALL");
    const raws: string[] = [];
    const expected: string[] = []; // tag per message, "" = dead-lettered
    for (let i = 0; i < 1200; i++) {
      if (i % 97 === 5) {
        raws.push(env(`{${INFO}, "delivery_tag": "slow\\"${i}"}`)); // cjson's path
        expected.push(`slow"${i}`);
      } else if (i % 101 === 7) {
        raws.push(`not json ${i}`);
        expected.push("");
      } else {
        const tag = `t${i}`;
        raws.push(env(`{${INFO}, "delivery_tag": "${tag}"}`));
        expected.push(tag);
      }
    }
    // The same tag first on the fast path, then on cjson's: the later message's entry wins,
    // as with one HSET per message.
    raws.push(
      env(`{${INFO}, "delivery_tag": "dup"}`),
      env(`{${INFO}, "delivery_tag": "d\\u0075p"}`),
    );
    expected.push("dup", "dup");
    for (let i = 0; i < raws.length; i += 200) {
      await client.call("LPUSH", "q", ...raws.slice(i, i + 200));
    }
    const [out] = await fetchScript(["q"], 5000, popCount);
    const tags = out.filter((_, i) => i % 3 === 2);
    assert.deepEqual(out.filter((_, i) => i % 3 === 1), raws, "FIFO order");
    assert.deepEqual(tags, expected);
    assert.equal(await client.call("HGET", "unacked", "dup"), `[${raws.at(-1)}, "", "q"]`);
    const live = [...new Set(expected.filter((t) => t !== ""))];
    assert.equal(await client.call("HLEN", "unacked"), live.length);
    assert.equal(await client.call("ZCARD", "unacked_index"), live.length);
    assert.equal(await client.call("LLEN", "dead"), expected.filter((t) => t === "").length);
    for (const [i, tag] of expected.entries()) {
      if (tag === "" || tag === "dup") continue;
      const stored = await client.call("HGET", "unacked", tag);
      assert.equal(stored, `[${raws[i]}, "", "q"]`);
    }
  });
}

Deno.test("redis record: with a count FETCH pops each bucket in one call, and takes the same messages in the same order", async () => {
  // Bucket a has 3, b is empty, c has 30; a FETCH of 25 takes a's 3, then 22 of c's.
  const fill = async () => {
    await client.call("FLUSHALL");
    await client.call(
      "LPUSH",
      "a",
      ...["a1", "a2", "a3"].map((t) => env(`{${INFO}, "delivery_tag": "${t}"}`)),
    );
    const c = Array.from({ length: 30 }, (_, i) => env(`{${INFO}, "delivery_tag": "c${i}"}`));
    await client.call("LPUSH", "c", ...c);
  };
  const snapshot = async () =>
    [
      await client.call("HGETALL", "unacked"),
      await client.call("ZRANGE", "unacked_index", 0, -1),
      await client.call("LRANGE", "c", 0, -1),
      await client.call("EXISTS", "a"),
    ] as unknown[];
  await fill();
  const [perMessage, perMessageCalls] = await fetchScript(["a", "b", "c"], 25, "0");
  const before = await snapshot();
  await fill();
  const [counted, countedCalls] = await fetchScript(["a", "b", "c"], 25, "1");
  assert.deepEqual(counted, perMessage);
  assert.deepEqual(await snapshot(), before);
  assert.deepEqual(
    counted.filter((_, i) => i % 3 === 2),
    ["a1", "a2", "a3", ...Array.from({ length: 22 }, (_, i) => `c${i}`)],
  );
  assert.deepEqual(counted.filter((_, i) => i % 3 === 0), [
    ...Array(3).fill(1),
    ...Array(22).fill(3),
  ]);
  // One RPOP per message plus the one that found a (then b) empty, against one per bucket.
  assert.equal(perMessageCalls, 27);
  assert.equal(countedCalls, 3);
});

Deno.test("redis record: stop the test redis-server", async () => {
  await client.quit();
  await r.stop();
});
