/**
 * Celery's canvas: {@linkcode Signature} (a task call that can be passed around and sent
 * later), {@linkcode Chain}, {@linkcode Group} and {@linkcode Chord}, with Celery 5.2's
 * semantics and wire form (`celery/canvas.py`):
 *
 * - a signature is a plain JSON object on the wire: `{"task", "args", "kwargs", "options",
 *   "subtask_type", "immutable"}`; options keep Celery's names (`task_id`, `link`, …);
 * - `chain(a, b, c)` sends one message for `a` whose `embed.chain` holds `[c, b]` (the rest,
 *   reversed); every step is *frozen* first (its `task_id` is in its options), so the
 *   chain's result is known at once and linked to the earlier ones through `parent`;
 * - `group([a, b])` sends independent messages with header `group=<gid>` and
 *   `group_index: null`, and returns a `GroupResult`;
 * - `chord([a, b], c)` stores the chord size first (`…<gid>.s`), then sends the header
 *   members with `group=<gid>`, `group_index=i` and `embed.chord` = the body; the worker that
 *   finishes the last member sends `c` with `[[r0, r1, …]]`;
 * - nesting as Celery does it: chains are spliced, nested groups flattened, a group followed
 *   by a task in a chain is upgraded to a chord, a chord followed by a task gets it appended
 *   to its body.
 *
 * Building and freezing are pure; only `applyAsync`/`delay` send.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { AsyncResult } from "../async_result.ts";
import { ConfigError } from "../errors.ts";
import { GroupResult, type ResultHandle } from "../group_result.ts";
import type { SignatureDict } from "../protocol/task.ts";
import { currentTaskScope } from "./current.ts";
import { sendOptionsFromWire, type SignatureOptions, toWireOptions } from "./options.ts";

export type { ResultHandle };

/** What a signature is built from (`args`, `kwargs`, Celery-named `options`, flags). */
export interface SignatureInit {
  /** Positional arguments. @default [] */
  args?: unknown[];
  /** Keyword arguments. @default {} */
  kwargs?: Record<string, unknown>;
  /** Options, camelCase or under Celery's names. @default {} */
  options?: SignatureOptions;
  /** An immutable signature does not receive its parent's result. @default false */
  immutable?: boolean;
}

/** What {@linkcode Signature.freeze} assigns (Celery's `freeze()` arguments). */
export interface FreezeOptions {
  /** Task id to use when it has none yet. @default a new UUID */
  taskId?: string;
  /** Group id, when it has none yet. @default none */
  groupId?: string;
  /** Chord body to report to. @default none */
  chord?: AnySignature;
  /** Workflow root. @default none (its own id when sent) */
  rootId?: string;
  /** Parent task. @default none */
  parentId?: string;
  /** Position in a chord header. @default none */
  groupIndex?: number;
}

/** Any signature: a task, a chain, a group or a chord. */
// deno-lint-ignore no-explicit-any
export type AnySignature = Signature<any>;

/** Options that keep their first value when a signature is merged (Celery's rule). */
const IMMUTABLE_OPTIONS = new Set(["group_id"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype;
}

/** A copy of an option value: signatures cloned, lists and plain objects copied. */
function copyOption(value: unknown): unknown {
  if (value instanceof Signature) return value.clone();
  if (Array.isArray(value)) return value.map(copyOption);
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copyOption(v)]));
  }
  return value;
}

/** JSON form of an option value: signatures as their dicts. */
function plainOption(value: unknown): unknown {
  if (value instanceof Signature) return value.toDict();
  if (Array.isArray(value)) return value.map(plainOption);
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainOption(v)]));
  }
  return value;
}

/** Drops `null`/`undefined` options (Celery: "extra options set to None are dismissed"). */
function given(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(options).filter(([, v]) => v !== undefined && v !== null),
  );
}

