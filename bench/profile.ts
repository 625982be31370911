/**
 * `--cpu-prof`: a V8 CPU profile of the measured part of each case, taken in-process through
 * `node:inspector`, written as a `.cpuprofile` (open it in Chrome DevTools) and summarized
 * as self time per function and per source (celeriac file, npm package, runtime).
 *
 * @module
 */

import { Session } from "node:inspector/promises";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** The V8 profile format. */
export interface CpuProfile {
  /** Call tree nodes. */
  nodes: ProfileNode[];
  /** Microseconds. */
  startTime: number;
  /** Microseconds. */
  endTime: number;
  /** Node id of each sample. */
  samples: number[];
  /** Microseconds between samples. */
  timeDeltas: number[];
}

/** A running profiler session. */
export class Profiler {
  #session = new Session();

  /** Connects and starts sampling every `intervalUs`. */
  async start(intervalUs = 200): Promise<void> {
    this.#session.connect();
    await this.#session.post("Profiler.enable");
    await this.#session.post("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.#session.post("Profiler.start");
  }

  /** Stops, disconnects and returns the profile. */
  async stop(): Promise<CpuProfile> {
    const { profile } = await this.#session.post("Profiler.stop") as { profile: CpuProfile };
    await this.#session.post("Profiler.disable");
    this.#session.disconnect();
    return profile;
  }
}

const ROOT = new URL("../", import.meta.url).href;

/** Groups a call frame's URL: a celeriac file, an npm package, or the runtime. */
export function sourceOf(url: string, functionName: string): string {
  if (!url) {
    if (functionName.startsWith("(")) return functionName; // (garbage collector), (idle), …
    return "(native)";
  }
  if (url.startsWith(ROOT)) return url.slice(ROOT.length);
  const npm = /registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (npm) return `npm:${npm[1]}`;
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return url.replace(/^ext:(deno_)?/, "deno:").replace(/\/.*$/, "");
  }
  return url;
}

const DECODE = new Set([
  "decodeRedisEnvelope",
  "decodeJsonBody",
  "parseJson",
  "reviveBigInt",
  "decodeTaskMessage",
  "readTime",
  "readTimelimit",
  "parseIso",
  "triage",
]);
const ENCODE = new Set([
  "encodeResultMeta",
  "buildResultMeta",
  "stringifyJson",
  "replaceBigInt",
  "formatNaiveIso",
  "encodeRedisEnvelope",
  "encodeTaskMessage",
  "encodeJsonBody",
  "reprArgs",
  "reprKwargs",
  "pyRepr",
]);

/**
 * The component a sample's time belongs to: its nearest celeriac or npm frame (walking from
 * the leaf towards the root) decides, so e.g. `Buffer.toString` called by `decodeJsonBody`
 * counts as decoding, and node stream code called by an npm driver as that driver.
 */
export function componentOf(stack: readonly { functionName: string; url: string }[]): string {
  const leaf = stack[0];
  if (leaf && !leaf.url && leaf.functionName.startsWith("(")) return leaf.functionName;
  for (const frame of stack) {
    const source = sourceOf(frame.url, frame.functionName);
    if (source.startsWith("npm:")) return source;
    if (!source.startsWith("src/") && !source.startsWith("bench/")) continue;
    if (DECODE.has(frame.functionName)) return "decode (envelope JSON, base64, body JSON)";
    if (ENCODE.has(frame.functionName)) return "encode (result/message JSON)";
    if (source.startsWith("src/redis/")) return "redis client (src/redis, RESP)";
    if (source.startsWith("src/brokers/")) return `broker (${source.slice(12)})`;
    if (source.startsWith("src/backends/")) return `backend (${source.slice(13)})`;
    if (source === "src/log.ts") return "logging";
    if (source.startsWith("src/worker/")) return "worker (consumer, pool, reporter)";
    if (source.startsWith("bench/")) return "bench harness (polling, RSS sampling)";
    return source;
  }
  return "runtime (timers, microtasks, other)";
}

/** Self time per component, per source and per function, in ms, largest first. */
export function summarize(profile: CpuProfile): {
  totalMs: number;
  byComponent: [string, number][];
  bySource: [string, number][];
  byFunction: [string, number][];
} {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    // timeDeltas[i] is the time since the previous sample; attribute it to this sample.
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const components = new Map<string, number>();
  const sources = new Map<string, number>();
  const functions = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  let total = 0;
  for (const [id, us] of selfUs) {
    const stack: ProfileNode["callFrame"][] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      stack.push(byId.get(cur)!.callFrame);
    }
    // The profiler's own start-up (inspector messages) is not the code under test.
    if (stack.some((f) => f.url === import.meta.url)) continue;
    const frame = stack[0]!;
    const source = sourceOf(frame.url, frame.functionName);
    add(components, componentOf(stack), us);
    add(sources, source, us);
    add(
      functions,
      `${frame.functionName || "(anonymous)"} ${source}${
        frame.url ? `:${frame.lineNumber + 1}` : ""
      }`,
      us,
    );
    total += us;
  }
  const sorted = (m: Map<string, number>) =>
    [...m].map(([k, v]) => [k, v / 1000] as [string, number]).sort((a, b) => b[1] - a[1]);
  return {
    totalMs: total / 1000,
    byComponent: sorted(components),
    bySource: sorted(sources),
    byFunction: sorted(functions),
  };
}

/**
 * Formats {@linkcode summarize}'s output (top `top` rows of each list); with `tasks`, also
 * microseconds per task.
 */
export function formatSummary(
  label: string,
  profile: CpuProfile,
  tasks?: number,
  top = 20,
): string {
  const { totalMs, byComponent, bySource, byFunction } = summarize(profile);
  const row = (k: string, ms: number) =>
    `    ${(100 * ms / totalMs).toFixed(1).padStart(5)}% ${ms.toFixed(1).padStart(8)} ms${
      tasks ? `${(1000 * ms / tasks).toFixed(2).padStart(8)} us/task` : ""
    }  ${k}`;
  const lines = [`cpu profile ${label}: ${totalMs.toFixed(0)} ms sampled`];
  lines.push("  by component (self time, attributed to the nearest celeriac/npm frame):");
  for (const [k, ms] of byComponent) lines.push(row(k, ms));
  lines.push("  by source (self):");
  for (const [k, ms] of bySource.slice(0, top)) lines.push(row(k, ms));
  lines.push("  by function (self):");
  for (const [k, ms] of byFunction.slice(0, top)) lines.push(row(k, ms));
  return lines.join("\n");
}
