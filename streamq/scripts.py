"""The Lua scripts: their sources, and one typed wrapper each that packs KEYS and ARGV.

A wrapper does no I/O: it returns a :class:`~streamq.store.plan.Call` (the command and the
function that narrows its reply), which the store's executors send (EVALSHA, reloaded on
NOSCRIPT). Every key a script touches is passed in KEYS and shares the queue's hash tag (see
:mod:`streamq.keys`), so scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import msgpack

from streamq.keys import STATS_TTL_MS
from streamq.plan import Call, lua

SCRIPT_NAMES = (
    "enqueue",
    "start",
    "ack",
    "bury",
    "promote",
    "reclaim",
    "touch",
    "release",
    "prune",
    "replay",
    "cancel",
    "settle",
    "tick",
    "define",
    "pause",
    "undefine",
    "group",
    "busy",
)


def source(name: str) -> str:
    """The Lua source of ``lua/<name>.lua``."""
    return resources.files("streamq").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Moved:
    """An entry the reaper moved: its old id, its job id ('' if unknown), where it went."""

    old_id: bytes
    job_id: str
    payload: bytes = b""
    dead_id: str = ""


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    """What one reaper step did."""

    cursor: bytes
    deleted: int
    requeued: list[Moved]
    buried: list[Moved]


class RetryRow(NamedTuple):
    """A failed entry's next attempt for :meth:`Scripts.ack`; ``job_key`` '' if untracked."""

    entry_id: bytes
    job_key: str
    job_id: str
    payload: bytes
    due_ms: int
    error: tuple[str, str, str]
    ttl_ms: int


class Finished(NamedTuple):
    """One finished entry for :meth:`Scripts.ack`; ``job_key`` is '' for untracked jobs."""

    entry_id: bytes
    job_key: str
    job_id: str
    state: str  # succeeded | cancelled
    result: bytes
    ttl_ms: int


class Tick(NamedTuple):
    """One tick for :func:`tick`: what the caller read, and what to write if it holds.

    ``expected_ms`` -1 is a manual run (no compare-and-set, no advance); ``job_id`` '' only
    advances the next fire time (ticks passed over).
    """

    schedule_id: str
    expected_ms: int
    next_ms: int
    tick_ms: int
    job_id: str
    payload: bytes
    due_ms: int
    task: str
    overlap_skip: bool
    expected_hash: str
    expected_last_job: str


def enqueue(
    jobs: Sequence[tuple[str, str, str, bytes, int, str, int]], now_ms: int, min_window_ms: int
) -> Call[list[tuple[bool, str]]]:
    """Record and add jobs given as (job key, target key, id, payload, due ms, task, dedup
    window ms); every window is at least ``min_window_ms``.

    Replies (created, entry id or the existing job's state) per job.
    """
    keys: list[Any] = []
    args: list[Any] = [now_ms, min_window_ms]
    for job_key, target, job_id, payload, due_ms, task, window_ms in jobs:
        keys.extend((job_key, target))
        args.extend((job_id, payload, due_ms, task, window_ms))
    return Call(
        lua("enqueue", keys, args),
        lambda reply: [(bool(created), _text(what)) for created, what in reply],
    )


def start(
    cancels: str,
    done_prefix: str,
    group: str,
    worker: str,
    now_ms: int,
    entries: Sequence[tuple[str, str, bytes, int, str]],
) -> Call[list[bool]]:
    """Mark (stream, job key, entry id, attempt, job id) running; False = cancelled."""
    keys: list[Any] = []
    rows = []
    for stream, job_key, entry_id, attempt, job_id in entries:
        keys.extend((stream, job_key))
        rows.append((entry_id, attempt, job_id))
    keys.append(cancels)
    args = [group, worker, now_ms, done_prefix, msgpack.packb(rows, use_bin_type=False)]
    return Call(lua("start", keys, args), lambda reply: [bool(x) for x in reply])