/**
 * A task call with its arguments and options, to send later or to pass around (as a
 * callback, a chain step, a group member). Build one with `task.s(...args)`,
 * `task.si(...args)` (immutable) or {@linkcode signature}.
 *
 * @typeParam T What sending it returns: an `AsyncResult`, or a `GroupResult` for groups.
 *
 * @example Build, set options, send
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://signature-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const sig = add.s(2).set({ queue: "celery", countdown: 0 });
 * assert.deepEqual(sig.toDict(), {
 *   task: "tasks.add", args: [2], kwargs: {}, options: { queue: "celery", countdown: 0 },
 *   subtask_type: null, immutable: false,
 * });
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * const result = await sig.delay(3); // partial args are prepended: add(3, 2)
 * assert.equal(await result.get({ timeout: 5 }), 5);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Signature<T extends ResultHandle = AsyncResult<unknown>> {
  /** The app that sends it. */
  readonly app: App;
  /** Task name (`celery.chain`, `celery.group`, `celery.chord` for composites). */
  task: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** Options under Celery's names (`task_id`, `queue`, `link`, …), as on the wire. */
  options: Record<string, unknown>;
  /** `null`, or `chain`/`group`/`chord`/… for composites. */
  subtaskType: string | null;
  /** An immutable signature ignores partial arguments (its parent's result). */
  immutable: boolean;

  /**
   * @param app The app that sends it.
   * @param task Task name; it need not be registered here (a Python worker may run it).
   */
  constructor(app: App, task: string, init: SignatureInit = {}, subtaskType: string | null = null) {
    if (typeof task !== "string" || !task) {
      throw new TypeError("Cannot build signature: task must be a non-empty string");
    }
    this.app = app;
    this.task = task;
    this.args = [...(init.args ?? [])];
    this.kwargs = { ...(init.kwargs ?? {}) };
    this.options = toWireOptions(init.options ?? {});
    this.subtaskType = subtaskType;
    this.immutable = init.immutable ?? false;
  }

  /** Its task id once frozen (`options.task_id`). */
  get id(): string | undefined {
    const id = this.options.task_id;
    return typeof id === "string" ? id : undefined;
  }

  /** The task name (Celery's `sig.name`). */
  get name(): string {
    return this.task;
  }

  /**
   * Sets options (Celery's `.set()`): camelCase or Celery names; `immutable` sets the flag.
   * Returns this signature, for chaining.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp, signature } from "../../mod.ts";
   * const app = createApp({ broker: "memory://set-doc" });
   * const sig = signature(app, "tasks.add", { args: [1] }).set({ queue: "q", priority: 5, immutable: true });
   * assert.deepEqual([sig.options, sig.immutable], [{ queue: "q", priority: 5 }, true]);
   * ```
   */
  set(options: SignatureOptions & { immutable?: boolean }): this {
    const { immutable, ...rest } = options;
    if (immutable !== undefined) this.setImmutable(immutable);
    Object.assign(this.options, toWireOptions(rest));
    return this;
  }

  /** Sets the immutable flag (a group sets it on its members, a chord on its header). */
  setImmutable(immutable: boolean): void {
    this.immutable = immutable;
  }

  #appendOption(key: "link" | "link_error", value: AnySignature): void {
    const current = this.options[key];
    const list = Array.isArray(current) ? current : current ? [current] : [];
    if (!list.includes(value)) list.push(value);
    this.options[key] = list;
  }

  /**
   * Adds a callback, applied with this task's return value prepended when it succeeds
   * (`embed.callbacks`). Returns the callback, as in Celery.
   */
  link(callback: AnySignature): AnySignature {
    this.#appendOption("link", callback);
    return callback;
  }

  /**
   * Adds an errback, sent with this task's id as its argument when it fails
   * (`embed.errbacks`). Returns the errback, as in Celery.
   */
  linkError(errback: AnySignature): AnySignature {
    this.#appendOption("link_error", errback);
    return errback;
  }

  /** `linkError` that returns this signature (Celery's `on_error`). */
  onError(errback: AnySignature): this {
    this.linkError(errback);
    return this;
  }

  /**
   * Merges partial arguments as Celery's `_merge`: args prepended and kwargs merged unless
   * immutable; options merged, but a `group_id` already set is kept.
   */
  protected merge(
    args: unknown[],
    kwargs: Record<string, unknown>,
    options: Record<string, unknown> | null,
  ): [unknown[], Record<string, unknown>, Record<string, unknown>] {
    let merged = this.options;
    if (options) {
      merged = { ...this.options };
      for (const [key, value] of Object.entries(options)) {
        if (!(IMMUTABLE_OPTIONS.has(key) && key in this.options)) merged[key] = value;
      }
    }
    if (this.immutable) return [this.args, this.kwargs, merged];
    return [
      args.length ? [...args, ...this.args] : this.args,
      Object.keys(kwargs).length ? { ...this.kwargs, ...kwargs } : this.kwargs,
      merged,
    ];
  }

  /** Builds a signature of the same kind from merged parts (subclasses copy their members). */
  protected rebuild(
    args: unknown[],
    kwargs: Record<string, unknown>,
    options: Record<string, unknown>,
  ): Signature<T> {
    const sig = new Signature<T>(this.app, this.task, {
      args,
      kwargs,
      immutable: this.immutable,
    }, this.subtaskType);
    sig.options = options;
    return sig;
  }

  /**
   * A copy (Celery's `clone`), with partial args prepended, kwargs and options merged.
   * Options are copied deeply, so the copy can be frozen without touching the original.
   */
  clone(
    partial: {
      args?: unknown[];
      kwargs?: Record<string, unknown>;
      options?: SignatureOptions;
    } = {},
  ): this {
    const args = partial.args ?? [];
    const kwargs = partial.kwargs ?? {};
    const options = partial.options ? given(toWireOptions(partial.options)) : null;
    const [a, k, o] = args.length || Object.keys(kwargs).length || options
      ? this.merge(args, kwargs, options ?? {})
      : [this.args, this.kwargs, this.options];
    return this.rebuild(
      [...a],
      { ...k },
      copyOption(o) as Record<string, unknown>,
    ) as this;
  }

  /**
   * Gives the signature its task id (and workflow links) without sending it, and returns
   * its future result (Celery's `freeze`). Idempotent: an id already set is kept.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createApp } from "../../mod.ts";
   * const app = createApp({ broker: "memory://freeze-doc" });
   * const add = app.task("tasks.add", (x: number, y: number) => x + y);
   * const sig = add.s(1, 2);
   * const result = sig.freeze();
   * assert.equal(sig.id, result.id);
   * assert.equal(sig.freeze().id, result.id);
   * ```
   */
  freeze(options: FreezeOptions = {}): T {
    const opts = this.options;
    if (typeof opts.task_id !== "string" || !opts.task_id) {
      opts.task_id = options.taskId ?? crypto.randomUUID();
    }
    if (options.rootId) opts.root_id = options.rootId;
    if (options.parentId) opts.parent_id = options.parentId;
    if (options.groupId && !("group_id" in opts)) opts.group_id = options.groupId;
    if (options.chord) opts.chord = options.chord;
    if (options.groupIndex !== undefined && options.groupIndex !== null) {
      opts.group_index = options.groupIndex;
    }
    return this.app.asyncResult(opts.task_id as string) as unknown as T;
  }

  /**
   * Sends it. Partial `args` are prepended and `kwargs` merged (unless immutable); `options`
   * override its own (Celery's `apply_async`).
   *
   * @throws {TypeError} When an option cannot be sent (a bad `eta`, a `link` that is not a
   *   signature).
   */
  async applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SignatureOptions = {},
  ): Promise<T> {
    const extra = given(toWireOptions(options));
    const [a, k, o] = args.length || Object.keys(kwargs).length || Object.keys(extra).length
      ? this.merge(args, kwargs, extra)
      : [this.args, this.kwargs, this.options];
    const result = await this.app.sendTask(this.task, a, k, sendOptionsFromWire(o));
    return result as unknown as T;
  }

  /** Sends it with partial positional arguments (Celery's `delay`). */
  delay(...args: unknown[]): Promise<T> {
    return this.applyAsync(args);
  }

  /**
   * This signature followed by `others` (Celery's `|`): a chain, or, after a group, a chord.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Chain, Chord, createApp, group } from "../../mod.ts";
   * const app = createApp({ broker: "memory://pipe-doc" });
   * const add = app.task("tasks.add", (x: number, y: number) => x + y);
   * assert.ok(add.s(1, 1).pipe(add.s(2)) instanceof Chain);
   * assert.ok(group([add.s(1, 1), add.s(2, 2)]).pipe(add.s(3)) instanceof Chord);
   * ```
   */
  pipe(...others: AnySignature[]): AnySignature {
    // deno-lint-ignore no-this-alias
    let acc: AnySignature = this;
    for (const other of others) acc = acc.pipeOne(other);
    return acc;
  }

  /** `this | other` for one other signature. */
  protected pipeOne(other: AnySignature): AnySignature {
    if (other instanceof Chain) return new Chain(this.app, [this, ...other.unchainTasks()]);
    if (other instanceof Group) return new Chain(this.app, [this, maybeUnrollGroup(other)]);
    return new Chain(this.app, [this, other]);
  }

  /** How many completions it counts for in a chord header (Celery's `_descend`). */
  chordSize(): number {
    return 1;
  }

  /** The `kwargs` as written on the wire (composites put their members here). */
  protected wireKwargs(): Record<string, unknown> {
    return plainOption(this.kwargs) as Record<string, unknown>;
  }

  /**
   * Celery's dict form, as it travels in a message (`embed.callbacks`, `embed.chain`, …):
   * `{task, args, kwargs, options, subtask_type, immutable}`, nested signatures as dicts.
   */
  toDict(): SignatureDict {
    return {
      task: this.task,
      args: plainOption(this.args) as unknown[],
      kwargs: this.wireKwargs(),
      options: plainOption(this.options) as Record<string, unknown>,
      subtask_type: this.subtaskType,
      immutable: this.immutable,
    };
  }

  /** `JSON.stringify` writes the dict form (Celery's `__json__`). */
  toJSON(): SignatureDict {
    return this.toDict();
  }
}

