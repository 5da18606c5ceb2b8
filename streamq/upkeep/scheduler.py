"""Promotes due jobs from each queue's delayed set to its stream; safe in many processes."""

from __future__ import annotations

import os

import structlog

from streamq.clock import monotonic_ms
from streamq.errors import RedisCommandError, StreamqConnectionError
from streamq.keys import QueueKeys
from streamq.outage import Outage
from streamq.store import Store

log = structlog.get_logger("streamq.scheduler")


class Scheduler:
    """Promotion of delayed jobs, one :meth:`run_once` at a time.

    Each call returns when it next has work, so a caller can sleep until the earliest due
    time instead of polling. ``max_sleep_ms`` bounds that sleep, so a job added with an
    earlier due time by another process is picked up at most that late.
    """

    def __init__(
        self, store: Store, queues: list[QueueKeys], batch: int = 500, max_sleep_ms: int = 100
    ) -> None:
        self.store = store
        self.queues = queues
        self.batch = batch
        self.max_sleep_ms = max_sleep_ms
        self._outage = Outage()

    def run_once(self, now_ms: int) -> int:
        """Promote what is due at ``now_ms``; return the time (ms) to call again."""
        wake = now_ms + self.max_sleep_ms
        for keys in self.queues:
            moved, next_due = self.store.promote_due(keys, now_ms, self.batch)
            if moved:
                log.debug("scheduler.promoted", queue=keys.queue, count=moved)
            if moved >= self.batch:
                wake = now_ms  # more are due than one step moves
            elif next_due >= 0:
                wake = min(wake, next_due)
        return wake

    def run(self, now_ms: int) -> int:
        """:meth:`run_once`, logging instead of raising when Redis is away (one line when it
        is lost, a reminder at most every 10 s, ``redis.reconnected`` when it is back).

        Raises:
            RedisSetupError: Redis refused the credentials or a permission, or is not Redis.
        """
        try:
            wake = self.run_once(now_ms)
        except (StreamqConnectionError, RedisCommandError) as e:
            notice = self._outage.failed(monotonic_ms())
            if notice is not None:
                log.warning(
                    "scheduler.failed",
                    pid=os.getpid(),
                    error_message=str(e),
                    down_ms=notice.down_ms,
                    failures=notice.failures,
                )
            return now_ms + 1000
        down_ms = self._outage.succeeded(monotonic_ms())
        if down_ms is not None:
            log.info("redis.reconnected", loop="scheduler", pid=os.getpid(), down_ms=down_ms)
        return wake
