"""When a loop that lost Redis should say so: once when it is lost, once when it is back.

Every loop that talks to Redis (a worker, and the supervisor's scheduler, reaper, lease,
watch and prune ticks) keeps one :class:`Outage` and asks it after each attempt whether to
log. Pure: the caller passes the clock, so the rule is tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

REMIND_EVERY_MS = 10_000


@dataclass(frozen=True, slots=True)
class Notice:
    """A line worth logging: the first failure of an outage, or a reminder.

    ``down_ms`` is how long Redis has been away (0 on the first failure); ``failures`` counts
    the failed attempts since the previous line, this one included.
    """

    down_ms: int
    failures: int

    @property
    def first(self) -> bool:
        """True for the first failure of an outage."""
        return self.down_ms == 0 and self.failures == 1


class Outage:
    """One loop's view of Redis: up, or down since when."""

    __slots__ = ("_failures", "_last_line_ms", "down_since_ms", "remind_every_ms")

    def __init__(self, remind_every_ms: int = REMIND_EVERY_MS) -> None:
        self.remind_every_ms = remind_every_ms
        self.down_since_ms: int | None = None
        self._last_line_ms = 0
        self._failures = 0

    @property
    def down(self) -> bool:
        """True between a failure and the next success."""
        return self.down_since_ms is not None

    def failed(self, now_ms: int) -> Notice | None:
        """Count a failed attempt; return a :class:`Notice` if it deserves a line, else None."""
        self._failures += 1
        if self.down_since_ms is None:
            self.down_since_ms = self._last_line_ms = now_ms
            self._failures = 0
            return Notice(0, 1)
        if now_ms - self._last_line_ms < self.remind_every_ms:
            return None
        notice = Notice(now_ms - self.down_since_ms, self._failures)
        self._last_line_ms = now_ms
        self._failures = 0
        return notice

    def succeeded(self, now_ms: int) -> int | None:
        """Count a successful attempt; return how long Redis was away (ms) if it ends an outage."""
        if self.down_since_ms is None:
            return None
        down_ms = now_ms - self.down_since_ms
        self.down_since_ms = None
        self._failures = 0
        return down_ms
