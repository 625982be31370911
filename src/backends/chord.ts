/**
 * Chords and saved groups in Celery's key/value layout (Celery 5.2 `backends/redis.py`,
 * "native" chords, no `chord_unlock` task):
 *
 * | key | type | content |
 * |---|---|---|
 * | `celery-taskset-meta-<gid>` | string | a saved group: `{"result": <group result tuple>}` |
 * | `celery-taskset-meta-<gid>.s` | string | chord size, set by the client before the header is sent |
 * | `celery-taskset-meta-<gid>.t` | string | size adjustment (`INCR` by Celery's `add_to_chord`) |
 * | `celery-taskset-meta-<gid>.j` | zset | one member per finished header task: `[1, id, STATE, result]` scored by `group_index` (`+inf` when null) |
 *
 * Each header task, when it finishes, runs `ZADD .j`, `ZCOUNT .j -inf +inf`, `GET .t`,
 * `GET .s` and (with an expiry) `EXPIRE` of the three keys in one `MULTI`; the one that sees
 * `count == size + adjustment` reads the saved group (`GET celery-taskset-meta-<gid>`), else
 * `ZRANGE .j 0 -1`, sends the body, then `DEL`s `.j`, `.t`, `.s`.
 *
 * Values are written as Python's `json.dumps` writes them (`", "` and `": "` separators,
 * non-ASCII escaped), byte for byte what a Python worker writes.
 *
 * @module
 */

import type { RedisArg, RedisClient } from "../redis/client.ts";
import { DecodeError } from "../errors.ts";
import { parseJson } from "../protocol/json.ts";
import type { ChordJoin, ChordPart } from "./backend.ts";

/**
 * A group key: `celery-taskset-meta-<gid>` plus a suffix (`.j`, `.s`, `.t`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { groupKey } from "./chord.ts";
 * assert.equal(groupKey("g1", ".s"), "celery-taskset-meta-g1.s");
 * ```
 */
export function groupKey(groupId: string, suffix: "" | ".j" | ".s" | ".t" = ""): string {
  return `celery-taskset-meta-${groupId}${suffix}`;
}

function pyString(text: string): string {
  return JSON.stringify(text).replace(
    /[\u007f-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

/**
 * JSON text as Python's `json.dumps` writes it (kombu's default): `", "` and `": "`
 * separators, non-ASCII escaped as `\uXXXX`, `NaN`/`Infinity` as Python writes them, `bigint`
 * as an exact integer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pythonJson } from "./chord.ts";
 * assert.equal(pythonJson([1, "id", "SUCCESS", { a: [true, null] }]), '[1, "id", "SUCCESS", {"a": [true, null]}]');
 * assert.equal(pythonJson("é"), '"\\u00e9"');
 * ```
 */
export function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return pyString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "NaN";
    if (!Number.isFinite(value)) return value > 0 ? "Infinity" : "-Infinity";
    return String(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((v) => v === undefined ? "null" : pythonJson(v)).join(", ")}]`;
  }
  if (typeof value === "object") {
    const withJson = value as { toJSON?: () => unknown };
    if (typeof withJson.toJSON === "function") return pythonJson(withJson.toJSON());
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{${entries.map(([k, v]) => `${pyString(k)}: ${pythonJson(v)}`).join(", ")}}`;
  }
  throw new TypeError(`Cannot write a ${typeof value} as JSON`);
}

/**
 * The `.j` member of one finished header task: `[1, "<id>", "<STATE>", <result>]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeChordPart } from "./chord.ts";
 * assert.equal(encodeChordPart({ groupId: "g", taskId: "t1", groupIndex: 0, state: "SUCCESS", result: 6 }),
 *   '[1, "t1", "SUCCESS", 6]');
 * ```
 */
export function encodeChordPart(part: ChordPart): string {
  return pythonJson([1, part.taskId, part.state, part.result]);
}

/**
 * Reads a `.j` member back.
 *
 * @throws {DecodeError} When it is not `[1, id, state, result]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeChordPart } from "./chord.ts";
 * assert.deepEqual(decodeChordPart('[1, "t1", "SUCCESS", 6]'), { taskId: "t1", state: "SUCCESS", result: 6 });
 * ```
 */
export function decodeChordPart(text: string): { taskId: string; state: string; result: unknown } {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch (cause) {
    throw new DecodeError("Cannot parse chord part as JSON", text, { cause });
  }
  if (
    !Array.isArray(value) || value.length !== 4 || typeof value[1] !== "string" ||
    typeof value[2] !== "string"
  ) {
    throw new DecodeError("Cannot decode chord part: it is not [1, id, state, result]", text);
  }
  return { taskId: value[1], state: value[2], result: value[3] };
}

