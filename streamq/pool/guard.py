"""How the supervisor's loops meet Redis failures: one rule, one place.

Each loop (start, scheduler, reaper, lease, watch, prune, requeue, settings) keeps its own
:class:`~streamq.outage.Outage`, so it logs when it loses Redis, a reminder at most every
10 s, and ``redis.reconnected`` when it is back; a refusal (credentials, permission, not
Redis) goes to the supervisor, which stops the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from streamq.clock import monotonic_ms
from streamq.errors import ConfigError, RedisSetupError, StreamqError
from streamq.outage import Outage

T = TypeVar("T")


class Guard:
    """Runs the supervisor's ticks, turning Redis failures into few, clear lines."""

    def __init__(self, log: Any, on_refused: Callable[[RedisSetupError], None]) -> None:
        self.log = log  # bound with group and pid
        self.on_refused = on_refused
        self.outages: dict[str, Outage] = {}  # loop name -> its view of Redis

    def __call__(
        self,
        loop: str,
        fn: Callable[[], T],
        failed: T,
        event: str = "supervisor.redis_failed",
        fatal: bool = True,
        **fields: object,
    ) -> T:
        """Run one tick of ``loop``; on a Redis failure log ``event`` when the loop loses Redis
        and at most every 10 s after (see :mod:`streamq.outage`), and ``redis.reconnected``
        once it is back.

        Args:
            loop: the loop's name, logged as ``loop``.
            fn: the tick.
            failed: what to return if the tick failed.
            event: the failure line's event name.
            fatal: a :class:`RedisSetupError` stops the pool (else it is logged like the rest).
            fields: more fields for the failure line.

        Returns:
            What ``fn`` returned, or ``failed``.

        Raises:
            RedisSetupError: from the start-up loop (``fatal=False``, ``loop="start"``).
        """
        tracker = self.outages.setdefault(loop, Outage())
        try:
            value = fn()
        except RedisSetupError as e:
            if loop == "start":
                raise
            if fatal:
                self.on_refused(e)
                return failed
            self.log.warning(event, loop=loop, error_message=str(e))
            return failed
        except ConfigError:
            raise
        except StreamqError as e:
            notice = tracker.failed(monotonic_ms())
            if notice is not None:
                self.log.warning(
                    event,
                    loop=loop,
                    error_message=str(e),
                    down_ms=notice.down_ms,
                    failures=notice.failures,
                    **fields,
                )
            return failed
        down_ms = tracker.succeeded(monotonic_ms())
        if down_ms is not None:
            self.log.info("redis.reconnected", loop=loop, down_ms=down_ms)
        return value
