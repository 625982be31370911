/**
 * kombu's pidbox on the wire (Celery 5.2 remote control): the request a client broadcasts on
 * the fanout exchange `celery.pidbox`, the reply a worker publishes to the direct exchange
 * `reply.celery.pidbox`, and the node-selection rules (destination list, glob or pcre
 * pattern). Broker-neutral: brokers carry these as ordinary {@linkcode TransportMessage}s.
 *
 * @module
 */

import { DecodeError } from "../errors.ts";
import {
  decodeJsonBody,
  encodeJsonBody,
  JSON_CONTENT_TYPE,
  type TransportMessage,
} from "../protocol/message.ts";

/**
 * The fanout exchange requests are broadcast on (`<control_exchange>.pidbox`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PIDBOX_EXCHANGE } from "./protocol.ts";
 * assert.equal(PIDBOX_EXCHANGE, "celery.pidbox");
 * ```
 */
export const PIDBOX_EXCHANGE = "celery.pidbox";

/**
 * The direct exchange replies are published to (`reply.<control_exchange>.pidbox`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { REPLY_EXCHANGE } from "./protocol.ts";
 * assert.equal(REPLY_EXCHANGE, "reply.celery.pidbox");
 * ```
 */
export const REPLY_EXCHANGE = "reply.celery.pidbox";

/**
 * A node's own pidbox queue, bound to {@linkcode PIDBOX_EXCHANGE} with an empty key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeQueue } from "./protocol.ts";
 * assert.equal(nodeQueue("w1@host"), "w1@host.celery.pidbox");
 * ```
 */
export function nodeQueue(hostname: string): string {
  return `${hostname}.${PIDBOX_EXCHANGE}`;
}

/**
 * A client's reply queue, bound to {@linkcode REPLY_EXCHANGE} with routing key `oid`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { replyQueue } from "./protocol.ts";
 * assert.equal(replyQueue("abc"), "abc.reply.celery.pidbox");
 * ```
 */
export function replyQueue(oid: string): string {
  return `${oid}.${REPLY_EXCHANGE}`;
}

/** Where a worker sends its reply. */
export interface ReplyTo {
  /** Reply exchange, `reply.celery.pidbox`. */
  exchange: string;
  /** The client's oid. */
  routing_key: string;
}

/** A remote-control request body, as kombu's `Mailbox._publish` writes it. */
export interface ControlRequest {
  /** Command name (`ping`, `rate_limit`, …). */
  method: string;
  /** Keyword arguments of the command. */
  arguments: Record<string, unknown>;
  /** Node names to handle it; `null` or empty: every node. */
  destination: string[] | null;
  /** Node-name pattern (used only with `matcher`). */
  pattern: string | null;
  /** `glob` or `pcre`. */
  matcher: string | null;
  /** Reply ticket (present only when a reply is wanted). */
  ticket?: string;
  /** Reply address (present only when a reply is wanted). */
  reply_to?: ReplyTo;
}

/** A request as received: the body plus the headers that matter. */
export interface ReceivedRequest {
  /** The body. */
  request: ControlRequest;
  /** Header `clock` (the sender's Lamport clock), 0 when missing. */
  clock: number;
  /** Header `expires` (unix seconds), 0 when missing; Celery workers ignore it. */
  expires: number;
}

/**
 * Builds the message of a request: headers `{clock, expires}`, delivery mode 2 (as kombu).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRequest, encodeRequest } from "./protocol.ts";
 * const message = encodeRequest(
 *   { method: "ping", arguments: {}, destination: null, pattern: null, matcher: null },
 *   { clock: 1, expires: 1795420408.77 },
 * );
 * assert.deepEqual(message.headers, { clock: 1, expires: 1795420408.77 });
 * assert.equal(decodeRequest(message).request.method, "ping");
 * ```
 */
