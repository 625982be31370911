"""The Python Celery 5.2 side of `deno task bench --vs celery` (bench/celery.ts).

The same tasks as bench/tasks.ts, by name:

  bench.noop()      returns None (its result is stored unless BENCH_RESULTS=off)
  bench.mark()      returns time.time() when it ran; its result is always stored (the drain
                    cases queue one before and one after the no-op tasks and time from the
                    first mark's start to the last mark's date_done)
  bench.sleep(ms)   sleeps ms milliseconds, returns time.time() when it started

Configured from the environment:

  CELERY_BROKER_URL      broker URL (redis://… or amqp://…)
  CELERY_RESULT_BACKEND  result backend URL (redis://…/1)
  BENCH_RESULTS          "off": task_ignore_result (bench.mark still stores its result).
                         The drains' messages are queued by celeriac's producer with each
                         message's ignore_result header set to match (Celery 5.2's worker
                         honours the header too).

Everything else is Celery 5.2's default (JSON, protocol 2, early ack, prefetch multiplier 4).
The per-task INFO lines ("Received task", "Task … succeeded") are silenced so the worker can
run at `-l INFO` (the test helper waits for the INFO line "<name> ready.") without paying
for two log lines per task; celeriac's bench workers log at warning or critical too.

Client helpers, run by bench/celery.ts through `python3 -c`: enqueue(), latency().
"""

import json
import logging
import os
import time

from celery import Celery
from celery.signals import after_setup_logger

app = Celery(
    "celery_bench",
    broker=os.environ.get("CELERY_BROKER_URL") or None,
    backend=os.environ.get("CELERY_RESULT_BACKEND") or None,
)
if os.environ.get("BENCH_RESULTS") == "off":
    app.conf.task_ignore_result = True

QUIET = ("celery.app.trace", "celery.worker.strategy")


def _quiet():
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


_quiet()


@after_setup_logger.connect
def _quiet_after_setup(**_kwargs):
    _quiet()


@app.task(name="bench.noop")
def noop():
    """Does nothing."""
    return None


@app.task(name="bench.mark", ignore_result=False)
def mark():
    """Returns when it ran (unix seconds); always stores its result."""
    return time.time()


@app.task(name="bench.sleep")
def sleep(ms):
    """Sleeps ms milliseconds; returns when it started (unix seconds)."""
    started = time.time()
    time.sleep(ms / 1000)
    return started


def enqueue(n, queue):
    """Times n bench.noop sends to queue, one after the other (Celery's client is
    synchronous), as fire-and-forget (ignore_result=True: no SUBSCRIBE to each result
    channel, like celeriac's enqueue case, which runs without a result backend).

    Prints one JSON line: {"seconds": <time of the n sends>, "cpu": <CPU seconds>}.
    """
    with app.producer_or_acquire() as producer:
        # Connect and declare outside the measurement.
        app.send_task("bench.noop", queue=queue, producer=producer, ignore_result=True)
        started = time.perf_counter()
        cpu = time.process_time()
        for _ in range(n):
            app.send_task("bench.noop", queue=queue, producer=producer, ignore_result=True)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
    print(json.dumps({"seconds": seconds, "cpu": cpu}))


def latency(n, warmup, queue):
    """Times n sequential noop.apply_async(queue=…).get() round trips after warmup ones.

    Prints one JSON line: {"seconds": total, "cpu": <client CPU seconds>, "samples": [ms, …]}.
    """
    for _ in range(warmup):
        noop.apply_async(queue=queue).get(timeout=10)
    samples = []
    started = time.perf_counter()
    cpu = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        noop.apply_async(queue=queue).get(timeout=10)
        samples.append((time.perf_counter() - t0) * 1000)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "samples": samples}))
