"""The job envelope: what a producer asks for and a worker runs; pure data, no I/O, no clock."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

# Priorities run high first; a small integer range keeps room for finer levels later.
PRIORITY_HIGH = 2
PRIORITY_NORMAL = 1
PRIORITY_LOW = 0


def new_job_id(now_ms: int) -> str:
    """Return an id unique across producers and sortable by creation time.

    Twelve hex digits of milliseconds then 64 random bits: two producers in the same
    millisecond collide with probability 2**-64.
    """
    return f"{now_ms:012x}{os.urandom(8).hex()}"


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Envelope(NamedTuple):
    """One job as it travels through Redis; immutable.

    A NamedTuple rather than a frozen dataclass: a worker builds one per job, and this
    constructs in a third of the time. ``attempt`` is 1-based: the first run is attempt 1,
    so a task runs at most ``max_retries + 1`` times. Fields left at ``None`` fall back to
    the task's settings in the worker, so a producer that enqueues by name need not know
    them. ``tracked=False`` jobs keep no record (no status or result), for fire-and-forget
    volume.
    """

    id: str
    task: str
    queue: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = _EMPTY
    attempt: int = 1
    max_retries: int | None = None
    enqueued_ms: int = 0
    priority: int = PRIORITY_NORMAL
    backoff_base_ms: int | None = None
    backoff_cap_ms: int | None = None
    timeout_ms: int | None = None
    headers: Mapping[str, str] = _EMPTY
    tracked: bool = True
    # Producer side only, never encoded: how long after it finished this job's id still
    # refuses a new enqueue (``unique_for_s``), carried so ``prepare()`` + send keeps it.
    unique_ms: int = 0

    def next_attempt(self) -> Envelope:
        """Return the envelope of the retry that follows this attempt."""
        return self._replace(attempt=self.attempt + 1)

    def fresh(self) -> Envelope:
        """Return this job with its attempt count reset, for a replay from dead letters."""
        return self._replace(attempt=1)
