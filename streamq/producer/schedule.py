"""Periodic schedules from a producer's side: save, inspect, pause, resume, remove, run now.

Every function works from Redis alone (a store and a queue): no task code is needed, so the
CLI and :class:`Schedule` share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamq import codec
from streamq.clock import now_ms
from streamq.errors import DecodeError
from streamq.keys import keys_of
from streamq.schedule import ScheduleSpec, decode_spec
from streamq.scripts import Tick
from streamq.store import Store, field_text

if TYPE_CHECKING:
    from streamq.producer.app import App
    from streamq.producer.handle import Job


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A stored schedule: its definition and what it has done.

    ``next_ms`` is -1 when paused or when the expression never fires again; ``error`` says
    why the definition could not be read (written by a newer streamq, or damaged).
    """

    id: str
    queue: str
    task: str
    cron: str | None
    every_s: float | None
    tz: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    missed: str
    overlap: str
    jitter_s: float
    paused: bool
    next_ms: int
    last_tick_ms: int
    last_job: str
    fired: int
    skipped: int
    source: str
    content_hash: str
    updated_ms: int
    error: str = ""


def _int(fields: Mapping[str, bytes], name: str, default: int = 0) -> int:
    raw = fields.get(name)
    return int(raw) if raw not in (None, b"") else default


def read(store: Store, queue: str, schedule_id: str) -> ScheduleInfo | None:
    """The stored schedule ``schedule_id`` of ``queue``, or None if there is none."""
    rec = store.schedule_record(keys_of(queue), schedule_id)
    if not rec:
        return None
    paused = field_text(rec, "paused") == "1"
    common: dict[str, Any] = {
        "paused": paused,
        "next_ms": -1 if paused else _int(rec, "next_ms", -1),
        "last_tick_ms": _int(rec, "last_tick_ms", -1),
        "last_job": field_text(rec, "last_job"),
        "fired": _int(rec, "fired"),
        "skipped": _int(rec, "skipped"),
        "source": field_text(rec, "source"),
        "content_hash": field_text(rec, "hash"),
        "updated_ms": _int(rec, "updated_ms"),
    }
    try:
        spec = decode_spec(rec.get("def", b""))
    except DecodeError as e:
        return ScheduleInfo(
            schedule_id, queue, "", None, None, "", (), {}, "", "", 0.0, **common, error=str(e)
        )
    t = spec.timing
    return ScheduleInfo(
        spec.id,
        queue,
        spec.task,
        t.cron,
        t.every_ms / 1000 if t.every_ms is not None else None,
        t.tz,
        spec.args,
        spec.kwargs,
        spec.missed,
        spec.overlap,
        spec.jitter_ms / 1000,
        **common,
    )


def save(store: Store, spec: ScheduleSpec, source: str, at_ms: int) -> tuple[str, str]:
    """Write ``spec`` unless the stored definition is identical.

    Returns:
        (created | updated | same, the previous content hash or '').
    """
    return store.define_schedule(
        keys_of(spec.queue),
        spec.id,
        spec.blob,
        spec.content_hash,
        spec.timing_key,
        spec.timing.next_after(at_ms),
        at_ms,
        source,
    )


def pause(store: Store, queue: str, schedule_id: str) -> bool:
    """Stop firing ticks until resumed; False if there is no such schedule."""
    return store.pause_schedule(keys_of(queue), schedule_id, -2, now_ms()) == "paused"


def resume(store: Store, queue: str, schedule_id: str) -> bool:
    """Fire again from the next tick after now (ticks missed while paused are not run).

    Raises:
        DecodeError: the stored definition cannot be read by this version.
    """
    keys = keys_of(queue)
    rec = store.schedule_record(keys, schedule_id)
    if not rec:
        return False
    spec = decode_spec(rec.get("def", b""))
    now = now_ms()
    return store.pause_schedule(keys, schedule_id, spec.timing.next_after(now), now) == "resumed"


def remove(store: Store, queue: str, schedule_id: str) -> bool:
    """Delete the schedule from Redis (jobs it enqueued stay); False if it did not exist."""
    return store.undefine_schedule(keys_of(queue), schedule_id)


def run_now(store: Store, queue: str, schedule_id: str, max_payload_bytes: int) -> str | None:
    """Enqueue one run of the schedule now, paused or not, without moving its next tick.

    The run counts as the schedule's last job, so ``overlap="skip"`` waits for it too.

    Returns:
        The job id, or None if there is no such schedule.

    Raises:
        DecodeError: the stored definition cannot be read by this version.
    """
    keys = keys_of(queue)
    rec = store.schedule_record(keys, schedule_id)
    if not rec:
        return None
    spec = decode_spec(rec.get("def", b""))
    now = now_ms()
    job_id = f"sched:{spec.id}:now:{now}"
    payload = codec.encode(spec.envelope(job_id, now, now), max_payload_bytes)
    tick = Tick(spec.id, -1, -1, now, job_id, payload, 0, spec.task, False, "", "")
    ((status, _),) = store.schedule_ticks(keys, [(tick, spec.priority)], now, 0)
    return job_id if status == "fired" else None


class Schedule:
    """A schedule defined in code: written to Redis when a pool serving its queue starts.

    The methods act on Redis at once, from any process: :meth:`save` writes the definition
    now (a producer adding a schedule at run time), the others act on the stored schedule.
    """

    __slots__ = ("app", "spec")

    def __init__(self, app: App, spec: ScheduleSpec) -> None:
        self.app = app
        self.spec = spec

    def __repr__(self) -> str:
        t = self.spec.timing
        when = f"cron={t.cron!r} tz={t.tz}" if t.cron else f"every_ms={t.every_ms}"
        return f"<Schedule {self.spec.id} task={self.spec.task} {when}>"

    @property
    def id(self) -> str:
        """The schedule id (the task name unless given)."""
        return self.spec.id

    def save(self) -> str:
        """Write the definition now; returns created, updated or same."""
        return save(self.app.store, self.spec, "api", now_ms())[0]

    def info(self) -> ScheduleInfo | None:
        """The stored schedule, or None if it is not in Redis (yet)."""
        return read(self.app.store, self.spec.queue, self.spec.id)

    def pause(self) -> bool:
        """See :func:`pause`."""
        return pause(self.app.store, self.spec.queue, self.spec.id)

    def resume(self) -> bool:
        """See :func:`resume`."""
        return resume(self.app.store, self.spec.queue, self.spec.id)

    def remove(self) -> bool:
        """See :func:`remove`; a pool whose code defines it writes it again when it starts."""
        return remove(self.app.store, self.spec.queue, self.spec.id)

    def run_now(self) -> Job[Any] | None:
        """Enqueue one run now (see :func:`run_now`); its handle, or None if not stored."""
        job_id = run_now(
            self.app.store, self.spec.queue, self.spec.id, self.app.settings.max_payload_bytes
        )
        return self.app.job(job_id, self.spec.queue) if job_id else None
