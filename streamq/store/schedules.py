"""Periodic schedules: definitions, next fire times, ticks, pause, removal.

Plans only (no I/O): :mod:`streamq.store.node` serves each as a method of ``Store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamq import scripts
from streamq.keys import SCHEDULE_QUEUES, QueueKeys
from streamq.plan import Batch, Plan, cmd, each, one
from streamq.scripts import Tick
from streamq.store.base import as_str


def define_schedule_plan(
    keys: QueueKeys,
    schedule_id: str,
    blob: bytes,
    content_hash: str,
    timing_key: str,
    next_ms: int,
    now_ms: int,
    source: str,
) -> Plan[tuple[str, str]]:
    """Write a definition unless the stored one is identical.

    Returns:
        (created | updated | same, the previous content hash or '').
    """
    script_keys = (keys.schedule(schedule_id), keys.schedules_next, keys.schedules)
    got = yield from one(
        scripts.define(
            script_keys, schedule_id, blob, content_hash, timing_key, next_ms, now_ms, source
        )
    )
    # After the script, so a concurrent removal of the queue's last schedule cannot drop the
    # queue from the registry while this one is in it.
    yield Batch([cmd("SADD", SCHEDULE_QUEUES, keys.queue)])
    return got


def _pairs(reply: list[Any]) -> list[tuple[str, int]]:
    """A WITHSCORES reply as (member, score ms) pairs: redis-py pairs it already for RESP2
    and RESP3 alike; a flat (member, score, ...) list is paired here."""
    if reply and not isinstance(reply[0], (list, tuple)):
        reply = [reply[i : i + 2] for i in range(0, len(reply), 2)]
    return [(as_str(m), int(float(score))) for m, score in reply]


def schedules_due_plan(
    keys: QueueKeys, now_ms: int, limit: int
) -> Plan[tuple[list[tuple[str, int]], int]]:
    """Schedules whose next fire time has come, earliest first, and the earliest next fire
    time of all (due or not; -1 when the queue has no active schedule)."""
    due, first = yield Batch(
        [
            cmd(
                "ZRANGE",
                keys.schedules_next,
                "-inf",
                now_ms,
                "BYSCORE",
                "LIMIT",
                0,
                limit,
                "WITHSCORES",
            ),
            cmd("ZRANGE", keys.schedules_next, 0, 0, "WITHSCORES"),
        ]
    )
    head = _pairs(first)
    return _pairs(due), head[0][1] if head else -1


def schedule_records_plan(keys: QueueKeys, schedule_ids: list[str]) -> Plan[list[dict[str, bytes]]]:
    """Several schedules' hashes in one round trip (empty for removed ones)."""
    if not schedule_ids:
        return []
    raw = yield Batch([cmd("HGETALL", keys.schedule(s)) for s in schedule_ids])
    return [{as_str(k): v for k, v in r.items()} for r in raw]


def schedule_record_plan(keys: QueueKeys, schedule_id: str) -> Plan[dict[str, bytes]]:
    """A schedule's hash (empty once removed)."""
    (record,) = yield from schedule_records_plan(keys, [schedule_id])
    return record


def schedule_ids_plan(keys: QueueKeys) -> Plan[list[str]]:
    """Ids of every schedule of the queue, paused ones included, sorted."""
    (raw,) = yield Batch([cmd("SMEMBERS", keys.schedules)])
    return sorted(as_str(m) for m in raw)


def schedule_queues_plan() -> Plan[list[str]]:
    """Queues that have (or had) schedules, from the registry any pool keeps up."""
    (raw,) = yield Batch([cmd("SMEMBERS", SCHEDULE_QUEUES)])
    return sorted(as_str(m) for m in raw)


def schedule_ticks_plan(
    keys: QueueKeys, ticks: Sequence[tuple[Tick, int]], now_ms: int, max_ahead_ms: int
) -> Plan[list[tuple[str, str]]]:
    """Fire or pass over (tick, priority) rows in one round trip (see ``lua/tick.lua``).

    Returns (status, detail) per row. A tick's ``expected_last_job`` is also the job whose
    record ``overlap="skip"`` reads.
    """
    calls = []
    for tick, priority in ticks:
        job_key = keys.job(tick.job_id or "-")  # "-": a key no script writes
        target = keys.delayed_for(priority) if tick.due_ms else keys.stream_for(priority)
        previous = tick.expected_last_job
        script_keys = (
            keys.schedule(tick.schedule_id),
            keys.schedules_next,
            job_key,
            target,
            keys.job(previous) if previous else job_key,
        )
        calls.append(scripts.tick(script_keys, tick, now_ms, max_ahead_ms))
    return each(calls)


def pause_schedule_plan(keys: QueueKeys, schedule_id: str, next_ms: int, now_ms: int) -> Plan[str]:
    """Pause (``next_ms`` -2) or resume with ``next_ms``; paused, resumed or unknown."""
    return one(
        scripts.pause(keys.schedule(schedule_id), keys.schedules_next, schedule_id, next_ms, now_ms)
    )


def undefine_schedule_plan(keys: QueueKeys, schedule_id: str) -> Plan[bool]:
    """Remove a schedule; True if it existed. The queue leaves the registry with its last."""
    existed = yield from one(
        scripts.undefine(
            (keys.schedule(schedule_id), keys.schedules_next, keys.schedules), schedule_id
        )
    )
    (left,) = yield Batch([cmd("SCARD", keys.schedules)])
    if not left:
        yield Batch([cmd("SREM", SCHEDULE_QUEUES, keys.queue)])
    return existed
