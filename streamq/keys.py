"""Every Redis key name streamq uses, and the only place that spells them.

All keys of one queue share the hash tag ``{queue}`` so that a Lua script touching a queue's
stream, delayed set and dead-letter stream runs on one Redis Cluster slot. A queue split over
several shards later gets one tag per shard (``{queue#2}``) from the same builder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from streamq.errors import ConfigError
from streamq.job import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL

PRIORITY_LEVELS = (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW)

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
PREFIX = "streamq"
MINUTE_MS = 60_000
# How long a per-minute throughput hash lives: the dashboard's day chart plus a day of slack.
STATS_TTL_MS = 48 * 3600 * 1000


def check_queue_name(queue: str) -> str:
    """Return ``queue`` if it is a valid name; braces or colons would break the hash tag."""
    if not _QUEUE_NAME.match(queue):
        raise ConfigError(f"invalid queue name {queue!r}: use 1-100 of [A-Za-z0-9_.-]")
    return queue


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue (or of one shard of it), computed once: workers ask per job."""

    queue: str
    shard: int | None = None
    _base: str = field(init=False, repr=False, compare=False)
    _streams: dict[int, str] = field(init=False, repr=False, compare=False)
    _delayed: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        base = f"{PREFIX}:{self.tag}:"
        object.__setattr__(self, "_base", base)
        object.__setattr__(
            self,
            "_streams",
            {
                p: base + ("stream" if p == PRIORITY_NORMAL else f"stream:p{p}")
                for p in PRIORITY_LEVELS
            },
        )
        object.__setattr__(
            self,
            "_delayed",
            {
                p: base + ("delayed" if p == PRIORITY_NORMAL else f"delayed:p{p}")
                for p in PRIORITY_LEVELS
            },
        )

    @property
    def tag(self) -> str:
        """The Cluster hash tag shared by every key of this queue (shard)."""
        inner = self.queue if self.shard is None else f"{self.queue}#{self.shard}"
        return "{" + inner + "}"

    @property
    def stream(self) -> str:
        """Stream of runnable normal-priority jobs, read by the consumer group."""
        return self._streams[PRIORITY_NORMAL]

    @property
    def delayed(self) -> str:
        """Sorted set of encoded normal-priority jobs scored by due time in ms."""
        return self._delayed[PRIORITY_NORMAL]

    @property
    def dead(self) -> str:
        """Dead-letter stream: jobs that exhausted retries or could not be run."""
        return self._base + "dead"

    def stream_for(self, priority: int) -> str:
        """The stream of one priority level (normal keeps the plain name)."""
        return self._streams[priority]

    def delayed_for(self, priority: int) -> str:
        """The delayed set of one priority level, so promotion keeps the priority."""
        return self._delayed[priority]

    @property
    def streams(self) -> tuple[str, ...]:
        """Every priority's stream, highest first: the order workers serve them in."""
        return tuple(self._streams[p] for p in PRIORITY_LEVELS)

    def job(self, job_id: str) -> str:
        """Hash with one job's state, timestamps, last error, progress and result."""
        return self._base + "job:" + job_id

    def done_channel(self, job_id: str) -> str:
        """Pub/sub channel told when the job reaches a final state (result waiters listen)."""
        return self._base + "done:" + job_id

    @property
    def done_prefix(self) -> str:
        """The done channels' common prefix (scripts append the job id)."""
        return self._base + "done:"

    @property
    def cancels(self) -> str:
        """Set of ids of running jobs whose cancellation was asked for."""
        return self._base + "cancels"

    def stats(self, minute: int) -> str:
        """Hash of outcome counts (succeeded, retried, dead, cancelled) of one minute, numbered
        from the epoch (``now_ms // MINUTE_MS``); it expires after ``STATS_TTL_MS``."""
        return self._base + "stats:" + str(minute)

    def stats_at(self, now_ms: int) -> str:
        """The throughput hash of the minute that ``now_ms`` falls in."""
        return self.stats(now_ms // MINUTE_MS)

    def schedule(self, schedule_id: str) -> str:
        """Hash of one periodic schedule: definition, hash, paused, last job, counters."""
        return self._base + "schedule:" + schedule_id

    @property
    def schedules(self) -> str:
        """Set of the ids of this queue's periodic schedules (paused ones included)."""
        return self._base + "schedules"

    @property
    def schedules_next(self) -> str:
        """Sorted set of active schedule ids scored by their next fire time in ms."""
        return self._base + "schedules:next"


# Set of the queues that have periodic schedules, so `streamq schedules list` needs no app and
# no SCAN. Outside any hash tag: only plain commands touch it, never a script.
SCHEDULE_QUEUES = f"{PREFIX}:schedule-queues"


@lru_cache(maxsize=1024)
def keys_of(queue: str) -> QueueKeys:
    """The keys of ``queue``, built once per process: a QueueKeys precomputes every key name
    (~2 us), which a producer would otherwise pay on every job it sends."""
    return QueueKeys(queue)


def queue_of_stream(stream_key: str) -> str:
    """Return the queue name inside a stream key built by :class:`QueueKeys`."""
    start = stream_key.index("{") + 1
    inner = stream_key[start : stream_key.index("}", start)]
    return inner.split("#", 1)[0]
