"""Tasks, hooks and middleware that the observability tests run in real worker pools.

Like ``tests.apps.sample``: the queue comes from ``$SQ_TEST_QUEUE`` and what happened is
recorded in Redis under ``sqtest:{queue}:...`` for the test to read back.
``$SQ_FAIL_START_HOOK=1`` makes the start hook raise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

import structlog

import streamq
from streamq.settings import AppSettings, QueueSettings

QUEUE = os.environ.get("SQ_TEST_QUEUE", "default")
PREFIX = f"sqtest:{QUEUE}"

app = streamq.App(
    os.environ.get("STREAMQ_REDIS_URL", "redis://127.0.0.1:1/0"),
    settings=AppSettings(
        default_queue=QUEUE,
        default_queue_settings=QueueSettings(visibility_timeout_s=30, max_deliveries=5),
    ),
)

# Set by the start hook in the worker process: a task that sees it knows the hook ran there.
STARTED_IN: dict[str, int] = {}


def _r() -> Any:
    return app.client()


@app.on_worker_start
def opened() -> None:
    """Record the process it ran in; raise if the test asks for a failing hook."""
    if os.environ.get("SQ_FAIL_START_HOOK") == "1":
        raise RuntimeError("database pool could not open")
    STARTED_IN["pid"] = os.getpid()
    _r().rpush(f"{PREFIX}:hooks", f"start:{os.getpid()}")


@app.on_worker_stop
async def closed() -> None:
    """An async stop hook: record the process it ran in."""
    _r().rpush(f"{PREFIX}:hooks", f"stop:{os.getpid()}")


class Recorder:
    """Sync middleware: records each call as a list entry."""

    def before_job(self, job: streamq.Envelope) -> None:
        _r().rpush(f"{PREFIX}:mw", f"sync.before:{job.task}:{job.attempt}")

    def after_job(self, job: streamq.Envelope, outcome: streamq.Outcome) -> None:
        err = type(outcome.error).__name__ if outcome.error else ""
        _r().rpush(f"{PREFIX}:mw", f"sync.after:{job.task}:{outcome.state}:{err}")


class AsyncRecorder:
    """Async middleware (run on the worker's private event loop)."""

    async def before_job(self, job: streamq.Envelope) -> None:
        _r().rpush(f"{PREFIX}:mw", f"async.before:{job.task}:{job.attempt}")

    async def after_job(self, job: streamq.Envelope, outcome: streamq.Outcome) -> None:
        _r().rpush(f"{PREFIX}:mw", f"async.after:{job.task}:{outcome.state}")


if os.environ.get("SQ_MIDDLEWARE") == "1":
    app.add_middleware(Recorder())
    app.add_middleware(AsyncRecorder())


@app.task
def hooked() -> int:
    """Return the pid the start hook ran in (0 if it did not run in this process)."""
    return STARTED_IN.get("pid", 0) if STARTED_IN.get("pid") == os.getpid() else 0


@app.task
def ok(seconds: float = 0.0) -> str:
    """Succeed after ``seconds``."""
    time.sleep(seconds)
    return "ok"


@app.task(max_retries=1, backoff_base_s=0.01, backoff_cap_s=0.01)
def flaky(tag: str) -> None:
    """Fail the first run of ``tag``, then succeed."""
    if _r().hincrby(f"{PREFIX}:runs", tag, 1) == 1:
        raise RuntimeError(f"first run of {tag}")


@app.task(max_retries=0)
def doomed() -> None:
    """Fail with no retry left: dead at once."""
    raise ValueError("doomed")


@app.task
def cancel_me() -> None:
    """End cancelled (as job.cancel() of a running job does)."""
    raise streamq.Cancelled("cancelled by the task")


@app.task
def die() -> None:
    """Kill its own process (an OOM kill)."""
    os._exit(137)


@app.task
def chatty(word: str) -> None:
    """Log through structlog and stdlib logging, and print (stray stdout)."""
    structlog.get_logger("shop").info("shop.structlog_line", word=word)
    logging.getLogger("shop").warning("stdlib line %s", word)
    print(f"printed {word}")
    sys.stdout.write("partial ")
    print("line")


@app.task
def redis_error() -> None:
    """Make one store verb fail with a refused command (WRONGTYPE), counted by metrics."""
    keys = streamq.QueueKeys(f"{QUEUE}-wrongtype")
    _r().set(keys.delayed_for(0), "not a sorted set")
    with contextlib.suppress(streamq.RedisCommandError):
        app.store.busy(keys, 0)