export function encodeRequest(
  request: ControlRequest,
  headers: { clock: number; expires: number },
): TransportMessage {
  return {
    headers: { clock: headers.clock, expires: headers.expires },
    properties: { delivery_mode: 2 },
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: encodeJsonBody(request),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function headerNumber(value: unknown): number {
  const n = typeof value === "bigint" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? n : 0;
}

/**
 * Reads a request message.
 *
 * @throws {DecodeError} When the body is not JSON or not a request (no `method`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecodeError } from "../errors.ts";
 * import { encodeJsonBody } from "../protocol/message.ts";
 * import { decodeRequest } from "./protocol.ts";
 * const bad = { headers: {}, properties: {}, contentType: "application/json", contentEncoding: "utf-8", body: encodeJsonBody([1]) };
 * assert.throws(() => decodeRequest(bad), DecodeError);
 * ```
 */
export function decodeRequest(message: TransportMessage): ReceivedRequest {
  const body = decodeJsonBody(message);
  if (!isObject(body) || typeof body.method !== "string") {
    throw new DecodeError(
      "Cannot read remote-control request: the body has no method",
      message.body,
    );
  }
  const destination = Array.isArray(body.destination)
    ? body.destination.filter((d): d is string => typeof d === "string")
    : null;
  const request: ControlRequest = {
    method: body.method,
    arguments: isObject(body.arguments) ? body.arguments : {},
    destination,
    pattern: typeof body.pattern === "string" ? body.pattern : null,
    matcher: typeof body.matcher === "string" ? body.matcher : null,
  };
  if (typeof body.ticket === "string") request.ticket = body.ticket;
  const replyTo = body.reply_to;
  if (
    isObject(replyTo) && typeof replyTo.exchange === "string" &&
    typeof replyTo.routing_key === "string"
  ) {
    request.reply_to = { exchange: replyTo.exchange, routing_key: replyTo.routing_key };
  }
  return {
    request,
    clock: headerNumber(message.headers["clock"]),
    expires: headerNumber(message.headers["expires"]),
  };
}

/**
 * Builds the message of a reply: body `{<node>: reply}`, headers `{ticket, clock}`,
 * delivery mode 1 (transient), as kombu's `Mailbox._publish_reply`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeReply, encodeReply } from "./protocol.ts";
 * const message = encodeReply("w1@h", { ok: "pong" }, { ticket: "t", clock: 3 });
 * assert.deepEqual(message.properties, { delivery_mode: 1 });
 * assert.deepEqual(decodeReply(message), { ticket: "t", clock: 3, expires: 0, body: { "w1@h": { ok: "pong" } } });
 * ```
 */
export function encodeReply(
  hostname: string,
  reply: unknown,
  headers: { ticket: string | null; clock: number },
): TransportMessage {
  return {
    headers: { ticket: headers.ticket, clock: headers.clock },
    properties: { delivery_mode: 1 },
    contentType: JSON_CONTENT_TYPE,
    contentEncoding: "utf-8",
    body: encodeJsonBody({ [hostname]: reply === undefined ? null : reply }),
  };
}

/** A reply as received. */
export interface ReceivedReply {
  /** Header `ticket`, `null` when missing (kombu then accepts it). */
  ticket: string | null;
  /** Header `clock`, 0 when missing. */
  clock: number;
  /** Header `expires`, 0 when missing. */
  expires: number;
  /** The body: `{<node>: reply}`. */
  body: Record<string, unknown>;
}

/**
 * Reads a reply message.
 *
 * @throws {DecodeError} When the body is not a JSON object.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeReply, encodeReply } from "./protocol.ts";
 * const reply = decodeReply(encodeReply("w1@h", [], { ticket: null, clock: 9 }));
 * assert.deepEqual([reply.ticket, reply.clock, reply.body], [null, 9, { "w1@h": [] }]);
 * ```
 */
export function decodeReply(message: TransportMessage): ReceivedReply {
  const body = decodeJsonBody(message);
  if (!isObject(body)) {
    throw new DecodeError(
      "Cannot read remote-control reply: the body is not an object",
      message.body,
    );
  }
  const ticket = message.headers["ticket"];
  return {
    ticket: typeof ticket === "string" ? ticket : null,
    clock: headerNumber(message.headers["clock"]),
    expires: headerNumber(message.headers["expires"]),
    body,
  };
}

const globCache = new Map<string, RegExp>();

/**
 * Python's `fnmatch.fnmatch` on POSIX (case-sensitive): `*`, `?`, `[seq]`, `[!seq]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { globMatch } from "./protocol.ts";
 * assert.ok(globMatch("w1@host", "w*@host"));
 * assert.ok(globMatch("w1@host", "w[0-9]@*"));
 * assert.ok(!globMatch("w1@host", "w[!0-9]@*"));
 * assert.ok(!globMatch("w1@host", "W*"));
 * ```
 */
export function globMatch(name: string, pattern: string): boolean {
  let re = globCache.get(pattern);
  if (!re) {
    let out = "";
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]!;
      if (c === "*") out += "[\\s\\S]*";
      else if (c === "?") out += "[\\s\\S]";
      else if (c === "[") {
        // As fnmatch.translate: a leading "!" negates, a "]" right after "[" or "[!" is a
        // member, an unclosed "[" is a literal.
        let j = i + 1;
        if (pattern[j] === "!") j++;
        if (pattern[j] === "]") j++;
        const close = pattern.indexOf("]", j);
        if (close < 0) out += "\\[";
        else {
          let body = pattern.slice(i + 1, close);
          const negate = body.startsWith("!");
          if (negate) body = body.slice(1);
          body = body.replace(/[\\\]\[^]/g, "\\$&");
          out += `[${negate ? "^" : ""}${body}]`;
          i = close;
        }
      } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    }
    re = new RegExp(`^${out}$`);
    if (globCache.size > 100) globCache.clear();
    globCache.set(pattern, re);
  }
  return re.test(name);
}

