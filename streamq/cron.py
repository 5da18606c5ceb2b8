"""When a periodic schedule fires: cron expressions in a time zone, or fixed intervals.

Pure time math with the clock passed in (every function takes epoch milliseconds), so DST
transitions are tested with any date. Cron expressions are parsed and iterated by cronsim,
which follows Debian cron's DST rules: a daily job whose local time is skipped when clocks
spring forward runs once, at the first valid time after the gap (02:30 becomes 03:00); a
daily job whose local time occurs twice when clocks fall back runs once, at the first
occurrence. Jobs that run hourly or more often fire at every real occurrence.

Intervals (``every_ms``) fall on multiples of the interval since the Unix epoch, so every
process computes the same ticks without coordination (``every_s=60`` fires at each UTC
minute, ``every_s=3600`` at each UTC hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from streamq.errors import ConfigError

MISSED_POLICIES = ("skip", "once", "all")
# missed="skip": the latest due tick still fires when it is at most this late, so a pool that
# wakes a little late (or restarts within a minute) does not drop a daily job.
SKIP_GRACE_MS = 60_000
# missed="all": at most this many overdue ticks are caught up; older ones are skipped.
MAX_CATCH_UP = 100
_EPOCH = datetime(2000, 1, 1)  # any valid date: only to make cronsim parse an expression


@dataclass(frozen=True, slots=True)
class Timing:
    """A cron expression in a time zone, or a fixed interval: exactly one of the two."""

    cron: str | None = None
    every_ms: int | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_ms is None):
            raise ConfigError("give exactly one of cron= or every_s=")
        zone = check_tz(self.tz)
        if self.cron is not None:
            check_cron(self.cron, zone)
        elif self.every_ms is not None and self.every_ms < 100:
            raise ConfigError(f"every_s must be at least 0.1, got {self.every_ms / 1000}")

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms``, or -1 if the expression never fires."""
        if self.every_ms is not None:
            return (after_ms // self.every_ms + 1) * self.every_ms
        assert self.cron is not None
        try:
            return _ms(next(CronSim(self.cron, _local(after_ms, self.tz))))
        except StopIteration:  # e.g. Feb 30: cronsim gives up after 50 years
            return -1

    def latest_at_or_before(self, at_ms: int) -> int:
        """The last tick at or before ``at_ms``, or -1 if there is none."""
        if self.every_ms is not None:
            return at_ms // self.every_ms * self.every_ms
        assert self.cron is not None
        # cronsim's reverse iteration from a time with a fraction of a second includes that
        # whole second, and from a whole second excludes it: +1 ms makes "at or before".
        try:
            return _ms(next(CronSim(self.cron, _local(at_ms + 1, self.tz), reverse=True)))
        except StopIteration:
            return -1


@dataclass(frozen=True, slots=True)
class Plan:
    """What one step does with a schedule whose stored next tick ``due_ms`` has come.

    ``fire_ms`` is the tick to enqueue (-1: none), ``skipped`` how many due ticks are passed
    over (the first is ``due_ms``), ``next_ms`` the new next tick (-1: never again).
    """

    fire_ms: int
    skipped: int
    next_ms: int


def plan(timing: Timing, missed: str, due_ms: int, now_ms: int) -> Plan:
    """Decide which of the ticks due by ``now_ms`` fire, by the ``missed`` policy.

    One tick due (the normal case): it fires whatever its lateness, except under ``skip``
    when it is over :data:`SKIP_GRACE_MS` late. Several due (all pools were down, or Redis
    was): ``skip`` fires only the latest, and only within the grace; ``once`` fires the
    latest (one catch-up run); ``all`` fires the oldest and leaves the next one due, so the
    caller fires them in order, at most :data:`MAX_CATCH_UP` behind.
    """
    latest = timing.latest_at_or_before(now_ms)
    if latest < due_ms:  # not due yet, or a stored tick off this timing's grid: re-anchor
        return Plan(-1, 0, timing.next_after(due_ms - 1))
    if missed == "all":
        oldest = _nth_latest(timing, now_ms, MAX_CATCH_UP)
        if oldest > due_ms:
            return Plan(oldest, count_between(timing, due_ms, oldest), timing.next_after(oldest))
        return Plan(due_ms, 0, timing.next_after(due_ms))
    skipped = 0 if latest == due_ms else count_between(timing, due_ms, latest)
    nxt = timing.next_after(latest)
    if missed == "skip" and now_ms - latest > SKIP_GRACE_MS:
        return Plan(-1, skipped + 1, nxt)
    return Plan(latest, skipped, nxt)


def count_between(timing: Timing, first_ms: int, end_ms: int, limit: int = 100_000) -> int:
    """How many ticks fall in ``[first_ms, end_ms)`` (counted up to ``limit``)."""
    if timing.every_ms is not None:
        step = timing.every_ms
        return min(limit, max(0, _ceil_div(end_ms, step) - _ceil_div(first_ms, step)))
    n, t = 0, timing.latest_at_or_before(first_ms)
    t = t if t == first_ms else timing.next_after(first_ms)
    while 0 <= t < end_ms and n < limit:
        n, t = n + 1, timing.next_after(t)
    return n


def _nth_latest(timing: Timing, now_ms: int, n: int) -> int:
    """The ``n``-th latest tick at or before ``now_ms`` (1 = the latest)."""
    if timing.every_ms is not None:
        return (now_ms // timing.every_ms - (n - 1)) * timing.every_ms
    t = timing.latest_at_or_before(now_ms)
    for _ in range(n - 1):
        if t < 0:
            break
        t = timing.latest_at_or_before(t - 1)
    return t


def check_tz(tz: str) -> ZoneInfo:
    """The zone named ``tz`` (IANA name, e.g. ``Europe/Berlin``); ConfigError if unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
        raise ConfigError(f"unknown time zone {tz!r}: use an IANA name like 'Europe/Berlin'") from e


def check_cron(expr: str, zone: ZoneInfo | None = None) -> None:
    """Refuse an expression cronsim cannot read: 5 fields, or 6 with seconds first."""
    fields = len(expr.split())
    if fields not in (5, 6):
        raise ConfigError(f"cron {expr!r} has {fields} fields: use 5, or 6 with seconds first")
    try:
        CronSim(expr, _EPOCH.replace(tzinfo=zone))
    except CronSimError as e:
        raise ConfigError(f"invalid cron {expr!r}: {e}") from e


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _local(ms: int, tz: str) -> datetime:
    # replace() keeps the fold bit fromtimestamp() set; adding a timedelta would do wall-clock
    # arithmetic and could land on the wrong side of a DST fold.
    return datetime.fromtimestamp(ms // 1000, ZoneInfo(tz)).replace(microsecond=ms % 1000 * 1000)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000


def iso(ms: int, tz: str) -> str:
    """``ms`` as ISO 8601 local time in ``tz`` with its UTC offset, for logs and the CLI."""
    return _local(ms, tz).isoformat(timespec="milliseconds")