def ack(
    cancels: str,
    stream: str,
    delayed: str,
    stats: str,
    done_prefix: str,
    group: str,
    now_ms: int,
    done: Sequence[Finished],
    retries: Sequence[RetryRow] = (),
) -> Call[tuple[int, int]]:
    """Record a batch's outcomes on ``stream`` and count them in the minute's ``stats`` hash;
    (finished acked, failed no longer held)."""
    keys: list[Any] = [cancels, stream, delayed, stats]
    tracked = []
    for i, f in enumerate(done, 1):
        if f.job_key:
            keys.append(f.job_key)
            tracked.append((i, f.job_id, f.state, f.result, f.ttl_ms, len(keys)))
    rows = []
    for r in retries:
        index = 0
        if r.job_key:
            keys.append(r.job_key)
            index = len(keys)
        rows.append((r.entry_id, r.job_id, r.payload, r.due_ms, *r.error, r.ttl_ms, index))
    blob = msgpack.packb(([f.entry_id for f in done], tracked, rows), use_bin_type=False)
    return Call(
        lua("ack", keys, [group, now_ms, done_prefix, blob, STATS_TTL_MS]),
        lambda reply: (int(reply[0]), int(reply[1])),
    )


def bury(
    keys: tuple[str, str, str, str],
    group: str,
    entry_id: bytes,
    now_ms: int,
    ttl_ms: int,
    channel: str,
    fields: dict[str, Any],
) -> Call[bool]:
    """Ack ``entry_id`` and add ``fields`` to the dead-letter stream; False if lease lost.

    ``keys``: stream, dead-letter stream, job hash, the minute's throughput hash.
    """
    flat: list[Any] = [group, entry_id, now_ms, ttl_ms, channel, STATS_TTL_MS]
    for name, value in fields.items():
        flat.extend((name, value))
    return Call(lua("bury", keys, flat), bool)


def promote(stream: str, delayed: str, now_ms: int, limit: int) -> Call[tuple[int, int]]:
    """Move due jobs to the stream; (moved, earliest remaining due ms or -1)."""
    return Call(
        lua("promote", [stream, delayed], [now_ms, limit]),
        lambda reply: (int(reply[0]), int(reply[1])),
    )


def reclaim(
    stream: str,
    dead: str,
    stats: str,
    group: str,
    reaper: str,
    min_idle_ms: int,
    cursor: bytes,
    count: int,
    max_deliveries: int,
    now_ms: int,
    dead_consumer: str = "",
) -> Call[ReclaimResult]:
    """One XAUTOCLAIM step from ``cursor`` (or all of a dead consumer's entries)."""
    args: list[Any] = [
        group,
        reaper,
        min_idle_ms,
        cursor,
        count,
        max_deliveries,
        now_ms,
        dead_consumer,
        STATS_TTL_MS,
    ]
    return Call(lua("reclaim", [stream, dead, stats], args), _reclaimed)


def _reclaimed(reply: Any) -> ReclaimResult:
    cur, deleted, req, bur = reply
    requeued = [Moved(req[i], _text(req[i + 1])) for i in range(0, len(req), 2)]
    buried = [
        Moved(bur[i], _text(bur[i + 1]), bur[i + 2], _text(bur[i + 3]))
        for i in range(0, len(bur), 4)
    ]
    return ReclaimResult(cur, int(deleted), requeued, buried)


def settle(
    now_ms: int, ttl_ms: int, moves: Sequence[tuple[str, bytes, str, str, str]]
) -> Call[int]:
    """Record (job key, old entry id, new state, channel, dead id) after a reclaim."""
    keys = [m[0] for m in moves]
    args: list[Any] = [now_ms, ttl_ms]
    for _, old_id, state, channel, dead_id in moves:
        args.extend((old_id, state, channel, dead_id))
    return Call(lua("settle", keys, args), int)