/** A group with a single member is that member (Celery's `maybe_unroll_group`). */
function maybeUnrollGroup(group: Group): AnySignature {
  return group.tasks.length === 1 ? group.tasks[0]!.clone() : group;
}

/** The sending task, if we are inside one: results sent from it are its children. */
function addToParent(result: ResultHandle): void {
  currentTaskScope()?.children.push(result.asTuple());
}

/**
 * Tasks run in parallel (Celery's `group`): each member is its own message with header
 * `group=<group id>` (and `group_index: null`); applying returns a {@linkcode GroupResult}.
 * Nested groups are flattened; a chain member runs as a chain.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, group, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://group-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * const result = await group([add.s(2, 2), add.s(4, 4)]).applyAsync();
 * assert.deepEqual(await result.get({ timeout: 5 }), [4, 8]);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Group extends Signature<GroupResult> {
  /** The members. */
  tasks: AnySignature[];

  /** Use {@linkcode group}. */
  constructor(app: App, tasks: AnySignature[], options: SignatureOptions = {}) {
    super(app, "celery.group", { options }, "group");
    this.tasks = [...tasks];
  }

  protected override rebuild(
    args: unknown[],
    _kwargs: Record<string, unknown>,
    options: Record<string, unknown>,
  ): Group {
    const copy = new Group(this.app, this.tasks.map((t) => t.clone()));
    copy.args = args;
    copy.options = options;
    copy.immutable = this.immutable;
    return copy;
  }

  protected override wireKwargs(): Record<string, unknown> {
    return { tasks: this.tasks.map((t) => t.toDict()) };
  }

  /** Sets the flag on every member (Celery). */
  override setImmutable(immutable: boolean): void {
    for (const t of this.tasks) t.setImmutable(immutable);
  }

  /**
   * Links an immutable copy of `callback` to the first member only (Celery's behaviour: it
   * may run before the other members finish; use a chord to wait for all).
   */
  override link(callback: AnySignature): AnySignature {
    const sig = callback.clone().set({ immutable: true });
    return this.tasks[0]!.link(sig);
  }

  /** Links `errback` to every member (it may be called more than once). */
  override linkError(errback: AnySignature): AnySignature {
    for (const t of this.tasks) t.linkError(errback);
    return errback;
  }

  protected override pipeOne(other: AnySignature): AnySignature {
    return new Chord(this.app, this, other);
  }

  override chordSize(): number {
    return this.tasks.reduce((n, t) => n + t.chordSize(), 0);
  }

  /**
   * Freezes the members (Celery's `_freeze_group_tasks`): the group id (`options.task_id`),
   * then each member, nested groups flattened, with `group_index` 0, 1, …
   */
  freezeGroupTasks(options: FreezeOptions = {}): [string, ResultHandle[]] {
    const opts = this.options;
    if (typeof opts.task_id !== "string" || !opts.task_id) {
      opts.task_id = options.groupId || crypto.randomUUID();
    }
    if (options.groupId) opts.group_id = options.groupId;
    if (options.chord) opts.chord = options.chord;
    if (options.groupIndex !== undefined) opts.group_index = options.groupIndex;
    const rootId = (opts.root_id as string | undefined) ??
      (options.rootId ? (opts.root_id = options.rootId) : undefined);
    const parentId = (opts.parent_id as string | undefined) ??
      (options.parentId ? (opts.parent_id = options.parentId) : undefined);
    const stack = [...this.tasks];
    const members: AnySignature[] = [];
    const results: ResultHandle[] = [];
    while (stack.length) {
      const task = stack.shift()!.clone();
      if (task instanceof Group) {
        stack.unshift(...task.tasks);
        continue;
      }
      members.push(task);
      results.push(task.freeze({
        groupId: options.groupId,
        chord: options.chord,
        rootId,
        parentId,
        groupIndex: results.length,
      }));
    }
    this.tasks = members;
    return [opts.task_id as string, results];
  }

  /** Freezes the members and returns the future `GroupResult`. */
  override freeze(options: FreezeOptions = {}): GroupResult {
    const [id, results] = this.freezeGroupTasks(options);
    return new GroupResult(id, results, this.app);
  }

  /** Members cloned and frozen with the group id, nested groups flattened. */
  #prepared(tasks: AnySignature[], groupId: string, rootId: string | undefined): AnySignature[] {
    const out: AnySignature[] = [];
    for (const t of tasks) {
      const task = t.clone();
      if (task instanceof Group) {
        out.push(...task.#prepared(task.tasks, groupId, rootId));
      } else {
        task.freeze({ groupId, rootId });
        out.push(task);
      }
    }
    return out;
  }

  /**
   * Sends every member (partial args go to each) and returns the `GroupResult`. When the
   * members belong to a chord, its size is stored first.
   *
   * @throws {TypeError} For a `link` option (use a chord) or a `linkError` option (link the
   *   members), as Celery.
   * @throws {ConfigError} When the members are a chord header and the backend has no chords.
   */
  override async applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SignatureOptions = {},
  ): Promise<GroupResult> {
    const extra = given(toWireOptions(options));
    if (extra.link !== undefined) throw new TypeError("Cannot add link to group: use a chord");
    if (extra.link_error !== undefined) {
      throw new TypeError("Cannot add link to group: do that on individual tasks");
    }
    if (!this.tasks.length) return this.freeze();
    const opts: Record<string, unknown> = { ...this.options, ...extra };
    const groupId = typeof opts.task_id === "string" && opts.task_id
      ? opts.task_id
      : crypto.randomUUID();
    delete opts.task_id;
    opts.group_id = groupId;
    const rootId = typeof opts.root_id === "string" ? opts.root_id : undefined;
    const toParent = opts.add_to_parent !== false;
    delete opts.add_to_parent;
    const partial = [...args, ...this.args];
    const members = this.#prepared(this.tasks, groupId, rootId);
    const chordBody = members.find((m) => m.options.chord)?.options.chord;
    if (chordBody) {
      const backend = await this.app.backend();
      if (!backend?.setChordSize) {
        throw new ConfigError(
          `Cannot apply chord "${groupId}": the ${
            backend?.kind ?? "(no)"
          } result backend does not support chords (use redis://, sqlite:// or memory://)`,
        );
      }
      await backend.setChordSize(groupId, members.reduce((n, m) => n + m.chordSize(), 0));
    }
    const results: ResultHandle[] = [];
    for (const member of members) {
      results.push(
        await member.applyAsync(partial, kwargs, {
          ...opts,
          chord: member.options.chord,
          add_to_parent: false,
        }),
      );
    }
    let result = new GroupResult(groupId, results, this.app);
    if (results.length === 1 && results[0] instanceof GroupResult) result = results[0];
    if (toParent) addToParent(result);
    return result;
  }
}

