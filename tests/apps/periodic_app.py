"""An app with periodic schedules for the pool tests, configured by environment variables.

``SQ_TEST_QUEUE`` names the queue; each run of ``tick`` counts its job id (schedule id and
tick time) in ``sqtest:{queue}:ticks`` on ``SQ_TEST_LEDGER_URL`` (default: the app's Redis),
so a test can kill the app's Redis and still read every run.
"""

from __future__ import annotations

import os
import time

import redis

import streamq
from streamq.settings import AppSettings, QueueSettings

QUEUE = os.environ.get("SQ_TEST_QUEUE", "default")
URL = os.environ.get("STREAMQ_REDIS_URL", "redis://127.0.0.1:1/0")
TICKS = f"sqtest:{QUEUE}:ticks"
SPANS = f"sqtest:{QUEUE}:spans"

app = streamq.App(
    URL,
    settings=AppSettings(
        default_queue=QUEUE,
        socket_timeout_s=2.0,
        default_queue_settings=QueueSettings(visibility_timeout_s=3.0),
    ),
)
_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    """Where runs are counted (a connection per process, opened on first use)."""
    global _ledger  # noqa: PLW0603 - one client per worker process
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ.get("SQ_TEST_LEDGER_URL", URL))
    return _ledger


@app.periodic(every_s=1, missed=os.environ.get("SQ_TEST_MISSED", "all"), schedule_id="tick")
def tick() -> None:
    """Count one run of this tick's job."""
    ledger().hincrby(TICKS, streamq.current_job().id, 1)


if os.environ.get("SQ_TEST_SLOW"):

    @app.periodic(every_s=1, overlap="skip", schedule_id="slow")
    def slow() -> None:
        """Work 2.5 s, recording when: runs of an overlap="skip" schedule never overlap."""
        start = time.time()
        time.sleep(2.5)
        ledger().rpush(SPANS, f"{start} {time.time()}")


if os.environ.get("SQ_TEST_FOREIGN"):
    app.schedule("not_in_this_app", every_s=1, schedule_id="foreign")
