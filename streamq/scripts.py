"""The Lua scripts, registered once per client and called through typed wrappers.

``register_script`` sends EVALSHA and reloads on NOSCRIPT, which also covers a failover to a
replica whose script cache is empty. Every key a script touches is passed in KEYS and shares
the queue's hash tag (see :mod:`streamq.keys`), so scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import msgpack
import redis


def _source(name: str) -> str:
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


class Scripts:
    """One registered instance of every script, bound to one client."""

    def __init__(self, client: redis.Redis) -> None:
        self._s = {
            name: client.register_script(_source(name))
            for name in (
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
                "group",
            )
        }

    def _call(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return self._s[name](keys=list(keys), args=list(args))

    def enqueue(
        self,
        jobs: Sequence[tuple[str, str, str, bytes, int, str, int]],
        now_ms: int,
        min_window_ms: int,
    ) -> list[tuple[bool, str]]:
        """Record and add jobs given as (job key, target key, id, payload, due ms, task,
        dedup window ms); every window is at least ``min_window_ms``.

        Returns (created, entry id or the existing job's state) per job.
        """
        keys: list[Any] = []
        args: list[Any] = [now_ms, min_window_ms]
        for job_key, target, job_id, payload, due_ms, task, window_ms in jobs:
            keys.extend((job_key, target))
            args.extend((job_id, payload, due_ms, task, window_ms))
        reply = self._call("enqueue", keys, args)
        return [(bool(created), _text(what)) for created, what in reply]

    def start(
        self,
        cancels: str,
        done_prefix: str,
        group: str,
        worker: str,
        now_ms: int,
        entries: Sequence[tuple[str, str, bytes, int, str]],
    ) -> list[bool]:
        """Mark (stream, job key, entry id, attempt, job id) running; False = cancelled."""
        keys: list[Any] = []
        rows = []
        for stream, job_key, entry_id, attempt, job_id in entries:
            keys.extend((stream, job_key))
            rows.append((entry_id, attempt, job_id))
        keys.append(cancels)
        args = [group, worker, now_ms, done_prefix, msgpack.packb(rows, use_bin_type=False)]
        return [bool(x) for x in self._call("start", keys, args)]

    def ack(
        self,
        cancels: str,
        stream: str,
        delayed: str,
        done_prefix: str,
        group: str,
        now_ms: int,
        done: Sequence[Finished],
        retries: Sequence[RetryRow] = (),
    ) -> tuple[int, int]:
        """Record a batch's outcomes on ``stream``; (finished acked, failed no longer held)."""
        keys: list[Any] = [cancels, stream, delayed]
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
        acked, lost = self._call("ack", keys, [group, now_ms, done_prefix, blob])
        return int(acked), int(lost)

    def bury(
        self,
        keys: tuple[str, str, str],
        group: str,
        entry_id: bytes,
        now_ms: int,
        ttl_ms: int,
        channel: str,
        fields: dict[str, Any],
    ) -> bool:
        """Ack ``entry_id`` and add ``fields`` to the dead-letter stream; False if lease lost."""
        flat: list[Any] = [group, entry_id, now_ms, ttl_ms, channel]
        for name, value in fields.items():
            flat.extend((name, value))
        return bool(self._call("bury", keys, flat))

    def promote(self, stream: str, delayed: str, now_ms: int, limit: int) -> tuple[int, int]:
        """Move due jobs to the stream; return (moved, earliest remaining due ms or -1)."""
        moved, nxt = self._call("promote", [stream, delayed], [now_ms, limit])
        return int(moved), int(nxt)

    def reclaim(
        self,
        stream: str,
        dead: str,
        group: str,
        reaper: str,
        min_idle_ms: int,
        cursor: bytes,
        count: int,
        max_deliveries: int,
        now_ms: int,
        dead_consumer: str = "",
    ) -> ReclaimResult:
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
        ]
        cur, deleted, req, bur = self._call("reclaim", [stream, dead], args)
        requeued = [Moved(req[i], _text(req[i + 1])) for i in range(0, len(req), 2)]
        buried = [
            Moved(bur[i], _text(bur[i + 1]), bur[i + 2], _text(bur[i + 3]))
            for i in range(0, len(bur), 4)
        ]
        return ReclaimResult(cur, int(deleted), requeued, buried)

    def settle(
        self, now_ms: int, ttl_ms: int, moves: Sequence[tuple[str, bytes, str, str, str]]
    ) -> int:
        """Record (job key, old entry id, new state, channel, dead id) after a reclaim."""
        keys = [m[0] for m in moves]
        args: list[Any] = [now_ms, ttl_ms]
        for _, old_id, state, channel, dead_id in moves:
            args.extend((old_id, state, channel, dead_id))
        return int(self._call("settle", keys, args))

    def touch(self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> int:
        """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
        return int(self._call("touch", [stream], [group, consumer, min_idle_ms, count]))

    def release(self, stream: str, group: str, consumer: str, count: int) -> tuple[int, bool]:
        """Requeue ``consumer``'s pending entries; return (released, consumer deleted)."""
        released, gone = self._call("release", [stream], [group, consumer, count])
        return int(released), bool(gone)

    def prune(self, stream: str, group: str, min_idle_ms: int) -> list[str]:
        """Delete consumers idle past ``min_idle_ms`` that own nothing; return their names."""
        return [_text(n) for n in self._call("prune", [stream], [group, min_idle_ms])]

    def replay(
        self,
        dead: str,
        stream: str,
        now_ms: int,
        moves: Sequence[tuple[str, bytes, bytes, str, str]],
    ) -> int:
        """Move (job key, dead id, payload, job id, task) back to ``stream``; return count."""
        keys: list[Any] = [dead, stream]
        args: list[Any] = [now_ms]
        for job_key, dead_id, payload, job_id, task in moves:
            keys.append(job_key)
            args.extend((dead_id, payload, job_id, task))
        return int(self._call("replay", keys, args))

    def cancel(
        self,
        keys: tuple[str, str, Sequence[str]],
        job_id: str,
        now_ms: int,
        ttl_ms: int,
        channel: str,
        marker: bytes,
    ) -> str:
        """Cancel a job given (job key, cancels set, delayed sets) and its payload's
        ``marker``; return cancelled, cancelling, its final state, or unknown."""
        job_key, cancels, delayed = keys
        args = [job_id, now_ms, ttl_ms, channel, marker]
        return _text(self._call("cancel", [job_key, cancels, *delayed], args))

    def group(self, streams: Sequence[str], group: str) -> list[str]:
        """Create ``group`` on every stream unless another group reads one of them.

        Returns the other groups' names (then nothing was created), or [] on success.
        """
        return sorted(_text(n) for n in self._call("group", streams, [group]))
