"""The only package that talks to Redis: queue verbs over streams, sorted sets and scripts.

It narrows redis-py's loosely typed replies to real types and wraps connection failures in
:class:`StreamqConnectionError`, so nothing above it imports ``redis``. Each verb is a plan
(no I/O) in the module of its concern (queue, upkeep, records, inspect); an executor sends
its commands: :class:`Store` (``node.py``) is every verb over one blocking client.
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
from streamq.store.node import Store

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
