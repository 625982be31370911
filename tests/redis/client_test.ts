/**
 * celeriac's Redis client against a real redis-server: pipelining order, scripts after the
 * server lost them, transactions, pub/sub and what survives a server restart, closing with
 * commands in flight, and TLS with `?ssl_cert_reqs=none`.
 */
import assert from "node:assert/strict";
import { BrokerConnectionError } from "../../src/errors.ts";
import { connectRedis, parseRedisUrl } from "../../src/brokers/redis/connection.ts";
import { RedisClient, RedisReplyError, RedisScript } from "../../src/redis/client.ts";
import { startRedis } from "../helpers/redis_server.ts";
import { waitFor } from "../helpers/wait.ts";

const r = await startRedis({ tls: true });
const open = (db = 0, options = {}) =>
  RedisClient.connect({ host: "127.0.0.1", port: r.port, db, ...options });

Deno.test("redis client: 5,000 commands issued at once get their own replies, in order", async () => {
  const c = await open(3);
  try {
    await c.call("DEL", "n");
    const replies = await Promise.all(
      Array.from({ length: 5000 }, (_, i) => i % 2 ? c.call("INCR", "n") : c.call("ECHO", `é${i}`)),
    );
    replies.forEach((reply, i) => assert.equal(reply, i % 2 ? (i + 1) / 2 : `é${i}`));
    await assert.rejects(c.call("INCR", "no", "such", "arity"), RedisReplyError);
    assert.equal(await c.call("GET", "n"), "2500", "an error reply leaves the connection usable");
  } finally {
    await c.quit();
  }
});

Deno.test("redis client: a script runs by EVAL once, then by EVALSHA, and again after SCRIPT FLUSH", async () => {
  const c = await open();
  const script = new RedisScript("return {KEYS[1], ARGV[1], #KEYS}");
  try {
    const evalshaCalls = async () =>
      Number(
        /cmdstat_evalsha:calls=(\d+)/.exec(String(await c.call("INFO", "commandstats")))?.[1] ?? 0,
      );
    const before = await evalshaCalls();
    assert.deepEqual(await c.evalScript(script, ["k"], ["v"]), ["k", "v", 1]);
    assert.deepEqual(await c.evalScript(script, ["k2"], ["v2"]), ["k2", "v2", 1]);
    assert.equal(await evalshaCalls(), before + 1, "the second run went by SHA-1");
    await c.call("SCRIPT", "FLUSH");
    const [a, b] = await Promise.all([
      c.evalScript(script, ["a"], [1]),
      c.evalScript(script, ["b"], [2]),
    ]);
    assert.deepEqual([a, b], [["a", "1", 1], ["b", "2", 1]]);
    assert.deepEqual(await c.call("SCRIPT", "EXISTS", script.sha!), [1]);
  } finally {
    await c.quit();
  }
});

Deno.test("redis client: a script keeps its place in the pipeline; its SHA-1 is the server's", async () => {
  const c = await open(6);
  // Multi-block, non-ASCII source: the SHA-1 is computed here, synchronously.
  const script = new RedisScript(
    `-- é ${"x".repeat(200)}\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])`,
  );
  try {
    await c.call("DEL", "order");
    const sent = [c.evalScript(script, ["order"], ["first"]), c.call("RPUSH", "order", "second")];
    await Promise.all(sent);
    assert.deepEqual(await c.call("LRANGE", "order", 0, -1), ["first", "second"]);
    assert.equal(await c.call("SCRIPT", "LOAD", script.lua), script.sha);
  } finally {
    await c.quit();
  }
});

Deno.test("redis client: a server that accepts but never answers fails the connect in time", async () => {
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) accepted.push(conn);
  })();
  try {
    const port = (silent.addr as Deno.NetAddr).port;
    await assert.rejects(
      RedisClient.connect({ host: "127.0.0.1", port, connectTimeoutMs: 200 }),
      /no reply to the handshake within 200 ms/,
    );
  } finally {
    silent.close();
    await accepting.catch(() => {});
    for (const conn of accepted) conn.close();
  }
});

