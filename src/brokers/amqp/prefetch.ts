/**
 * `fetch` on RabbitMQ: one `basic.consume` per queue on a dedicated channel, a local buffer
 * of pushed messages, and a channel-wide prefetch window (`basic.qos`, `global=true`, as
 * kombu) kept at *held + max*: the messages the worker still holds plus its free slots. So
 * RabbitMQ pushes at most `max` messages beyond what the worker holds, and they stream in
 * while tasks run; `fetch` usually returns at once from the buffer.
 *
 * 1. first use of a queue: declare it (kombu's flags) and start its consumer;
 * 2. set the window to held + max (one `basic.qos` round trip, only when it changes);
 * 3. after starting consumers, one more `basic.qos` round trip as a barrier: RabbitMQ
 *    writes a new consumer's first deliveries before that reply. After widening the
 *    window, the queue releases deliveries in its own time (its "resume" is prioritised,
 *    not ordered with our frames), so the fetch counts the ready messages (`queue.declare`
 *    passive) and waits up to 250 ms for the ones the window lets through. So a fetch
 *    returns every message that was ready, up to `max` (deterministic batches, as Redis);
 * 4. take up to `max` from the buffer, queues in rotating order, FIFO within a queue
 *    (RabbitMQ already ordered each queue, by priority when it has `x-max-priority`);
 * 5. nothing buffered: wait for a push, the timeout, an abort, or the channel closing.
 *
 * When the channel or connection closes, RabbitMQ requeues every unacknowledged message
 * (buffered or held): the buffer is dropped and deliveries of the old channel settle as
 * no-ops. Measured against `basic.get` polling in `docs/amqp.md`.
 *
 * @module
 */

import type { AmqpChannel, AmqpSession } from "./connection.ts";
import type { AmqpMessage } from "./codec.ts";

/** How long a fetch waits for deliveries a wider window released (counted as ready). */
const LINGER_MS = 250;

/** The consume channel of one connection, while it is open. */
export interface ConsumeChannel {
  /** The amqplib channel. */
  readonly ch: AmqpChannel;
  /** False once it closed (its deliveries can no longer be settled). */
  open: boolean;
}

/** What the prefetcher hands out; the broker wraps it into a `Delivery`. */
export interface Pushed {
  /** The AMQP message. */
  msg: AmqpMessage;
  /** The queue it was consumed from. */
  queue: string;
  /** The channel it arrived on (settle it there). */
  channel: ConsumeChannel;
}

/** Options of {@linkcode Prefetcher.fetch}. */
export interface PrefetchOptions {
  /** At most this many. */
  max: number;
  /** `performance.now()` time after which an empty fetch returns. */
  deadline: number;
  /** Stops the wait. */
  signal?: AbortSignal;
}

/**
 * Consumers, prefetch window and buffer for `fetch` (used by `AmqpBroker`).
 *
 * @example
 * ```ts ignore
 * const prefetch = new Prefetcher(session, (queue) => declare(queue));
 * const pushed = await prefetch.fetch(["celery"], { max: 4, deadline: performance.now() + 1000 });
 * for (const p of pushed) { p.channel.ch.ack(p.msg); prefetch.settled(p.channel); }
 * ```
 */
export class Prefetcher {
  #session: AmqpSession;
  #declare: (queue: string) => Promise<void>;
  #state?: ConsumeChannel;
  #generation = -1;
  #consumers = new Map<string, string>();
  #buffer = new Map<string, AmqpMessage[]>();
  #held = 0;
  #window = 0;
  #rotation = 0;
  #waiters = new Set<() => void>();
  #lock: Promise<unknown> = Promise.resolve();

  /**
   * @param session The connection.
   * @param declare Declares a queue before its consumer starts.
   */
  constructor(session: AmqpSession, declare: (queue: string) => Promise<void>) {
    this.#session = session;
    this.#declare = declare;
  }

  /** Messages handed out on the current channel and not settled yet. */
  get held(): number {
    return this.#held;
  }

