"""Reads for people (the dashboard, ``streamq info``, the metrics exporter): throughput history,
depth per priority, consumers, pending entries, delayed jobs, newest dead letters.

Plans only (no I/O): :mod:`streamq.store.node` serves each as a method of ``Store``. Every
read is bounded (COUNT, LIMIT, a range of minutes): none loads a whole stream or set, so a
page costs the same with 200,000 dead letters as with 20.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamq.keys import MINUTE_MS, PRIORITY_LEVELS, STATS_TTL_MS, QueueKeys
from streamq.plan import Batch, Plan, cmd, refused
from streamq.store.base import DeadLetter, QueueGauges, as_str

OUTCOMES = ("succeeded", "retried", "dead", "cancelled")


@dataclass(frozen=True, slots=True)
class Minute:
    """Outcome counts of one queue in the minute starting at ``start_ms``."""

    start_ms: int
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Level:
    """One priority level of a queue: its stream and delayed set.

    ``oldest_ms`` is when the oldest entry no worker has read yet was added (None: nothing
    waits); ``next_due_ms`` the earliest due time in the delayed set (None: empty).
    """

    priority: int
    length: int
    pending: int
    delayed: int
    oldest_ms: int | None
    next_due_ms: int | None

    @property
    def waiting(self) -> int:
        """Entries in the stream that no worker holds."""
        return self.length - self.pending


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer of the group, over every priority stream of the queue."""

    name: str
    pending: int
    idle_ms: int


@dataclass(frozen=True, slots=True)
class Depth:
    """A queue at a glance: its levels, highest priority first, dead letters, consumers."""

    queue: str
    levels: list[Level]
    dead: int
    consumers: list[Consumer] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Pending:
    """An entry a consumer holds: who, for how long, how often delivered, and its fields
    (empty when it was deleted meanwhile)."""

    priority: int
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int
    fields: dict[bytes, bytes]


