/**
 * py-amqp writes header integers beyond 32 bits with the field-table tag `L` (a signed
 * 64-bit big-endian value, `pack('>cq', b'L', v)`); amqplib 0.10 only knows RabbitMQ's `l`
 * for that same encoding and throws on `L` while parsing the frame, which breaks the whole
 * connection, and RabbitMQ redelivers the message to the next one: a poison loop. So before
 * amqplib decodes a content-header frame, {@linkcode relabelLongTags} rewrites every `L` tag
 * of its `headers` table to `l` in place (same bytes after the tag), and
 * {@linkcode patchAmqplib} installs that step in amqplib's frame reader.
 *
 * @module
 */

import { Buffer } from "node:buffer";

// deno-lint-ignore no-explicit-any
type Any = any;

const FIXED: Record<string, number> = {
  t: 1,
  b: 1,
  B: 1,
  s: 2,
  u: 2,
  I: 4,
  i: 4,
  f: 4,
  D: 5,
  l: 8,
  L: 8,
  d: 8,
  T: 8,
  V: 0,
};

interface Walk {
  buf: Uint8Array;
  view: DataView;
  relabelled: number;
}

/** Walks one field value at `offset`; returns the offset after it, or -1 when unknown. */
function walkValue(w: Walk, offset: number): number {
  const { buf, view } = w;
  if (offset >= buf.length) return -1;
  const tag = String.fromCharCode(buf[offset]!);
  if (tag === "L") {
    buf[offset] = 0x6c; // "l"
    w.relabelled++;
  }
  offset++;
  const fixed = FIXED[tag];
  if (fixed !== undefined) return offset + fixed;
  if (offset + 4 > buf.length) return -1;
  const len = view.getUint32(offset);
  const end = offset + 4 + len;
  if (end > buf.length) return -1;
  if (tag === "S" || tag === "x") return end;
  if (tag === "F") return walkTable(w, offset) < 0 ? -1 : end;
  if (tag === "A") {
    for (let at = offset + 4; at < end;) {
      at = walkValue(w, at);
      if (at < 0) return -1;
    }
    return end;
  }
  return -1;
}

/** Walks a field table (length-prefixed) at `offset`; returns its end, or -1. */
function walkTable(w: Walk, offset: number): number {
  const end = offset + 4 + w.view.getUint32(offset);
  if (end > w.buf.length) return -1;
  for (let at = offset + 4; at < end;) {
    at += 1 + w.buf[at]!; // key (shortstr)
    at = walkValue(w, at);
    if (at < 0) return -1;
  }
  return end;
}

/**
 * Rewrites the `L` tags of a basic content-header payload's `headers` table to `l`, in
 * place. Returns how many it rewrote (0 for other frames or no headers).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { relabelLongTags } from "./long_tag.ts";
 * // class 60, weight 0, body size 0, flags: headers only; headers = { n: L 2^40 }
 * const p = new Uint8Array([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0,
 *   0, 0, 0, 11, 1, 0x6e, 0x4c, 0, 0, 1, 0, 0, 0, 0, 0]);
 * assert.equal(relabelLongTags(p), 1);
 * assert.equal(p[20], 0x6c);
 * ```
 */
export function relabelLongTags(payload: Uint8Array): number {
  if (payload.length < 14) return 0;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (view.getUint16(0) !== 60) return 0; // basic class only
  const flags = view.getUint16(12);
  if (!(flags & 0x2000)) return 0;
  let at = 14;
  if (flags & 0x8000) at += 1 + payload[at]!; // content-type
  if (flags & 0x4000) at += 1 + payload[at]!; // content-encoding
  if (at + 4 > payload.length) return 0;
  const walk: Walk = { buf: payload, view, relabelled: 0 };
  walkTable(walk, at);
  return walk.relabelled;
}

let patched = false;

/**
 * Installs {@linkcode relabelLongTags} in amqplib's frame reader (`Connection.recvFrame`),
 * once per process.
 *
 * @example
 * ```ts ignore
 * await patchAmqplib();
 * ```
 */
export async function patchAmqplib(): Promise<void> {
  if (patched) return;
  const [connection, frame]: Any[] = await Promise.all([
    import("npm:amqplib@^0.10/lib/connection.js"),
    import("npm:amqplib@^0.10/lib/frame.js"),
  ]);
  const Connection = (connection.Connection ?? connection.default?.Connection) as Any;
  const parseFrame = (frame.parseFrame ?? frame.default?.parseFrame) as Any;
  const decodeFrame = (frame.decodeFrame ?? frame.default?.decodeFrame) as Any;
  if (!Connection?.prototype?.recvFrame || !parseFrame || !decodeFrame) return;
  // The same steps as amqplib 0.10's own recvFrame, plus the relabelling of header frames.
  Connection.prototype.recvFrame = function recvFrame(this: Any): Any {
    for (;;) {
      const f = parseFrame(this.rest);
      if (f) {
        this.rest = f.rest;
        if (f.type === 2) relabelLongTags(f.payload);
        return decodeFrame(f);
      }
      const incoming = this.stream.read();
      if (incoming === null) return false;
      this.recvSinceLastCheck = true;
      this.rest = Buffer.concat([this.rest, incoming]);
    }
  };
  patched = true;
}
