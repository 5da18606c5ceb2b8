"""Job records (status, progress, cancel, result waits) and dead letters.

Plans only (no I/O): :mod:`streamq.store.node` serves each as a method of ``Store``.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamq import codec, scripts
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.plan import Batch, Plan, cmd, one
from streamq.store.base import DeadLetter, as_str


def job_record_plan(keys: QueueKeys, job_id: str) -> Plan[dict[str, bytes]]:
    """The job's hash (empty when it expired or never existed)."""
    (raw,) = yield Batch([cmd("HGETALL", keys.job(job_id))])
    return {as_str(k): v for k, v in raw.items()}


def set_progress_plan(keys: QueueKeys, job_id: str, progress: float, note: str) -> Plan[None]:
    """Store a running job's progress (0..1) and a note, for its handle to read."""
    yield Batch([cmd("HSET", keys.job(job_id), "progress", progress, "note", note)])


def cancel_plan(keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> Plan[str]:
    """Cancel a job; see ``lua/cancel.lua`` for what each outcome means."""
    return one(
        scripts.cancel(
            (keys.job(job_id), keys.cancels, [keys.delayed_for(p) for p in PRIORITY_LEVELS]),
            job_id,
            now_ms,
            ttl_ms,
            keys.done_channel(job_id),
            codec.id_marker(job_id),
        )
    )


def cancels_plan(keys: QueueKeys) -> Plan[set[str]]:
    """Ids of running jobs whose cancellation was asked for."""
    (raw,) = yield Batch([cmd("SMEMBERS", keys.cancels)])
    return {as_str(m) for m in raw}


def forget_cancel_plan(keys: QueueKeys, job_id: str) -> Plan[None]:
    """Drop a cancel request whose job is no longer running anywhere."""
    yield Batch([cmd("SREM", keys.cancels, job_id)])


def dead_list_plan(keys: QueueKeys, start: str = "-", count: int = 100) -> Plan[list[DeadLetter]]:
    """Dead letters from ``start`` (inclusive), oldest first."""
    (rows,) = yield Batch([cmd("XRANGE", keys.dead, start, "+", "COUNT", count)])
    return [
        DeadLetter(eid.decode(), {k.decode(): v for k, v in fields.items()}) for eid, fields in rows
    ]


def dead_replay_plan(
    keys: QueueKeys, priority: int, now_ms: int, moves: Sequence[tuple[bytes, bytes, str, str]]
) -> Plan[int]:
    """Move (dead id, payload, job id, task) back to the stream atomically; return count."""
    rows = [(keys.job(jid), did, payload, jid, task) for did, payload, jid, task in moves]
    return one(scripts.replay(keys.dead, keys.stream_for(priority), now_ms, rows))


def dead_delete_plan(keys: QueueKeys, ids: list[str]) -> Plan[int]:
    """Delete dead letters by id; return how many existed."""
    if not ids:
        return 0
    (n,) = yield Batch([cmd("XDEL", keys.dead, *ids)])
    return int(n)