/**
 * A group whose results feed one more task (Celery's `chord`): the body runs once every
 * header member succeeded, with their results in header order as its first argument. A
 * failed member fails the body with `ChordError`. Needs a result backend with chords (Redis,
 * memory).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chord, createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://chord-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const xsum = app.task("tasks.xsum", (values: number[]) => values.reduce((a, b) => a + b, 0));
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * const result = await chord([add.s(3, 3), add.s(4, 4)], xsum.s()).applyAsync();
 * assert.equal(await result.get({ timeout: 5 }), 14);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Chord extends Signature<AsyncResult<unknown>> {
  /** The header. */
  header: Group;
  /** The body. */
  body: AnySignature;
  /** Frozen: the header is written as a group dict (with its id), as Celery does. */
  #frozen = false;

  /** Use {@linkcode chord}. */
  constructor(
    app: App,
    header: Group | AnySignature[],
    body: AnySignature,
    options: SignatureOptions = {},
    extraKwargs: Record<string, unknown> = {},
  ) {
    super(app, "celery.chord", { kwargs: extraKwargs, options }, "chord");
    this.header = header instanceof Group ? header : new Group(app, header);
    this.body = body;
  }

  protected override rebuild(
    args: unknown[],
    kwargs: Record<string, unknown>,
    options: Record<string, unknown>,
  ): Chord {
    const copy = new Chord(this.app, this.header.clone(), this.body.clone(), {}, { ...kwargs });
    copy.args = args;
    copy.options = options;
    copy.immutable = this.immutable;
    return copy;
  }

  protected override wireKwargs(): Record<string, unknown> {
    return {
      kwargs: plainOption(this.kwargs),
      header: this.#frozen ? this.header.toDict() : this.header.tasks.map((t) => t.toDict()),
      body: this.body.toDict(),
    };
  }

  /** Sets the flag on the header's members (the body keeps its own). */
  override setImmutable(immutable: boolean): void {
    this.header.setImmutable(immutable);
  }

  /** Links to the body. */
  override link(callback: AnySignature): AnySignature {
    this.body.link(callback);
    return callback;
  }

  /** Links the errback to the body (called on a `ChordError` too). */
  override linkError(errback: AnySignature): AnySignature {
    this.body.linkError(errback);
    return errback;
  }

  protected override pipeOne(other: AnySignature): AnySignature {
    if (!(other instanceof Group) && !(other instanceof Chain)) {
      const copy = this.clone();
      copy.body = copy.body.pipe(other);
      return copy;
    }
    return super.pipeOne(other);
  }

  override chordSize(): number {
    return this.body.chordSize();
  }

  /** Freezes header and body; returns the body's result, whose first parent is the header. */
  override freeze(options: FreezeOptions = {}): AsyncResult<unknown> {
    const headerResult = this.header.freeze({
      parentId: options.parentId,
      rootId: options.rootId,
      chord: this.body,
    });
    const bodyResult = this.body.freeze({
      taskId: options.taskId,
      rootId: options.rootId,
      chord: options.chord,
      groupId: options.groupId,
      groupIndex: options.groupIndex,
    }) as ResultHandle;
    linkToRoot(bodyResult, headerResult);
    this.options.task_id = this.header.options.task_id;
    this.#frozen = true;
    return bodyResult as AsyncResult<unknown>;
  }

  /**
   * Stores the chord size, sends the header, and returns the body's result (its `parent` is
   * the header's `GroupResult`). An empty header sends the body at once with `[]`.
   *
   * @throws {ConfigError} When the backend has no chord support.
   */
  override async applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SignatureOptions = {},
  ): Promise<AsyncResult<unknown>> {
    const partial = args.length && !this.immutable ? [...args, ...this.args] : this.args;
    const extra = given(toWireOptions(options));
    const bodyGiven = kwargs.body instanceof Signature ? kwargs.body : this.body;
    const body = bodyGiven.clone({ options: extra });
    const header = this.header.clone();
    const merged: Record<string, unknown> = { ...this.options, ...extra };
    const taskId = typeof merged.task_id === "string" ? merged.task_id : undefined;
    delete merged.task_id;
    return await this.#run(header, body, partial, taskId, merged);
  }

  async #run(
    header: Group,
    body: AnySignature,
    partialArgs: unknown[],
    taskId: string | undefined,
    options: Record<string, unknown>,
  ): Promise<AsyncResult<unknown>> {
    const groupId = typeof header.options.task_id === "string" && header.options.task_id
      ? header.options.task_id
      : crypto.randomUUID();
    Object.assign(body.options, options);
    const rootId = typeof body.options.root_id === "string" ? body.options.root_id : undefined;
    const bodyResult = body.freeze({ taskId, rootId }) as ResultHandle;
    const headerOptions = { ...options };
    delete headerOptions.chain;
    delete headerOptions.chord;
    const [, results] = header.freezeGroupTasks({ groupId, chord: body, rootId });
    const backend = await this.app.backend();
    if (!backend?.setChordSize || !backend.chordPartReturn) {
      throw new ConfigError(
        `Cannot apply chord "${groupId}": the ${
          backend?.kind ?? "(no)"
        } result backend does not support chords (use redis://, sqlite:// or memory://)`,
      );
    }
    let headerResult: GroupResult;
    if (header.tasks.length) {
      // A member that is itself a group keeps its structure only through a saved group
      // (Celery's RedisBackend.apply_chord).
      if (results.some((r) => r instanceof GroupResult) && backend.saveGroup) {
        await backend.saveGroup(groupId, new GroupResult(groupId, results, this.app).asTuple());
      }
      headerResult = await header.applyAsync(partialArgs, {}, {
        ...headerOptions,
        task_id: groupId,
      });
    } else {
      await body.applyAsync([[]]);
      headerResult = new GroupResult(groupId, results, this.app);
    }
    linkToRoot(bodyResult, headerResult);
    return bodyResult as AsyncResult<unknown>;
  }
}

