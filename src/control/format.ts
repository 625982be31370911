/**
 * Output of the `control.ts` command line, as Celery's `celery inspect` / `celery control`
 * print it (without colours): one `->  <node>: OK` line per reply, then the reply body
 * indented by 8; lists as `* item` lines (`- empty -` when empty), `{"ok"|"error": …}` as the
 * inner value, other objects as sorted, indented JSON; `--json` output as Python's
 * `json.dumps`.
 *
 * @module
 */

import { pyRepr } from "../protocol/repr.ts";

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function jsonScalar(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number" && !Number.isFinite(value)) {
    return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * Python's `json.dumps(value, sort_keys=…, indent=…)`: `", "` and `": "` separators on one
 * line, or one item per line with `indent` spaces per level.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pyJson } from "./format.ts";
 * assert.equal(pyJson({ b: [1, 2], a: null }), '{"b": [1, 2], "a": null}');
 * assert.equal(pyJson({ b: 1, a: {} }, { sortKeys: true, indent: 2 }), '{\n  "a": {},\n  "b": 1\n}');
 * ```
 */
export function pyJson(
  value: unknown,
  options: { sortKeys?: boolean; indent?: number } = {},
): string {
  const { sortKeys = false, indent } = options;
  const walk = (v: unknown, level: number): string => {
    if (Array.isArray(v)) {
      if (!v.length) return "[]";
      const items = v.map((x) => walk(x, level + 1));
      return wrap("[", "]", items, level);
    }
    if (isObject(v)) {
      const entries = Object.entries(v).filter(([, x]) => x !== undefined);
      if (!entries.length) return "{}";
      if (sortKeys) entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return wrap(
        "{",
        "}",
        entries.map(([k, x]) => `${JSON.stringify(k)}: ${walk(x, level + 1)}`),
        level,
      );
    }
    return jsonScalar(v);
  };
  const wrap = (open: string, close: string, items: string[], level: number): string => {
    if (indent === undefined) return `${open}${items.join(", ")}${close}`;
    const pad = " ".repeat(indent * (level + 1));
    return `${open}\n${pad}${items.join(`,\n${pad}`)}\n${" ".repeat(indent * level)}${close}`;
  };
  return walk(value, 0);
}

/** Celery's `text.indent`: every line prefixed by `n` spaces. */
function indent(text: string, n: number): string {
  const pad = " ".repeat(n);
  return text.split("\n").map((line) => pad + line).join("\n");
}

/** Python's `str()` of a list item. */
function pyStr(value: unknown): string {
  return typeof value === "string" ? value : pyRepr(value);
}

/**
 * Celery's `pretty()`: the status (`OK` or `ERROR`) and the text of one reply value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { prettyReply } from "./format.ts";
 * assert.deepEqual(prettyReply({ ok: "pong" }), ["OK", "    pong"]);
 * assert.deepEqual(prettyReply(["a"]), ["OK", "* a"]);
 * assert.deepEqual(prettyReply({ error: "unknown task" }), ["ERROR", "    unknown task"]);
 * ```
 */
export function prettyReply(reply: unknown): ["OK" | "ERROR", string] {
  if (Array.isArray(reply)) {
    return ["OK", reply.length ? reply.map((item) => `* ${pyStr(item)}`).join("\n") : "- empty -"];
  }
  if (isObject(reply)) {
    if ("ok" in reply) return ["OK", indent(prettyReply(reply.ok)[1], 4)];
    if ("error" in reply) return ["ERROR", indent(prettyReply(reply.error)[1], 4)];
    return ["OK", pyJson(reply, { sortKeys: true, indent: 4 })];
  }
  if (typeof reply === "string") return ["OK", reply];
  return ["OK", pyRepr(reply)];
}

/**
 * One node's reply as `celery inspect`/`control` print it (`showBody` false: the title
 * line only, as `celery status`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatNodeReply } from "./format.ts";
 * assert.equal(formatNodeReply({ "w1@h": { ok: "pong" } }), "->  w1@h: OK\n        pong\n");
 * assert.equal(formatNodeReply({ "w1@h": [] }), "->  w1@h: OK\n    - empty -\n");
 * assert.equal(formatNodeReply({ "w1@h": { ok: "pong" } }, false), "->  w1@h: OK\n");
 * ```
 */
export function formatNodeReply(reply: Record<string, unknown>, showBody = true): string {
  const [node] = Object.keys(reply);
  if (node === undefined) return "";
  const [status, body] = prettyReply(reply[node]);
  let out = `->  ${node}: ${status}\n`;
  if (showBody && body) out += indent(body, 4) + "\n";
  return out;
}

/**
 * The closing line of `inspect` and `status`: `\n1 node online.\n`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodesOnline } from "./format.ts";
 * assert.equal(nodesOnline(2), "\n2 nodes online.\n");
 * ```
 */
export function nodesOnline(count: number): string {
  return `\n${count} ${count === 1 ? "node" : "nodes"} online.\n`;
}
