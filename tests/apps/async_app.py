"""Async (and a few sync) tasks for the asyncio worker's pool tests; see tests/apps/sample.py.

The queue comes from ``$SQ_TEST_QUEUE``; run counts go to the hash ``sqtest:{queue}:runs``.
Having ``async def`` tasks makes every worker process of this app an asyncio worker.
"""

from __future__ import annotations

import asyncio
import os
import time

import streamq
from streamq.settings import AppSettings, QueueSettings

QUEUE = os.environ.get("SQ_TEST_QUEUE", "default")

# Never the App default (the shared server on the default port).
app = streamq.App(
    os.environ.get("STREAMQ_REDIS_URL", "redis://127.0.0.1:1/0"),
    settings=AppSettings(
        default_queue=QUEUE,
        default_queue_settings=QueueSettings(
            visibility_timeout_s=float(os.environ.get("SQ_TEST_VT_S", "30"))
        ),
    ),
)
RUNS = f"sqtest:{QUEUE}:runs"


def _count(tag: str) -> int:
    return int(app.client().hincrby(RUNS, tag, 1))


@app.task
async def nap(tag: str, seconds: float) -> str:
    """Count the start, sleep without blocking the loop, count the end."""
    _count(tag + ":started")
    await asyncio.sleep(seconds)
    _count(tag)
    return tag


@app.task(timeout_s=0.5, max_retries=0)
async def hog(tag: str, seconds: float) -> None:
    """Block the event loop with sync code past the time limit (the supervisor's backstop)."""
    _count(tag + ":started")
    time.sleep(seconds)
    _count(tag)


@app.task
def crunch(tag: str) -> int:
    """A sync task in the same queue: it runs on the process's sync thread."""
    _count(tag)
    return os.getpid()