/** Sets `parent` of the first result without one in `result`'s parent chain. */
function linkToRoot(result: ResultHandle, parent: ResultHandle): void {
  const seen = new Set<string>();
  let node: ResultHandle = result;
  while (node !== parent) {
    if (seen.has(node.id)) throw new RangeError("Cannot link results: recursive result parents");
    seen.add(node.id);
    if (!node.parent) {
      node.parent = parent;
      return;
    }
    node = node.parent;
  }
}

/**
 * Tasks run one after the other, each receiving the previous one's result (Celery's
 * `chain`): one message is sent for the first step, carrying the others (reversed) in
 * `embed.chain`; the workers send the next steps. Applying returns the last step's result;
 * `result.parent` walks back through the steps.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chain, createApp, Worker } from "../../mod.ts";
 * const app = createApp({ broker: "memory://chain-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const worker = new Worker(app, { logLevel: "critical" });
 * await worker.start();
 * const result = await chain(add.s(1, 2), add.s(10), add.s(100)).applyAsync();
 * assert.equal(await result.get({ timeout: 5 }), 113);
 * assert.equal(await result.parent?.get({ timeout: 5 }), 13);
 * await worker.stop();
 * await app.close();
 * ```
 */
export class Chain extends Signature<ResultHandle> {
  /** The steps. */
  tasks: AnySignature[];