def touch(stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> Call[int]:
    """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
    return Call(lua("touch", [stream], [group, consumer, min_idle_ms, count]), int)


def release(stream: str, group: str, consumer: str, count: int) -> Call[tuple[int, bool]]:
    """Requeue ``consumer``'s pending entries; (released, consumer deleted)."""
    return Call(
        lua("release", [stream], [group, consumer, count]),
        lambda reply: (int(reply[0]), bool(reply[1])),
    )


def prune(stream: str, group: str, min_idle_ms: int) -> Call[list[str]]:
    """Delete consumers idle past ``min_idle_ms`` that own nothing; their names."""
    return Call(
        lua("prune", [stream], [group, min_idle_ms]), lambda reply: [_text(n) for n in reply]
    )


def replay(
    dead: str,
    stream: str,
    now_ms: int,
    moves: Sequence[tuple[str, bytes, bytes, str, str]],
) -> Call[int]:
    """Move (job key, dead id, payload, job id, task) back to ``stream``; the count."""
    keys: list[Any] = [dead, stream]
    args: list[Any] = [now_ms]
    for job_key, dead_id, payload, job_id, task in moves:
        keys.append(job_key)
        args.extend((dead_id, payload, job_id, task))
    return Call(lua("replay", keys, args), int)


def cancel(
    keys: tuple[str, str, Sequence[str]],
    job_id: str,
    now_ms: int,
    ttl_ms: int,
    channel: str,
    marker: bytes,
) -> Call[str]:
    """Cancel a job given (job key, cancels set, delayed sets) and its payload's ``marker``:
    cancelled, cancelling, its final state, or unknown."""
    job_key, cancels, delayed = keys
    args = [job_id, now_ms, ttl_ms, channel, marker]
    return Call(lua("cancel", [job_key, cancels, *delayed], args), _text)


def group(streams: Sequence[str], group: str) -> Call[list[str]]:
    """Create ``group`` on every stream unless another group reads one of them.

    Replies the other groups' names (then nothing was created), or [] on success.
    """
    return Call(lua("group", streams, [group]), lambda reply: sorted(_text(n) for n in reply))


def tick(
    keys: tuple[str, str, str, str, str], t: Tick, now_ms: int, max_ahead_ms: int
) -> Call[tuple[str, str]]:
    """Fire (or pass over) one tick; keys: schedule, next set, job, target, previous job.

    Returns (status, detail); see ``lua/tick.lua``. Callers batch every due schedule's tick
    into one round trip.
    """
    args: list[Any] = [
        t.schedule_id,
        t.expected_ms,
        t.next_ms,
        now_ms,
        t.job_id,
        t.payload,
        t.due_ms,
        t.task,
        int(t.overlap_skip),
        t.expected_hash,
        t.expected_last_job,
        t.tick_ms,
        max_ahead_ms,
    ]
    return Call(lua("tick", keys, args), lambda reply: (_text(reply[0]), _text(reply[1])))


def define(
    keys: tuple[str, str, str],
    schedule_id: str,
    blob: bytes,
    content_hash: str,
    timing_key: str,
    next_ms: int,
    now_ms: int,
    source: str,
) -> Call[tuple[str, str]]:
    """Write a definition unless identical; (created|updated|same, previous hash)."""
    args = [schedule_id, blob, content_hash, timing_key, next_ms, now_ms, source]
    return Call(lua("define", keys, args), lambda reply: (_text(reply[0]), _text(reply[1])))


def pause(schedule: str, nexts: str, schedule_id: str, next_ms: int, now_ms: int) -> Call[str]:
    """Pause (``next_ms`` -2) or resume at ``next_ms``; paused, resumed or unknown."""
    return Call(lua("pause", [schedule, nexts], [schedule_id, next_ms, now_ms]), _text)


def undefine(keys: tuple[str, str, str], schedule_id: str) -> Call[bool]:
    """Remove a schedule; True if it existed."""
    return Call(lua("undefine", keys, [schedule_id]), bool)


def busy(streams: Sequence[str], delayed: Sequence[str], horizon_ms: int) -> Call[int]:
    """Entries in ``streams`` plus members of ``delayed`` due by ``horizon_ms``, in one step."""
    return Call(lua("busy", [*streams, *delayed], [horizon_ms]), int)
