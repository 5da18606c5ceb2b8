"""The only package that talks to Redis: queue verbs over streams, sorted sets and scripts.

It narrows redis-py's loosely typed replies to real types and wraps connection failures in
:class:`StreamqConnectionError`, so nothing above it imports ``redis``. The verbs live in one
module per concern; :class:`Store` is all of them over one client.
"""

from __future__ import annotations

from streamq.store.base import (
    REAPER_CONSUMER,
    DeadLetter,
    Entry,
    NewJob,
    QueueStats,
    connect,
    field_text,
)
from streamq.store.inspect import InspectVerbs
from streamq.store.queue import QueueVerbs
from streamq.store.records import RecordVerbs
from streamq.store.schedules import ScheduleVerbs
from streamq.store.upkeep import UpkeepVerbs


class Store(QueueVerbs, UpkeepVerbs, RecordVerbs, InspectVerbs, ScheduleVerbs):
    """Queue verbs for one Redis client; safe to share within a thread, not across forks."""


__all__ = [
    "REAPER_CONSUMER",
    "DeadLetter",
    "Entry",
    "NewJob",
    "QueueStats",
    "Store",
    "connect",
    "field_text",
]