/**
 * Python's `re.match(pattern, name)`: a regular expression anchored at the start only.
 * An invalid expression matches nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pcreMatch } from "./protocol.ts";
 * assert.ok(pcreMatch("w1@host", "w\\d"));
 * assert.ok(!pcreMatch("w1@host", "host"));
 * assert.ok(!pcreMatch("w1@host", "("));
 * ```
 */
export function pcreMatch(name: string, pattern: string): boolean {
  try {
    const re = new RegExp(pattern, "y");
    re.lastIndex = 0;
    return re.test(name);
  } catch {
    return false;
  }
}

/**
 * Whether a node handles a request (kombu's `Node.handle_message`): with a non-empty
 * `destination`, only the nodes it lists; else with both `pattern` and `matcher`, the nodes
 * the pattern matches (`glob` or `pcre`; an unknown matcher matches nothing); else all.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isForNode } from "./protocol.ts";
 * const base = { method: "ping", arguments: {}, destination: null, pattern: null, matcher: null };
 * assert.ok(isForNode("w1@h", base));
 * assert.ok(!isForNode("w1@h", { ...base, destination: ["w2@h"] }));
 * assert.ok(isForNode("w1@h", { ...base, pattern: "w1@*", matcher: "glob" }));
 * assert.ok(isForNode("w1@h", { ...base, pattern: "w2@*" })); // no matcher: pattern ignored
 * ```
 */
export function isForNode(hostname: string, request: ControlRequest): boolean {
  if (request.destination && request.destination.length) {
    return request.destination.includes(hostname);
  }
  if (request.pattern && request.matcher) {
    if (request.matcher === "glob") return globMatch(hostname, request.pattern);
    if (request.matcher === "pcre") return pcreMatch(hostname, request.pattern);
    return false;
  }
  return true;
}

// deno-lint-ignore no-explicit-any
const RawJSON = JSON as any;

/**
 * A number that JSON-encodes as a Python float (with a fractional part: `3` ⇒ `3.0`), for
 * fields Python reads with `isinstance(x, float)` (mingle's revoked timestamps). Values are
 * `JSON.rawJSON` objects: only the JSON encoders understand them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pyFloat } from "./protocol.ts";
 * assert.equal(JSON.stringify({ t: pyFloat(3) }), '{"t":3.0}');
 * assert.equal(JSON.stringify([pyFloat(2.5), pyFloat(1e21)]), "[2.5,1e+21]");
 * ```
 */
export function pyFloat(value: number): unknown {
  if (!Number.isFinite(value)) return null;
  const text = String(value);
  return RawJSON.rawJSON(/[.eE]/.test(text) ? text : `${text}.0`);
}
