"""The Python side of the interop tests: the same tasks as examples/interop/tasks.ts.

Configured from Celery's own environment variables (Celery reads them too, and they win
over the values below):

  CELERY_BROKER_URL      broker URL, e.g. redis://127.0.0.1:6379/0
                         (unset: Celery's default, amqp://guest:guest@localhost:5672//)
  CELERY_RESULT_BACKEND  result backend URL, e.g. redis://127.0.0.1:6379/1
                         (unset: Celery's default, no result backend)

Everything else is Celery 5.2's default (JSON, protocol 2, queue "celery", early ack).

Worker:  python3 -m celery -A pytasks worker -P threads -c 2 -l INFO -n py@test
Client:  from pytasks import app; app.send_task("tasks.add", (2, 3)).get(timeout=5)
"""

import os
import time

from celery import Celery

app = Celery(
    "pytasks",
    broker=os.environ.get("CELERY_BROKER_URL") or None,
    backend=os.environ.get("CELERY_RESULT_BACKEND") or None,
)

# Crash-recovery tests shorten kombu's Redis visibility timeout (default 3600 s).
if os.environ.get("PYTASKS_VISIBILITY_TIMEOUT"):
    app.conf.broker_transport_options = {
        "visibility_timeout": float(os.environ["PYTASKS_VISIBILITY_TIMEOUT"]),
    }


@app.task(name="tasks.add")
def add(x, y):
    """Returns x + y."""
    return x + y


@app.task(name="tasks.fail")
def fail(message):
    """Raises ValueError(message)."""
    raise ValueError(message)


@app.task(name="tasks.echo")
def echo(**kwargs):
    """Returns its keyword arguments."""
    return kwargs


@app.task(name="tasks.sleep")
def sleep(seconds):
    """Waits, then returns seconds."""
    time.sleep(seconds)
    return seconds


@app.task(name="tasks.xsum")
def xsum(values):
    """Returns the sum of a list (a chord body)."""
    return sum(values)
