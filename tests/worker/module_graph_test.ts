/**
 * What a worker loads at start-up: the static module graph of `worker.ts` and `mod.ts`
 * (what `deno info` resolves, following static imports only) leaves out the modules that
 * only some workers need. Each costs resident memory in every worker process (measured in
 * docs/performance.md, "Lazy `node:zlib`"), so they load on first use:
 *
 * - `node:zlib` (compressed bodies, through `src/node_builtin.ts`),
 * - the AMQP client (`npm:amqplib`, `node:net`, `node:tls`: amqp:// URLs only).
 */

import assert from "node:assert/strict";
import { runChild } from "../helpers/process.ts";

interface InfoDependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}

interface InfoModule {
  specifier: string;
  dependencies?: InfoDependency[];
}

const REPO = new URL("../../", import.meta.url);

/** Specifiers reachable from `entry` through static runtime imports (`import type` left out). */
async function staticGraph(entry: string): Promise<Set<string>> {
  const run = await runChild(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, REPO).pathname],
    env: { NO_COLOR: "1" },
    timeoutMs: 60_000,
    label: "deno info",
  });
  assert.equal(run.code, 0, run.stderr);
  const info = JSON.parse(run.stdout) as {
    roots: string[];
    modules: InfoModule[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length) {
    const specifier = stack.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dep of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dep.code && !dep.isDynamic) stack.push(dep.code.specifier);
    }
  }
  return seen;
}

const LAZY = ["node:zlib", "node:tls", "node:net"];

for (const entry of ["worker.ts", "mod.ts"]) {
  Deno.test(`${entry}: the static module graph leaves out ${LAZY.join(", ")} and amqplib`, async () => {
    const graph = await staticGraph(entry);
    // The walk reaches the modules that use them (so their absence means something).
    for (const user of ["src/protocol/message.ts", "src/brokers/mod.ts"]) {
      assert.ok(graph.has(new URL(user, REPO).href), `${entry} does not reach ${user}`);
    }
    for (const lazy of LAZY) assert.ok(!graph.has(lazy), `${entry} loads ${lazy} at start-up`);
    const amqp = [...graph].filter((s) => s.includes("amqplib") || s.includes("/brokers/amqp/"));
    assert.deepEqual(amqp, [], `${entry} loads the AMQP client at start-up`);
  });
}