  /** Messages pushed by RabbitMQ, not handed out yet. */
  get buffered(): number {
    let n = 0;
    for (const b of this.#buffer.values()) n += b.length;
    return n;
  }

  /** A delivery of the current channel was settled: one less held. */
  settled(channel: ConsumeChannel): void {
    if (channel === this.#state && channel.open && this.#held > 0) this.#held--;
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  async #channel(): Promise<ConsumeChannel> {
    if (this.#state?.open && this.#generation === this.#session.generation) return this.#state;
    const generation = this.#session.generation;
    const ch = await this.#session.channel("consume");
    if (this.#state && this.#state.ch === ch) return this.#state;
    const state: ConsumeChannel = { ch, open: true };
    ch.on("close", () => {
      state.open = false;
      if (this.#state === state) this.#reset();
      this.#wake();
    });
    this.#reset();
    this.#state = state;
    this.#generation = generation;
    return state;
  }

  #reset(): void {
    this.#state = undefined;
    this.#consumers.clear();
    this.#buffer.clear();
    this.#held = 0;
    this.#window = 0;
  }

  #onMessage(queue: string, state: ConsumeChannel) {
    return (msg: AmqpMessage | null) => {
      if (state !== this.#state) return;
      if (msg === null) {
        // Cancelled by RabbitMQ (the queue was deleted): consume again on the next fetch.
        this.#consumers.delete(queue);
        return;
      }
      let buffer = this.#buffer.get(queue);
      if (!buffer) this.#buffer.set(queue, buffer = []);
      buffer.push(msg);
      this.#wake();
    };
  }

  /** Serializes fetches (one consumer state, one window). */
  fetch(queues: readonly string[], options: PrefetchOptions): Promise<Pushed[]> {
    const run = this.#lock.then(() => this.#fetch(queues, options));
    this.#lock = run.catch(() => {});
    return run;
  }

  async #fetch(queues: readonly string[], options: PrefetchOptions): Promise<Pushed[]> {
    const state = await this.#channel();
    const { ch } = state;
    // Consumers of queues no longer asked for stop; their buffered messages go back.
    for (const [queue, tag] of [...this.#consumers]) {
      if (queues.includes(queue)) continue;
      this.#consumers.delete(queue);
      await ch.cancel(tag);
      for (const msg of this.#buffer.get(queue) ?? []) ch.reject(msg, true);
      this.#buffer.delete(queue);
    }
    const existing = queues.filter((q) => this.#consumers.has(q));
    // Deliveries the current window may already have released (on their way to us).
    const inFlight = Math.max(0, this.#window - this.#held - this.buffered);
    const want = this.#held + options.max;
    const widened = want > this.#window;
    if (want !== this.#window) {
      await ch.qos(want, true);
      this.#window = want;
    }
    let started = false;
    for (const queue of queues) {
      if (this.#consumers.has(queue)) continue;
      await this.#declare(queue);
      const { consumerTag } = await ch.consume(queue, this.#onMessage(queue, state), {
        noAck: false,
      });
      this.#consumers.set(queue, consumerTag);
      started = true;
    }
    // A new consumer's first deliveries are written before the reply to the next method
    // on the channel: one more round trip and they are all here.
    if (started || widened) await ch.qos(this.#window, true);
    // A wider window releases deliveries asynchronously (the queue handles the "resume"
    // in its own time): count what is ready, then wait briefly for those to land.
    let target = 0;
    if (widened && existing.length) {
      target = Math.min(options.max, this.#count(queues) + inFlight + await this.#ready(existing));
    }
    const linger = Math.min(options.deadline, performance.now() + LINGER_MS);
    while (
      this.#count(queues) < target && state.open && !options.signal?.aborted &&
      performance.now() < linger
    ) {
      await this.#wait(linger, options.signal);
    }
    let taken = this.#take(queues, options.max, state);
    while (!taken.length && state.open && !options.signal?.aborted) {
      if (performance.now() >= options.deadline) break;
      await this.#wait(options.deadline, options.signal);
      if (options.signal?.aborted) break;
      taken = this.#take(queues, options.max, state);
    }
    return taken;
  }

  /** Buffered messages of these queues. */
  #count(queues: readonly string[]): number {
    let n = 0;
    for (const q of queues) n += this.#buffer.get(q)?.length ?? 0;
    return n;
  }

  /** Ready (not yet delivered) messages of the queues (`queue.declare` passive). */
  async #ready(queues: readonly string[]): Promise<number> {
    let n = 0;
    for (const q of queues) {
      try {
        const ch = await this.#session.channel("declare");
        n += (await ch.checkQueue(q)).messageCount as number;
      } catch {
        // Deleted meanwhile: its consumer was cancelled.
      }
    }
    return n;
  }

  /** Waits for a push, the deadline or an abort. */
  #wait(deadline: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
      signal?.addEventListener("abort", done, { once: true });
      this.#waiters.add(done);
    });
  }

  #take(queues: readonly string[], max: number, state: ConsumeChannel): Pushed[] {
    if (!state.open || state !== this.#state) return [];
    const out: Pushed[] = [];
    const r = this.#rotation % queues.length;
    for (const queue of [...queues.slice(r), ...queues.slice(0, r)]) {
      const buffer = this.#buffer.get(queue);
      while (buffer?.length && out.length < max) {
        out.push({ msg: buffer.shift()!, queue, channel: state });
      }
      if (out.length >= max) break;
    }
    if (out.length) this.#rotation++;
    this.#held += out.length;
    return out;
  }

  /**
   * Wakes waiting fetches and closes the consume channel gracefully: RabbitMQ then applies
   * the acks already sent before it requeues the rest. (Dropping the connection instead lets
   * the queue see the channel go down before a pending ack, and requeue an acked message.)
   */
  async close(): Promise<void> {
    this.#wake();
    const state = this.#state;
    if (!state?.open) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      state.ch.close().catch(() => {}),
      new Promise((resolve) => timer = setTimeout(resolve, 2000)),
    ]);
    clearTimeout(timer);
  }

  /** Wakes waiting fetches (they return what they have, usually nothing). */
  wake(): void {
    this.#wake();
  }
}