/**
 * The saved-group record `{"result": tuple}`, as `GroupResult.save()` writes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeSavedGroup } from "./chord.ts";
 * assert.equal(encodeSavedGroup([["g", null], [[["a", null], null]]]),
 *   '{"result": [["g", null], [[["a", null], null]]]}');
 * ```
 */
export function encodeSavedGroup(tuple: unknown): string {
  return pythonJson({ result: tuple });
}

/**
 * Reads a saved-group record and returns its result tuple.
 *
 * @throws {DecodeError} When it is not `{"result": …}`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSavedGroup } from "./chord.ts";
 * assert.deepEqual(decodeSavedGroup('{"result": [["g", null], []]}'), [["g", null], []]);
 * ```
 */
export function decodeSavedGroup(text: string): unknown {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch (cause) {
    throw new DecodeError("Cannot parse saved group as JSON", text, { cause });
  }
  if (value === null || typeof value !== "object" || !("result" in value)) {
    throw new DecodeError("Cannot decode saved group: it has no 'result'", text);
  }
  return (value as { result: unknown }).result;
}

function execResults(results: unknown[]): unknown[] {
  for (const value of results) if (value instanceof Error) throw value;
  return results;
}

/**
 * The chord and group commands of the Redis backend, on one connection.
 *
 * @example
 * ```ts ignore
 * const chords = new RedisChords(client, 86400);
 * await chords.setChordSize("g1", 2);
 * ```
 */
export class RedisChords {
  #client: () => RedisClient;
  #expires: number;

  /**
   * @param client The backend's command connection.
   * @param expires Seconds the keys live (0: no expiry), Celery's `result_expires`.
   */
  constructor(client: () => RedisClient, expires: number) {
    this.#client = client;
    this.#expires = Math.ceil(expires);
  }

  /** Writes `key` as Celery's backend `set` does: `SETEX` (or `SET`) + `PUBLISH`, in `MULTI`. */
  async #set(key: string, value: string): Promise<void> {
    execResults(
      await this.#client().multi([
        this.#expires > 0 ? ["SETEX", key, this.#expires, value] : ["SET", key, value],
        ["PUBLISH", key, value],
      ]),
    );
  }

  /** `SETEX <gid>.s <ttl> <size>` + `PUBLISH`. */
  setChordSize(groupId: string, size: number): Promise<void> {
    return this.#set(groupKey(groupId, ".s"), String(size));
  }

  /** One header member's state; returns the join when it completed the chord. */
  async chordPartReturn(part: ChordPart): Promise<ChordJoin | null> {
    const j = groupKey(part.groupId, ".j");
    const t = groupKey(part.groupId, ".t");
    const s = groupKey(part.groupId, ".s");
    const score = part.groupIndex === null ? "+inf" : String(part.groupIndex);
    const commands: RedisArg[][] = [
      ["ZADD", j, score, encodeChordPart(part)],
      ["ZCOUNT", j, "-inf", "+inf"],
      ["GET", t],
      ["GET", s],
    ];
    if (this.#expires > 0) {
      for (const key of [j, t, s]) commands.push(["EXPIRE", key, this.#expires]);
    }
    const [, ready, adjust, size] = execResults(await this.#client().multi(commands));
    if (!size) return null;
    if (Number(ready) !== Number(size) + Number(adjust ?? 0)) return null;
    const saved = await this.#client().call("GET", groupKey(part.groupId)) as string | null;
    if (saved !== null) return { kind: "saved", tuple: decodeSavedGroup(saved) };
    const members = await this.#client().call("ZRANGE", j, 0, -1) as string[];
    return { kind: "parts", parts: members.map(decodeChordPart) };
  }

  /** `DEL` of `.j`, `.t`, `.s`. */
  async deleteChord(groupId: string): Promise<void> {
    execResults(
      await this.#client().multi([
        ["DEL", groupKey(groupId, ".j")],
        ["DEL", groupKey(groupId, ".t")],
        ["DEL", groupKey(groupId, ".s")],
      ]),
    );
  }

  /** `celery-taskset-meta-<gid>` = `{"result": tuple}`, `SETEX` + `PUBLISH`. */
  saveGroup(groupId: string, tuple: unknown): Promise<void> {
    return this.#set(groupKey(groupId), encodeSavedGroup(tuple));
  }

  /** The saved tuple, or `null`. */
  async restoreGroup(groupId: string): Promise<unknown | null> {
    const text = await this.#client().call("GET", groupKey(groupId)) as string | null;
    return text === null ? null : decodeSavedGroup(text);
  }

  /** `DEL celery-taskset-meta-<gid>`. */
  async forgetGroup(groupId: string): Promise<void> {
    await this.#client().call("DEL", groupKey(groupId));
  }
}
