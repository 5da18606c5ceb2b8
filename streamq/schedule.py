"""A periodic schedule's definition: validated, encoded as versioned msgpack, content-hashed.

Pure data, no I/O and no clock. The definition stored in Redis is the one every pool fires,
whatever the pool's own code says; the content hash is how a starting pool tells whether
its code's definition differs from the stored one (see ``docs/periodic.md``, rolling
deploys).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from streamq.cron import MISSED_POLICIES, Timing
from streamq.errors import ConfigError, DecodeError
from streamq.job import PRIORITY_NORMAL, Envelope
from streamq.keys import check_queue_name

SPEC_VERSION = 1
OVERLAP_POLICIES = ("allow", "skip")
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,150}$")


def check_schedule_id(schedule_id: str) -> str:
    """Return ``schedule_id`` if valid: it becomes part of job ids and key names."""
    if not _ID.match(schedule_id):
        raise ConfigError(f"invalid schedule id {schedule_id!r}: use 1-150 of [A-Za-z0-9_.:-]")
    return schedule_id


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What to enqueue and when: one periodic schedule.

    ``missed`` decides what happens to ticks that came while no pool could fire them (see
    :func:`streamq.cron.plan`); ``overlap="skip"`` passes over a tick while the schedule's
    previous job is still queued, scheduled, running or retrying; ``jitter_ms`` delays each
    tick's job by a fixed pseudo-random amount below it, the same for every pool.
    """

    id: str
    task: str
    queue: str
    timing: Timing
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    missed: str = "skip"
    overlap: str = "allow"
    jitter_ms: int = 0
    priority: int = PRIORITY_NORMAL
    _blob: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_schedule_id(self.id)
        check_queue_name(self.queue)
        object.__setattr__(self, "args", tuple(self.args))  # decoded lists compare equal
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        if not self.task:
            raise ConfigError("a schedule needs a task name")
        if self.missed not in MISSED_POLICIES:
            raise ConfigError(f"missed must be one of {MISSED_POLICIES}, got {self.missed!r}")
        if self.overlap not in OVERLAP_POLICIES:
            raise ConfigError(f"overlap must be one of {OVERLAP_POLICIES}, got {self.overlap!r}")
        if self.jitter_ms < 0:
            raise ConfigError("jitter_s must be >= 0")
        object.__setattr__(self, "_blob", self._encode())

    def _encode(self) -> bytes:
        doc = {
            "v": SPEC_VERSION,
            "id": self.id,
            "t": self.task,
            "q": self.queue,
            "c": self.timing.cron,
            "e": self.timing.every_ms,
            "z": self.timing.tz,
            "a": list(self.args),
            # Sorted, so the same keyword arguments given in another order hash the same.
            "k": dict(sorted(self.kwargs.items())),
            "m": self.missed,
            "o": self.overlap,
            "j": self.jitter_ms,
            "p": self.priority,
        }
        try:
            data: bytes = msgpack.packb(doc, use_bin_type=True, datetime=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"schedule {self.id}: arguments msgpack cannot encode: {e}") from e
        return data

    @property
    def blob(self) -> bytes:
        """The definition as stored in Redis."""
        return self._blob

    @property
    def content_hash(self) -> str:
        """A hash of everything the definition says; equal definitions hash equal."""
        return hashlib.sha256(self._blob).hexdigest()[:16]

    @property
    def timing_key(self) -> str:
        """What decides the ticks: when it changes, the next fire time is computed afresh."""
        t = self.timing
        return f"cron={t.cron}|every_ms={t.every_ms}|tz={t.tz}"

    def job_id(self, tick_ms: int) -> str:
        """The deterministic id of a tick's job: the same in every pool, so a tick is one job."""
        return f"sched:{self.id}:{tick_ms}"

    def envelope(self, job_id: str, now_ms: int, tick_ms: int) -> Envelope:
        """The job of one tick (or of a manual run, ``tick_ms`` = when it was asked for).

        Always tracked: the record is what makes a tick's job unique and what
        ``overlap="skip"`` reads.
        """
        return Envelope(
            id=job_id,
            task=self.task,
            queue=self.queue,
            args=list(self.args),
            kwargs=dict(self.kwargs),
            enqueued_ms=now_ms,
            priority=self.priority,
            headers={"schedule_id": self.id, "tick_ms": str(tick_ms)},
        )

    def jitter_for(self, tick_ms: int) -> int:
        """This tick's delay in ms below ``jitter_ms``: derived from the id and tick, so
        any pool that fires the tick picks the same one."""
        if not self.jitter_ms:
            return 0
        digest = hashlib.sha256(f"{self.id}:{tick_ms}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.jitter_ms


def decode_spec(raw: bytes) -> ScheduleSpec:
    """The definition stored by :attr:`ScheduleSpec.blob`.

    Raises:
        DecodeError: not a definition this version can read (``unsupported_version`` when a
            newer streamq wrote it), or its content is invalid (``wrong_shape``).
    """
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)
    except Exception as e:
        raise DecodeError("undecodable", f"{type(e).__name__}: {e}", raw) from e
    if not isinstance(doc, dict):
        raise DecodeError("wrong_shape", "a schedule definition is a map", raw)
    if doc.get("v") != SPEC_VERSION:
        raise DecodeError("unsupported_version", f"schedule version {doc.get('v')!r}", raw)
    try:
        return ScheduleSpec(
            id=doc["id"],
            task=doc["t"],
            queue=doc["q"],
            timing=Timing(doc["c"], doc["e"], doc["z"]),
            args=doc["a"],
            kwargs=doc["k"],
            missed=doc["m"],
            overlap=doc["o"],
            jitter_ms=doc["j"],
            priority=doc["p"],
        )
    except (KeyError, TypeError, ConfigError) as e:
        raise DecodeError("wrong_shape", f"{type(e).__name__}: {e}", raw) from e
