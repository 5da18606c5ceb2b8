"""Every Redis key name streamq uses, and the only place that spells them.

All keys of one queue share the hash tag ``{queue}`` so that a Lua script touching a queue's
stream, delayed set and dead-letter stream runs on one Redis Cluster slot. A queue split over
several shards later gets one tag per shard (``{queue#2}``) from the same builder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamq.errors import ConfigError

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
PREFIX = "streamq"


def check_queue_name(queue: str) -> str:
    """Return ``queue`` if it is a valid name; braces or colons would break the hash tag."""
    if not _QUEUE_NAME.match(queue):
        raise ConfigError(f"invalid queue name {queue!r}: use 1-100 of [A-Za-z0-9_.-]")
    return queue


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue (or of one shard of it)."""

    queue: str
    shard: int | None = None

    def __post_init__(self) -> None:
        check_queue_name(self.queue)

    @property
    def tag(self) -> str:
        """The Cluster hash tag shared by every key of this queue (shard)."""
        inner = self.queue if self.shard is None else f"{self.queue}#{self.shard}"
        return "{" + inner + "}"

    @property
    def stream(self) -> str:
        """Stream of runnable jobs, read by the consumer group."""
        return f"{PREFIX}:{self.tag}:stream"

    @property
    def delayed(self) -> str:
        """Sorted set of encoded jobs scored by due time in ms (retries and enqueue_in/at)."""
        return f"{PREFIX}:{self.tag}:delayed"

    @property
    def dead(self) -> str:
        """Dead-letter stream: jobs that exhausted retries or could not be run."""
        return f"{PREFIX}:{self.tag}:dead"


def queue_of_stream(stream_key: str) -> str:
    """Return the queue name inside a stream key built by :class:`QueueKeys`."""
    start = stream_key.index("{") + 1
    inner = stream_key[start : stream_key.index("}", start)]
    return inner.split("#", 1)[0]
