"""Periodic schedules for operators: list, show, pause, resume, remove and run now by id.

Works from Redis alone: schedules are found through the registry of queues that have them,
so no task code (``--app``) is needed.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from streamq.cron import iso
from streamq.errors import StreamqError
from streamq.keys import keys_of
from streamq.producer import schedule as sched
from streamq.producer.schedule import ScheduleInfo
from streamq.store import Store

ACTIONS = ("list", "show", "pause", "resume", "remove", "run-now")


def list_all(store: Store, queue: str | None = None) -> list[ScheduleInfo]:
    """Every stored schedule (of ``queue``, or of every queue that has some)."""
    out = []
    for q in [queue] if queue else store.schedule_queues():
        for schedule_id in store.schedule_ids(keys_of(q)):
            found = sched.read(store, q, schedule_id)
            if found is not None:
                out.append(found)
    return out


def find(store: Store, schedule_id: str, queue: str | None = None) -> ScheduleInfo:
    """The one schedule with this id.

    Raises:
        StreamqError: none has it, or several queues do (then pass ``queue``).
    """
    queues = [queue] if queue else store.schedule_queues()
    found = [s for q in queues if (s := sched.read(store, q, schedule_id)) is not None]
    if not found:
        raise StreamqError(
            f"no schedule {schedule_id!r}" + (f" in queue {queue!r}" if queue else "")
        )
    if len(found) > 1:
        where = sorted(s.queue for s in found)
        raise StreamqError(f"schedule {schedule_id!r} exists in queues {where}: pass --queue")
    return found[0]


def as_row(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule as JSON-ready fields, with readable times next to the milliseconds."""
    row = asdict(info)
    row["args"], row["kwargs"] = list(info.args), dict(info.kwargs)
    tz = info.tz or "UTC"
    row["next"] = iso(info.next_ms, tz) if info.next_ms >= 0 else None
    row["last_tick"] = iso(info.last_tick_ms, tz) if info.last_tick_ms >= 0 else None
    return row


def command(
    store: Store,
    action: str,
    schedule_id: str | None,
    queue: str | None,
    max_payload_bytes: int,
) -> list[dict[str, Any]]:
    """Carry out one ``streamq schedules`` action; return the rows to print.

    Raises:
        StreamqError: an unknown or ambiguous schedule id, or a missing one.
    """
    if action == "list":
        return [as_row(s) for s in list_all(store, queue)]
    if not schedule_id:
        raise StreamqError(f"`schedules {action}` needs a SCHEDULE_ID")
    info = find(store, schedule_id, queue)
    if action == "show":
        return [as_row(info)]
    row: dict[str, Any] = {"schedule_id": info.id, "queue": info.queue, "action": action}
    if action == "pause":
        row["ok"] = sched.pause(store, info.queue, info.id)
    elif action == "resume":
        row["ok"] = sched.resume(store, info.queue, info.id)
    elif action == "remove":
        row["ok"] = sched.remove(store, info.queue, info.id)
    elif action == "run-now":
        row["job_id"] = sched.run_now(store, info.queue, info.id, max_payload_bytes)
        row["ok"] = row["job_id"] is not None
    else:
        raise StreamqError(f"unknown action {action!r}: use one of {ACTIONS}")
    return [row]