def throughput_plan(keys: QueueKeys, since_ms: int, until_ms: int) -> Plan[list[Minute]]:
    """Outcome counts per minute from ``since_ms`` to ``until_ms`` (at most the 48 h that
    are kept), oldest first, one entry per minute (empty counts when nothing finished).

    Workers write them with their batched acks (``lua/ack.lua``, ``bury.lua``,
    ``reclaim.lua``); one pipelined HGETALL per minute.
    """
    last = until_ms // MINUTE_MS
    first = max(since_ms // MINUTE_MS, last - STATS_TTL_MS // MINUTE_MS)
    minutes = range(first, last + 1)
    if not minutes:
        return []
    replies = yield Batch([cmd("HGETALL", keys.stats(m)) for m in minutes])
    return [
        Minute(m * MINUTE_MS, {as_str(k): int(v) for k, v in raw.items()})
        for m, raw in zip(minutes, replies, strict=True)
    ]


def depth_plan(keys: QueueKeys, group: str) -> Plan[Depth]:
    """Depth per priority level, dead letters and consumers, in two round trips."""
    ops = [cmd("XLEN", keys.dead)]
    for p in PRIORITY_LEVELS:
        ops += [
            cmd("XLEN", keys.stream_for(p)),
            cmd("ZRANGE", keys.delayed_for(p), 0, 0, "WITHSCORES"),
            cmd("ZCARD", keys.delayed_for(p)),
            cmd("XINFO GROUPS", keys.stream_for(p)),
            cmd("XINFO CONSUMERS", keys.stream_for(p), group),
        ]
    dead, *rest = yield Batch(ops, tolerant=True)
    rows = [rest[i : i + 5] for i in range(0, len(rest), 5)]
    # Entries after the group's last delivered id are the ones no worker has read yet.
    last_ids = [_last_delivered(info, group) for _, _, _, info, _ in rows]
    firsts = yield Batch(
        [
            cmd("XRANGE", keys.stream_for(p), "(" + last if last else "-", "+", "COUNT", 1)
            for p, last in zip(PRIORITY_LEVELS, last_ids, strict=True)
        ]
    )
    levels: list[Level] = []
    consumers: dict[str, Consumer] = {}
    for p, (length, first_due, delayed, _, infos), first in zip(
        PRIORITY_LEVELS, rows, firsts, strict=True
    ):
        pending = 0
        for c in [] if refused(infos) else infos:
            name, held, idle = as_str(c["name"]), int(c["pending"]), int(c["idle"])
            pending += held
            seen = consumers.get(name)
            consumers[name] = Consumer(
                name,
                held + (seen.pending if seen else 0),
                min(idle, seen.idle_ms if seen else idle),
            )
        levels.append(
            Level(
                p,
                int(length),
                pending,
                int(delayed),
                _entry_ms(first[0][0]) if first else None,
                int(float(_pairs(first_due)[0][1])) if first_due else None,
            )
        )
    return Depth(keys.queue, levels, int(dead), sorted(consumers.values(), key=lambda c: c.name))


def gauges_plan(keys: QueueKeys, group: str, now_ms: int) -> Plan[QueueGauges]:
    """What a metrics scrape shows of one queue, read as the dashboard reads it
    (:func:`depth_plan`): depth and oldest age per priority, pending, delayed and dead.

    The oldest age is ``now_ms`` minus the time in the id of the first entry past the group's
    ``last-delivered-id``: the oldest job no worker has started, timed from when it entered
    the stream (its enqueue, or its promotion once due), so a delayed job is not "late" before
    its due time. Entry ids are server time, which also spares us decoding payloads.
    """
    depth = yield from depth_plan(keys, group)
    return QueueGauges(
        keys.queue,
        {lv.priority: max(0, lv.waiting) for lv in depth.levels},
        {
            lv.priority: 0 if lv.oldest_ms is None else max(0, now_ms - lv.oldest_ms)
            for lv in depth.levels
        },
        sum(lv.pending for lv in depth.levels),
        sum(lv.delayed for lv in depth.levels),
        depth.dead,
    )


def _last_delivered(info: Any, group: str) -> str:
    if refused(info):
        return ""  # no stream yet
    for g in info:
        if as_str(g["name"]) == group:
            return as_str(g["last-delivered-id"])
    return ""


def _entry_ms(entry_id: bytes | str) -> int:
    """When a stream entry was added: the milliseconds part of its id."""
    return int(as_str(entry_id).split("-", 1)[0])


def pending_plan(
    keys: QueueKeys, group: str, count: int = 100, consumers: Sequence[str] = ()
) -> Plan[list[Pending]]:
    """Entries held by consumers, with their fields: the first ``count`` per priority level,
    or, given ``consumers``, the first ``count`` of each of them per level (a worker's
    running job is among the few it holds, whatever the others hold)."""
    who: Sequence[str | None] = consumers or [None]
    asks = [(p, c) for p in PRIORITY_LEVELS for c in who]
    summaries = yield Batch(
        [
            cmd(
                "XPENDING",
                keys.stream_for(p),
                group,
                "-",
                "+",
                count,
                *([c] if c else []),
                parse_detail=True,
            )
            for p, c in asks
        ],
        tolerant=True,
    )
    held = [
        (
            p,
            as_str(row["message_id"]),
            as_str(row["consumer"]),
            int(row["time_since_delivered"]),
            int(row["times_delivered"]),
        )
        for (p, _), summary in zip(asks, summaries, strict=True)
        if not refused(summary)
        for row in summary
    ]
    if not held:
        return []
    found = yield Batch([cmd("XRANGE", keys.stream_for(h[0]), h[1], h[1]) for h in held])
    return [
        Pending(p, eid, consumer, idle, n, dict(rows[0][1]) if rows and rows[0][1] else {})
        for (p, eid, consumer, idle, n), rows in zip(held, found, strict=True)
    ]


def delayed_page_plan(
    keys: QueueKeys, priority: int, offset: int = 0, count: int = 50
) -> Plan[list[tuple[bytes, int]]]:
    """(payload, due ms) of one level's delayed jobs, soonest first, from ``offset``."""
    (rows,) = yield Batch(
        [cmd("ZRANGE", keys.delayed_for(priority), offset, offset + count - 1, "WITHSCORES")]
    )
    return [(member, int(float(score))) for member, score in _pairs(rows)]


def _pairs(rows: Any) -> list[tuple[Any, Any]]:
    """WITHSCORES replies: pairs (RESP3, newer redis-py) or a flat list (RESP2)."""
    if rows and not isinstance(rows[0], list | tuple):
        return list(zip(rows[0::2], rows[1::2], strict=True))
    return [(m, sc) for m, sc in rows]


def dead_recent_plan(keys: QueueKeys, end: str = "+", count: int = 100) -> Plan[list[DeadLetter]]:
    """Dead letters up to ``end`` (inclusive; ``(id`` for exclusive), newest first."""
    (rows,) = yield Batch([cmd("XREVRANGE", keys.dead, end, "-", "COUNT", count)])
    return [
        DeadLetter(eid.decode(), {k.decode(): v for k, v in fields.items()}) for eid, fields in rows
    ]


def job_fields_plan(
    keys: QueueKeys, job_ids: Sequence[str], names: Sequence[str]
) -> Plan[list[dict[str, bytes]]]:
    """Some fields of several job records (absent fields left out), one round trip."""
    if not job_ids:
        return []
    replies = yield Batch([cmd("HMGET", keys.job(j), *names) for j in job_ids])
    return [
        {n: v for n, v in zip(names, values, strict=True) if v is not None} for values in replies
    ]
