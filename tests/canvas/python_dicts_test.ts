/**
 * The dict form of canvases (what travels in `embed`) against the real Python Celery 5.2:
 * the same canvases are built in Python (`json.dumps(sig)`, no broker needed) and here, and
 * compared after replacing ids by "ID". Python's frozen options also carry `reply_to` (its
 * thread oid) and `root_id: null`/`parent_id: null`; celeriac writes neither (see
 * `docs/canvas.md`), so those are dropped before comparing.
 */

import assert from "node:assert/strict";
import { chain, chord, createApp, group, signature } from "../../mod.ts";
import { runPythonJson } from "../helpers/python_celery.ts";

const PY = `
import json
from celery import chain, chord, group, signature
from pytasks import add, app
def s(name, *args): return signature(name, args=args, app=app)
def si(name, *args): return signature(name, args=args, immutable=True, app=app)
out = []
out.append(s("tasks.add", 1).set(queue="q", countdown=5))
out.append(chain(s("tasks.add", 1, 2), s("tasks.add", 3)))
out.append(group(s("tasks.add", 1, 2), s("tasks.add", 3, 4)))
out.append(chord([s("tasks.add", 1, 2), s("tasks.add", 3, 4)], s("tasks.xsum")))
out.append(s("tasks.add", 1, 2) | group(s("tasks.add", 1), s("tasks.add", 2)) | s("tasks.xsum"))
x = s("tasks.add", 1); x.link(s("tasks.add", 2)); x.link_error(si("tasks.add", 3)); out.append(x)
c = chain(s("tasks.add", 1, 2), s("tasks.add", 3)); c.freeze(); out.append(c)
g = group(s("tasks.add", 1, 2), s("tasks.add", 3)); g.freeze(); out.append(g)
out.append(chord([s("tasks.add", 1, 1)], s("tasks.xsum")) | s("tasks.add", 5))
out.append(group(s("tasks.add", 1, 1), s("tasks.add", 2, 2)) | s("tasks.xsum"))
out.append(chain(chain(s("tasks.add", 1, 1), s("tasks.add", 2)), s("tasks.add", 3)))
ch = chord([s("tasks.add", 1, 2), s("tasks.add", 3, 4)], s("tasks.xsum")); ch.freeze(); out.append(ch)
fc = chain(s("tasks.add", 1, 2), group(s("tasks.add", 1), s("tasks.add", 2)), s("tasks.xsum")); fc.freeze(); out.append(fc)
out.append(signature("tasks.add", args=(2, 2), kwargs={"y": 1}, immutable=True, app=app))
print(json.dumps(out))
`;

/** Ids → "ID"; options without reply_to and without null values. */
function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === "options" && v && typeof v === "object") {
        const o: Record<string, unknown> = {};
        for (const [ok, ov] of Object.entries(v)) {
          if (ok === "reply_to" || ov === null) continue;
          o[ok] = normalize(ov);
        }
        out[k] = o;
      } else {
        out[k] = normalize(v);
      }
    }
    return out;
  }
  if (typeof value === "string" && /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(value)) return "ID";
  return value;
}

Deno.test("canvas dicts equal Python Celery 5.2's for plain, chain, group, chord, nested and frozen canvases", async () => {
  const app = createApp({ broker: "memory://py-dicts", backend: null });
  const s = (name: string, ...args: unknown[]) => signature(app, name, { args });
  const si = (name: string, ...args: unknown[]) => signature(app, name, { args, immutable: true });
  const ours: unknown[] = [];
  ours.push(s("tasks.add", 1).set({ queue: "q", countdown: 5 }));
  ours.push(chain(s("tasks.add", 1, 2), s("tasks.add", 3)));
  ours.push(group(s("tasks.add", 1, 2), s("tasks.add", 3, 4)));
  ours.push(chord([s("tasks.add", 1, 2), s("tasks.add", 3, 4)], s("tasks.xsum")));
  ours.push(
    s("tasks.add", 1, 2).pipe(group(s("tasks.add", 1), s("tasks.add", 2)), s("tasks.xsum")),
  );
  const x = s("tasks.add", 1);
  x.link(s("tasks.add", 2));
  x.linkError(si("tasks.add", 3));
  ours.push(x);
  const c = chain(s("tasks.add", 1, 2), s("tasks.add", 3));
  c.freeze();
  ours.push(c);
  const g = group(s("tasks.add", 1, 2), s("tasks.add", 3));
  g.freeze();
  ours.push(g);
  ours.push(chord([s("tasks.add", 1, 1)], s("tasks.xsum")).pipe(s("tasks.add", 5)));
  ours.push(group(s("tasks.add", 1, 1), s("tasks.add", 2, 2)).pipe(s("tasks.xsum")));
  ours.push(chain(chain(s("tasks.add", 1, 1), s("tasks.add", 2)), s("tasks.add", 3)));
  const ch = chord([s("tasks.add", 1, 2), s("tasks.add", 3, 4)], s("tasks.xsum"));
  ch.freeze();
  ours.push(ch);
  const fc = chain(
    s("tasks.add", 1, 2),
    group(s("tasks.add", 1), s("tasks.add", 2)),
    s("tasks.xsum"),
  );
  fc.freeze();
  ours.push(fc);
  ours.push(signature(app, "tasks.add", { args: [2, 2], kwargs: { y: 1 }, immutable: true }));

  const python = await runPythonJson<unknown[]>(PY, {
    broker: "memory://",
    backend: "cache+memory://",
  });
  assert.equal(python.length, ours.length);
  const mine = normalize(JSON.parse(JSON.stringify(ours))) as unknown[];
  const theirs = normalize(python) as unknown[];
  for (let i = 0; i < theirs.length; i++) {
    assert.deepEqual(mine[i], theirs[i], `canvas #${i}`);
    // Key order too (JSON text of the normalized forms).
    assert.equal(JSON.stringify(mine[i]), JSON.stringify(theirs[i]), `canvas #${i} key order`);
  }
  await app.close();
});
