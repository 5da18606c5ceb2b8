"""Producing and consuming: enqueue, read, start, ack, retry, bury, leases.

Each verb is a plan (module-level, no I/O) and a one-line method of :class:`QueueVerbs` that
runs it; an asyncio store runs the same plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamq import scripts
from streamq.keys import QueueKeys
from streamq.plan import Batch, Plan, cmd, each, no_group, one, refused
from streamq.scripts import Finished, RetryRow
from streamq.store.base import Entry, NewJob


# -- producing ---------------------------------------------------------------------------------
def enqueue_plan(
    jobs: Sequence[NewJob], now_ms: int, window_ms: int = 0
) -> Plan[list[tuple[bool, str]]]:
    """Record and add jobs in one script call; per job (created, entry id or its state).

    Idempotent per job id, so resending after a lost reply never duplicates a job. Each job's
    dedup window is its ``unique_ms``, at least ``window_ms`` (a resend's).
    """
    rows = [
        (
            j.keys.job(j.job_id),
            j.keys.delayed_for(j.priority) if j.due_ms else j.keys.stream_for(j.priority),
            j.job_id,
            j.payload,
            j.due_ms,
            j.task,
            j.unique_ms,
        )
        for j in jobs
    ]
    return one(scripts.enqueue(rows, now_ms, window_ms))


def add_plan(jobs: Sequence[NewJob]) -> Plan[list[str]]:
    """XADD (or ZADD, when delayed) jobs that keep no record; no dedup."""
    replies = yield Batch(
        [
            cmd("ZADD", j.keys.delayed_for(j.priority), j.due_ms, j.payload)
            if j.due_ms
            else cmd("XADD", j.keys.stream_for(j.priority), "*", b"j", j.payload)
            for j in jobs
        ]
    )
    return [r.decode() if isinstance(r, bytes) else "" for r in replies]


# -- consuming ---------------------------------------------------------------------------------
def ensure_group_plan(keys: QueueKeys, group: str) -> Plan[list[str]]:
    """Create the group on every priority stream if missing, from the first entry.

    Returns the names of other groups on the queue, in which case nothing was created: one
    group per queue (see ``lua/group.lua``).
    """
    return one(scripts.group(keys.streams, group))


def read_plan(
    streams: Sequence[tuple[QueueKeys, int]],
    group: str,
    consumer: str,
    count: int,
    block_ms: int | None,
    own: bool = False,
) -> Plan[list[Entry]]:
    """XREADGROUP new entries of (queue, priority) streams (``own``: our pending ones).

    Entries come back highest priority first. ``block_ms=None`` does not block. Recreates the
    group if Redis lost it (a restart without persistence).
    """
    by_stream = {k.stream_for(p).encode(): (k, p) for k, p in streams}
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    if block_ms is not None:
        args += ["BLOCK", block_ms]
    args += ["STREAMS", *(k.stream_for(p) for k, p in streams)]
    args += ["0" if own else ">"] * len(streams)
    (reply,) = yield Batch([cmd(*args)], tolerant=True)
    if refused(reply):
        if not no_group(reply):
            raise reply
        # Redis lost the group (a restart without persistence). If another group took the
        # queue since, nothing is created and this reads nothing.
        for keys in {k for k, _ in streams}:
            yield from ensure_group_plan(keys, group)
        return []
    out: list[Entry] = []
    for stream, entries in reply or ():
        keys, priority = by_stream[stream]
        # An entry deleted while pending reads back with no fields (None): bury it too.
        out += [Entry(keys, priority, eid, fields or {}) for eid, fields in entries]
    if reply and len(reply) > 1:
        out.sort(key=lambda e: -e.priority)  # stable: stream order within a level
    return out


def entry_plan(keys: QueueKeys, priority: int, entry_id: bytes) -> Plan[Entry | None]:
    """One stream entry by id, or None once it is gone (acked, moved)."""
    (rows,) = yield Batch([cmd("XRANGE", keys.stream_for(priority), entry_id, entry_id)])
    return Entry(keys, priority, rows[0][0], rows[0][1]) if rows else None


def start_plan(
    group: str,
    worker: str,
    now_ms: int,
    batch: Sequence[Entry],
    job_ids: Sequence[str],
    attempts: Sequence[int],
) -> Plan[list[bool]]:
    """Mark a batch as running; False for entries cancelled meanwhile (already dropped).

    One script call per queue (every key of a call shares the queue's hash tag), all in one
    round trip.
    """
    by_queue: dict[QueueKeys, list[int]] = {}
    for i, e in enumerate(batch):
        by_queue.setdefault(e.keys, []).append(i)
    calls = [
        scripts.start(
            keys.cancels,
            keys.done_prefix,
            group,
            worker,
            now_ms,
            [
                (batch[i].stream, keys.job(job_ids[i]), batch[i].id, attempts[i], job_ids[i])
                for i in idx
            ],
        )
        for keys, idx in by_queue.items()
    ]
    results = yield from each(calls)
    go = [True] * len(batch)
    for idx, res in zip(by_queue.values(), results, strict=True):
        for i, ok in zip(idx, res, strict=True):
            go[i] = ok
    return go


def ack_plan(
    keys: QueueKeys,
    priority: int,
    group: str,
    now_ms: int,
    done: Sequence[Finished],
    retries: Sequence[RetryRow] = (),
) -> Plan[tuple[int, int]]:
    """Record a batch's outcomes on one stream: finished entries, and failed ones' next
    attempts. Returns (finished still ours, failed no longer ours)."""
    calls = [
        scripts.ack(
            keys.cancels,
            keys.stream_for(priority),
            keys.delayed_for(priority),
            keys.stats_at(now_ms),
            keys.done_prefix,
            group,
            now_ms,
            done[i : i + 1000],
            retries[i : i + 1000],
        )
        for i in range(0, max(len(done), len(retries), 1), 1000)  # Lua unpack() limit
    ]
    results = yield from each(calls)
    return sum(a for a, _ in results), sum(b for _, b in results)


def bury_plan(
    entry: Entry, group: str, job_id: str, now_ms: int, ttl_ms: int, fields: dict[str, Any]
) -> Plan[bool]:
    """Ack an entry, add it to the dead-letter stream and mark its job dead, atomically."""
    k = entry.keys
    # No job id (an undecodable entry): a placeholder key no job can have (ids are 1+ chars).
    keys = (entry.stream, k.dead, k.job(job_id), k.stats_at(now_ms))
    return one(scripts.bury(keys, group, entry.id, now_ms, ttl_ms, k.done_channel(job_id), fields))


def touch_plan(keys: QueueKeys, group: str, consumer: str, min_idle_ms: int) -> Plan[int]:
    """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
    calls = [scripts.touch(s, group, consumer, min_idle_ms, 10_000) for s in keys.streams]
    replies = yield Batch([c.op for c in calls], tolerant=True)
    return sum(c.parse(r) for c, r in zip(calls, replies, strict=True) if not _gone(r))


def release_plan(keys: QueueKeys, group: str, consumer: str) -> Plan[int]:
    """Requeue everything ``consumer`` still holds; drop it from the group if empty."""
    calls = [scripts.release(s, group, consumer, 10_000) for s in keys.streams]
    replies = yield Batch([c.op for c in calls], tolerant=True)
    return sum(c.parse(r)[0] for c, r in zip(calls, replies, strict=True) if not _gone(r))


def _gone(reply: Any) -> bool:
    """True for NOGROUP (nothing to do on that stream); raise any other refusal."""
    if no_group(reply):
        return True
    if refused(reply):
        raise reply
    return False
