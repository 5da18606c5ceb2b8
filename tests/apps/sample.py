"""Tasks that the worker-process tests run: each records what happened in Redis.

The queue name comes from ``$SQ_TEST_QUEUE`` so every test has its own keys; run counts go
to the hash ``sqtest:{queue}:runs`` (field: a tag the test chose), read back by the test.
"""

from __future__ import annotations

import contextlib
import os
import time

import streamq
from streamq.settings import AppSettings, QueueSettings

QUEUE = os.environ.get("SQ_TEST_QUEUE", "default")
VT_S = float(os.environ.get("SQ_TEST_VT_S", "30"))
MAX_DELIVERIES = int(os.environ.get("SQ_TEST_MAX_DELIVERIES", "5"))

# Never the App default (the shared server on the default port): a port nothing answers on
# unless the test passes its own server's URL.
app = streamq.App(
    os.environ.get("STREAMQ_REDIS_URL", "redis://127.0.0.1:1/0"),
    settings=AppSettings(
        default_queue=QUEUE,
        default_queue_settings=QueueSettings(
            visibility_timeout_s=VT_S,
            max_deliveries=MAX_DELIVERIES,
            prune_consumers_after_s=float(os.environ.get("SQ_TEST_PRUNE_S", "600")),
        ),
    ),
)
RUNS = f"sqtest:{QUEUE}:runs"


def _count(tag: str) -> int:
    return int(app.client().hincrby(RUNS, tag, 1))


@app.task
def record(tag: str) -> None:
    """Count one run of ``tag``."""
    _count(tag)


@app.task
def sleep_then_record(tag: str, seconds: float) -> None:
    """Count a run after working for ``seconds`` (counted at the start and at the end)."""
    app.client().hincrby(RUNS, tag + ":started", 1)
    time.sleep(seconds)
    _count(tag)


@app.task(max_retries=5, backoff_base_s=0.01, backoff_cap_s=0.05)
def fail_times(tag: str, failures: int) -> None:
    """Fail the first ``failures`` runs, then succeed."""
    if _count(tag) <= failures:
        raise RuntimeError(f"planned failure of {tag}")


@app.task(max_retries=2, backoff_base_s=0.01, backoff_cap_s=0.05)
def always_fail(tag: str) -> None:
    """Fail every time."""
    _count(tag)
    raise ValueError(f"{tag} always fails")


@app.task
def kill_worker(tag: str) -> None:
    """Kill the process running it, as an OOM kill or a segfault would."""
    _count(tag)
    os._exit(137)


@app.task(timeout_s=0.5, max_retries=1, backoff_base_s=0, backoff_cap_s=0)
def overrun(tag: str, seconds: float) -> None:
    """Run past its 0.5 s time limit."""
    _count(tag)
    time.sleep(seconds)


@app.task(timeout_s=0.5, max_retries=0)
def stubborn(tag: str, seconds: float) -> None:
    """Ignore Cancelled and TimeLimitExceeded (bad practice) until ``seconds`` pass."""
    _count(tag)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(BaseException):
            time.sleep(0.05)


@app.task
def ordered(tag: str, seconds: float) -> None:
    """Append ``tag`` to the run order list, then work for ``seconds``."""
    app.client().rpush(f"sqtest:{QUEUE}:order", tag)
    time.sleep(seconds)


@app.task
def double(x: int) -> int:
    """Return a value for result tests."""
    return x * 2