  /** Use {@linkcode chain}. */
  constructor(app: App, tasks: AnySignature[], options: SignatureOptions = {}) {
    super(app, "celery.chain", { options }, "chain");
    this.tasks = [...tasks];
  }

  protected override rebuild(
    args: unknown[],
    _kwargs: Record<string, unknown>,
    options: Record<string, unknown>,
  ): Chain {
    const copy = new Chain(this.app, this.tasks.map((t) => t.clone()));
    copy.args = args;
    copy.options = options;
    copy.immutable = this.immutable;
    return copy;
  }

  protected override wireKwargs(): Record<string, unknown> {
    return { tasks: this.tasks.map((t) => t.toDict()) };
  }

  /** Copies of the steps, each with the chain's errbacks (Celery's `unchain_tasks`). */
  unchainTasks(): AnySignature[] {
    const tasks = this.tasks.map((t) => t.clone());
    const errbacks = this.options.link_error;
    for (const errback of Array.isArray(errbacks) ? errbacks : []) {
      for (const task of tasks) {
        task.linkError(
          errback instanceof Signature ? errback : signatureFromDict(this.app, errback),
        );
      }
    }
    return tasks;
  }

  protected override pipeOne(other: AnySignature): AnySignature {
    if (other instanceof Group) {
      const unrolled = maybeUnrollGroup(other);
      const tasks = this.unchainTasks();
      if (!tasks.length) return unrolled;
      return new Chain(this.app, [...tasks, unrolled]);
    }
    if (other instanceof Chain) {
      return new Chain(this.app, [...this.unchainTasks(), ...other.unchainTasks()]);
    }
    const last = this.tasks.at(-1);
    if (last instanceof Group) {
      const copy = this.clone();
      copy.tasks[copy.tasks.length - 1] = new Chord(this.app, copy.tasks.at(-1) as Group, other);
      return copy;
    }
    if (last instanceof Chord) {
      const copy = this.clone();
      const chordCopy = copy.tasks.at(-1) as Chord;
      chordCopy.body = chordCopy.body.pipe(other);
      return copy;
    }
    return new Chain(this.app, [...this.unchainTasks(), other]);
  }

  override chordSize(): number {
    for (let i = this.tasks.length - 1; i >= 0; i--) {
      const size = this.tasks[i]!.chordSize();
      if (size > 0) return size;
    }
    return 0;
  }