Deno.test("redis client: MULTI/EXEC returns each reply; a queuing error aborts it all", async () => {
  const c = await open(4);
  try {
    await c.call("SET", "text", "abc");
    const replies = await c.multi([["SET", "x", "1"], ["INCR", "x"], ["INCR", "text"]]);
    assert.deepEqual(replies.slice(0, 2), ["OK", 2]);
    assert.ok(replies[2] instanceof RedisReplyError, "a runtime error comes in its place");
    await assert.rejects(c.multi([["SET", "x", "9"], ["SET", "x"]]), /wrong number of arguments/);
    assert.equal(await c.call("GET", "x"), "2", "nothing of the aborted transaction ran");
  } finally {
    await c.quit();
  }
});

Deno.test("redis client: closing rejects commands in flight with BrokerConnectionError", async () => {
  const c = await open();
  const blocked = c.call("BRPOP", "nothing-here", 5);
  await waitFor(async () => (await r.cli("CLIENT", "LIST")).includes("cmd=brpop"));
  c.disconnect();
  await assert.rejects(blocked, BrokerConnectionError);
  await assert.rejects(c.call("PING"), BrokerConnectionError);
  assert.equal(c.status, "closed");
});

Deno.test("redis client: across a server restart commands wait, lost ones are sent again, subscriptions come back", async () => {
  const c = await open(5);
  const sub = await open(5);
  const blocker = await open(5);
  const failing = await open(5, { whileDown: "fail" });
  const heard: string[] = [];
  sub.listen({ onPMessage: (_pattern, channel, text) => heard.push(`${channel}=${text}`) });
  let readies = 0;
  c.onReady(() => readies++);
  try {
    await sub.psubscribe("news.*");
    const blocked = blocker.call("BRPOP", "jobs", 10); // in flight when the server dies
    await waitFor(async () => (await r.cli("CLIENT", "LIST")).includes("cmd=brpop"));
    await r.restart();
    await assert.rejects(failing.call("PING"), BrokerConnectionError, "fail-fast while down");
    const queued = c.call("SET", "after", "yes"); // issued while down: waits
    await waitFor(() => [c, blocker, failing].every((x) => x.status === "ready"), {
      timeoutMs: 10_000,
    });
    assert.equal(await queued, "OK");
    assert.equal(await failing.call("PING"), "PONG");
    assert.equal(readies, 1);
    await r.cli("-n", "5", "LPUSH", "jobs", "j1");
    assert.deepEqual(await blocked, ["jobs", "j1"], "the BRPOP was sent again");
    await waitFor(async () => (await r.cli("PUBSUB", "NUMPAT")).trim() === "1");
    await c.call("PUBLISH", "news.today", "hello");
    await waitFor(() => heard.length > 0);
    assert.deepEqual(heard, ["news.today=hello"]);
  } finally {
    await Promise.all([c, sub, blocker, failing].map((x) => x.quit()));
  }
});

Deno.test("redis client: rediss:// with ssl_cert_reqs=none talks TLS; verified TLS refuses a self-signed server", async () => {
  const url = `rediss://127.0.0.1:${r.tlsPort}/2`;
  const c = await connectRedis(parseRedisUrl(`${url}?ssl_cert_reqs=none`), "test");
  try {
    assert.equal(await c.call("SET", "over-tls", "é"), "OK");
    assert.equal(await r.cli("-n", "2", "GET", "over-tls"), "é\n");
  } finally {
    await c.quit();
  }
  await assert.rejects(
    connectRedis(parseRedisUrl(url), "test"),
    (err: Error) => err instanceof BrokerConnectionError && err.message.includes(`${r.tlsPort}`),
  );
});

Deno.test("redis client: stop the test redis-server", () => r.stop());
