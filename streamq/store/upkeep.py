"""Upkeep of a queue: promotion of due jobs, reclaiming, settling, pruning.

Plans only (no I/O): :mod:`streamq.store.node` serves each as a method of ``Store``.
"""

from __future__ import annotations

from streamq import scripts
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.plan import Batch, Plan, no_group, one, refused
from streamq.scripts import ReclaimResult
from streamq.store.base import REAPER_CONSUMER


def promote_due_plan(keys: QueueKeys, now_ms: int, limit: int = 500) -> Plan[tuple[int, int]]:
    """Move due delayed jobs to their streams (every priority in one round trip); return
    (moved, next due ms or -1)."""
    calls = [
        scripts.promote(keys.stream_for(p), keys.delayed_for(p), now_ms, limit)
        for p in PRIORITY_LEVELS
    ]
    replies = yield Batch([c.op for c in calls])
    moved, nxt = 0, -1
    for c, reply in zip(calls, replies, strict=True):
        m, n = c.parse(reply)
        moved += m
        if n >= 0 and (nxt < 0 or n < nxt):
            nxt = n
    return moved, nxt


def reclaim_idle_plan(
    keys: QueueKeys,
    stream: str,
    group: str,
    min_idle_ms: int,
    cursor: bytes,
    count: int,
    max_deliveries: int,
    now_ms: int,
    dead_consumer: str = "",
) -> Plan[ReclaimResult]:
    """One reaper step over one stream's pending list, from ``cursor``; or, given
    ``dead_consumer``, everything that consumer holds there."""
    call = scripts.reclaim(
        stream,
        keys.dead,
        keys.stats_at(now_ms),
        group,
        REAPER_CONSUMER,
        min_idle_ms,
        cursor,
        count,
        max_deliveries,
        now_ms,
        dead_consumer,
    )
    (reply,) = yield Batch([call.op], tolerant=True)
    if no_group(reply):
        return ReclaimResult(b"0-0", 0, [], [])
    if refused(reply):
        raise reply
    return call.parse(reply)


def settle_plan(keys: QueueKeys, result: ReclaimResult, now_ms: int, ttl_ms: int) -> Plan[int]:
    """Record on their jobs what a reclaim step did (requeued or dead)."""
    moves = [
        (keys.job(m.job_id), m.old_id, "queued", keys.done_channel(m.job_id), "")
        for m in result.requeued
        if m.job_id
    ] + [
        (keys.job(m.job_id), m.old_id, "dead", keys.done_channel(m.job_id), m.dead_id)
        for m in result.buried
        if m.job_id
    ]
    if not moves:
        return 0
    return (yield from one(scripts.settle(now_ms, ttl_ms, moves)))


def prune_consumers_plan(keys: QueueKeys, group: str, min_idle_ms: int) -> Plan[list[str]]:
    """Delete consumers that are long idle and own nothing."""
    calls = [scripts.prune(s, group, min_idle_ms) for s in keys.streams]
    replies = yield Batch([c.op for c in calls], tolerant=True)
    gone: list[str] = []
    for c, reply in zip(calls, replies, strict=True):
        if no_group(reply):
            continue
        if refused(reply):
            raise reply
        gone += c.parse(reply)
    return gone