  /**
   * Celery's `prepare_steps`: walks the steps from the last, splices nested chains, upgrades
   * `group` followed by a step to a chord, freezes each step (the last one with the chain's
   * id, group and chord), and links each result to the previous step's. Returns the steps
   * and results, both last first.
   */
  #prepareSteps(
    args: unknown[],
    kwargs: Record<string, unknown>,
    o: {
      rootId?: string;
      linkError?: unknown;
      lastTaskId?: string;
      groupId?: string;
      chord?: AnySignature;
      groupIndex?: number;
      clone: boolean;
    },
  ): [AnySignature[], ResultHandle[]] {
    const steps = [...this.tasks];
    const tasks: AnySignature[] = [];
    const results: ResultHandle[] = [];
    let prevTask: AnySignature | null = null;
    let prevResult: ResultHandle | null = null;
    let i = 0;
    while (steps.length) {
      let task: AnySignature = steps.pop()!;
      const isFirst = steps.length === 0;
      const isLast = i === 0;
      if (!(task instanceof Signature)) task = signatureFromDict(this.app, task);
      if (task instanceof Group) task = maybeUnrollGroup(task);
      if (o.clone) task = isFirst ? task.clone({ args, kwargs }) : task.clone();
      else if (isFirst && !task.immutable) task.args = [...args, ...task.args];
      if (task instanceof Chain) {
        steps.push(...task.tasks);
        continue;
      }
      if (task instanceof Group && prevTask) {
        // group | task in a chain: the group becomes the header of a chord.
        tasks.pop();
        results.pop();
        task = new Chord(this.app, task, prevTask, {
          task_id: prevResult instanceof GroupResult ? undefined : prevResult?.id,
          root_id: o.rootId,
        });
      }
      const result: ResultHandle = isLast
        ? task.freeze({
          taskId: o.lastTaskId,
          rootId: o.rootId,
          groupId: o.groupId,
          chord: o.chord,
          groupIndex: o.groupIndex,
        })
        : task.freeze({ rootId: o.rootId });
      i++;
      if (prevTask && prevResult && !prevResult.parent) prevResult.parent = result;
      if (o.linkError) {
        const errbacks = Array.isArray(o.linkError) ? o.linkError : [o.linkError];
        for (const e of errbacks) {
          task.linkError(e instanceof Signature ? e : signatureFromDict(this.app, e));
        }
      }
      tasks.push(task);
      results.push(result);
      prevTask = task;
      prevResult = result;
      if (task instanceof Chord) {
        // The next (earlier) step's result links to the chord's header, not its body.
        let node: ResultHandle = result;
        while (node.parent) node = node.parent;
        prevResult = node;
      }
    }
    return [tasks, results];
  }

  /** Freezes every step; returns the last step's result (parents lead back to the first). */
  override freeze(options: FreezeOptions = {}): ResultHandle {
    const [, results] = this.#prepareSteps(this.args, this.kwargs, {
      rootId: options.rootId,
      lastTaskId: options.taskId,
      groupId: options.groupId,
      chord: options.chord,
      groupIndex: options.groupIndex,
      clone: false,
    });
    return results[0]!;
  }

  /**
   * Sends the first step with the rest (reversed) in `embed.chain`; returns the last step's
   * result (a `GroupResult` when the chain ends with a group).
   *
   * @throws {RangeError} For an empty chain.
   */
  override async applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SignatureOptions = {},
  ): Promise<ResultHandle> {
    const opts: Record<string, unknown> = { ...this.options, ...given(toWireOptions(options)) };
    const take = (key: string) => {
      const value = opts[key];
      delete opts[key];
      return value;
    };
    const groupId = take("group_id") as string | undefined;
    const chordBody = take("chord");
    const taskId = take("task_id") as string | undefined;
    const link = take("link");
    const linkError = take("link_error");
    const rootId = take("root_id") as string | undefined;
    const parentId = take("parent_id") as string | undefined;
    const groupIndex = take("group_index") as number | undefined;
    const partial = args.length && !this.immutable ? [...args, ...this.args] : this.args;
    const [tasks, results] = this.#prepareSteps(partial, kwargs, {
      rootId,
      linkError,
      lastTaskId: taskId,
      groupId,
      chord: chordBody === undefined
        ? undefined
        : chordBody instanceof Signature
        ? chordBody
        : signatureFromDict(this.app, chordBody),
      groupIndex,
      clone: true,
    });
    if (!results.length) throw new RangeError("Cannot apply chain: it has no steps");
    if (link) {
      for (const l of Array.isArray(link) ? link : [link]) {
        tasks[0]!.link(l instanceof Signature ? l : signatureFromDict(this.app, l));
      }
    }
    const first = tasks.pop()!;
    const previous = Array.isArray(opts.chain) ? opts.chain : [];
    opts.chain = [...previous, ...tasks];
    if (parentId) opts.parent_id = parentId;
    const fromApply = await first.applyAsync([], {}, opts);
    return tasks.length ? results[0]! : fromApply;
  }
}

/**
 * A signature for a task by name (it need not be registered here: a Python worker may run
 * it); Celery's `signature()`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, signature } from "../../mod.ts";
 * const app = createApp({ broker: "memory://signature-fn-doc" });
 * const sig = signature(app, "tasks.add", { args: [2, 3], options: { queue: "py" } });
 * assert.deepEqual(sig.toDict().options, { queue: "py" });
 * ```
 */
export function signature(app: App, task: string, init: SignatureInit = {}): Signature {
  return new Signature(app, task, init);
}

/** The members of a group given as a list, several arguments, or one iterable. */
function members(tasks: (AnySignature | Iterable<AnySignature>)[]): AnySignature[] {
  if (tasks.length === 1 && !(tasks[0] instanceof Signature)) {
    return [...(tasks[0] as Iterable<AnySignature>)];
  }
  return tasks as AnySignature[];
}

function appOf(tasks: AnySignature[], what: string): App {
  const first = tasks[0];
  if (!first) throw new RangeError(`Cannot build ${what}: it needs at least one signature`);
  return first.app;
}

/**
 * Chains signatures (Celery's `chain(a, b, c)`, same as `a | b | c`): a group followed by a
 * step becomes a chord. With a single group, the group itself is returned, as in Celery.
 *
 * @throws {RangeError} When no signature is given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chain, Chord, createApp, group } from "../../mod.ts";
 * const app = createApp({ broker: "memory://chain-fn-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const c = chain(add.s(1, 1), group([add.s(1), add.s(2)]), add.s(3));
 * assert.equal((c.toDict().kwargs?.tasks as unknown[]).length, 2); // add, chord(group, add)
 * assert.ok(chain(group([add.s(1, 1), add.s(2, 2)]), add.s(3)) instanceof Chord);
 * ```
 */
export function chain(...tasks: (AnySignature | Iterable<AnySignature>)[]): AnySignature {
  const list = members(tasks);
  const app = appOf(list, "chain");
  let acc: AnySignature = new Chain(app, []);
  for (const task of list) acc = acc.pipe(task);
  return acc;
}

/**
 * Groups signatures to run in parallel (Celery's `group`): `group([a, b])` or
 * `group(a, b)`.
 *
 * @throws {RangeError} When no signature is given (an app is needed to send).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp, group } from "../../mod.ts";
 * const app = createApp({ broker: "memory://group-fn-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * assert.equal(group([add.s(1, 1), add.s(2, 2)]).tasks.length, 2);
 * assert.equal(group(add.s(1, 1), add.s(2, 2)).toDict().subtask_type, "group");
 * ```
 */
export function group(...tasks: (AnySignature | Iterable<AnySignature>)[]): Group {
  const list = members(tasks);
  return new Group(appOf(list, "group"), list);
}

/**
 * A chord: `header` (a group or a list of signatures) then `body` with the list of their
 * results (Celery's `chord(header, body)`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chord, createApp } from "../../mod.ts";
 * const app = createApp({ broker: "memory://chord-fn-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const xsum = app.task("tasks.xsum", (v: number[]) => v.reduce((a, b) => a + b, 0));
 * const dict = chord([add.s(3, 3), add.s(4, 4)], xsum.s()).toDict();
 * assert.deepEqual(Object.keys(dict.kwargs ?? {}), ["kwargs", "header", "body"]);
 * ```
 */
export function chord(header: Group | AnySignature[], body: AnySignature): Chord {
  return new Chord(header instanceof Group ? header.app : body.app, header, body);
}

function dictList(value: unknown, what: string): SignatureDict[] {
  if (Array.isArray(value)) return value as SignatureDict[];
  if (value && typeof value === "object") {
    // A frozen header travels as a group dict: take its members.
    const tasks = (value as SignatureDict).kwargs?.tasks;
    if (Array.isArray(tasks)) return tasks as SignatureDict[];
  }
  throw new TypeError(`Cannot read ${what}: ${JSON.stringify(value)} is not a list of signatures`);
}

/**
 * Rebuilds a signature from its dict form (as found in a message's `embed`, from Python or
 * celeriac), by `subtask_type`: `chain`, `group`, `chord`, else a task signature (also for
 * Celery's `chunks`/`xmap`/`xstarmap`, which are tasks of those names on a Python worker).
 *
 * @throws {TypeError} When the value is not a signature dict.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Chain, createApp, signatureFromDict } from "../../mod.ts";
 * const app = createApp({ broker: "memory://from-dict-doc" });
 * const step = { task: "tasks.add", args: [1, 2], kwargs: {}, options: {}, subtask_type: null, immutable: false };
 * const c = signatureFromDict(app, { task: "celery.chain", args: [], kwargs: { tasks: [step, step] },
 *   options: {}, subtask_type: "chain", immutable: false });
 * assert.ok(c instanceof Chain);
 * assert.deepEqual((c.toDict().kwargs?.tasks as unknown[])[0], step);
 * ```
 */
export function signatureFromDict(app: App, dict: unknown): AnySignature {
  if (dict instanceof Signature) return dict;
  if (!isPlainObject(dict) || typeof dict.task !== "string" || !dict.task) {
    throw new TypeError(`Cannot read signature: ${JSON.stringify(dict)} is not a signature dict`);
  }
  const d = dict as SignatureDict;
  const options = isPlainObject(d.options) ? { ...d.options } : {};
  const kwargs = isPlainObject(d.kwargs) ? d.kwargs : {};
  const args = Array.isArray(d.args) ? d.args : [];
  let sig: AnySignature;
  switch (d.subtask_type) {
    case "chain":
      sig = new Chain(
        app,
        dictList(kwargs.tasks ?? [], "chain tasks").map((t) => signatureFromDict(app, t)),
      );
      break;
    case "group":
      sig = new Group(
        app,
        dictList(kwargs.tasks ?? [], "group tasks").map((t) => signatureFromDict(app, t)),
      );
      break;
    case "chord": {
      const { header, body, kwargs: extra } = kwargs as Record<string, unknown>;
      if (body === undefined || body === null) {
        throw new TypeError(`Cannot read chord ${JSON.stringify(dict)}: it has no body`);
      }
      sig = new Chord(
        app,
        dictList(header ?? [], "chord header").map((t) => signatureFromDict(app, t)),
        signatureFromDict(app, body),
        {},
        isPlainObject(extra) ? extra : {},
      );
      sig.args = [...args];
      break;
    }
    default:
      sig = new Signature(app, d.task, { args, kwargs }, d.subtask_type ?? null);
  }
  sig.options = options;
  sig.immutable = d.immutable === true;
  return sig;
}
