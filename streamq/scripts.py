"""The Lua scripts, registered once per client and called through typed wrappers.

``register_script`` sends EVALSHA and reloads on NOSCRIPT, which also covers a failover to a
replica whose script cache is empty. Every key a script touches is passed in KEYS and shares
the queue's hash tag (see :mod:`streamq.keys`), so scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis


def _source(name: str) -> str:
    return resources.files("streamq").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    """What one reaper step did."""

    cursor: bytes
    requeued: int
    buried: list[tuple[bytes, bytes]]  # (entry id, raw payload) of jobs moved to dead letters
    deleted: int


class Scripts:
    """One registered instance of every script, bound to one client."""

    def __init__(self, client: redis.Redis) -> None:
        self._ack = client.register_script(_source("ack"))
        self._retry = client.register_script(_source("retry"))
        self._bury = client.register_script(_source("bury"))
        self._promote = client.register_script(_source("promote"))
        self._reclaim = client.register_script(_source("reclaim"))
        self._touch = client.register_script(_source("touch"))
        self._release = client.register_script(_source("release"))
        self._prune = client.register_script(_source("prune"))
        self._replay = client.register_script(_source("replay"))

    def ack(self, stream: str, group: str, ids: list[bytes]) -> int:
        """XACK + XDEL ``ids``; return how many were still pending and got acknowledged."""
        return int(self._ack(keys=[stream], args=[group, *ids]))

    def retry(
        self,
        stream: str,
        delayed: str,
        group: str,
        entry_id: bytes,
        payload: bytes,
        due_ms: int,
        now_ms: int,
    ) -> bool:
        """Ack ``entry_id`` and schedule ``payload``; False if the lease was lost meanwhile."""
        args: list[Any] = [group, entry_id, payload, due_ms, now_ms]
        return bool(self._retry(keys=[stream, delayed], args=args))

    def bury(
        self, stream: str, dead: str, group: str, entry_id: bytes, fields: dict[str, Any]
    ) -> bool:
        """Ack ``entry_id`` and add ``fields`` to the dead-letter stream; False if lease lost."""
        flat: list[Any] = [group, entry_id]
        for name, value in fields.items():
            flat.extend((name, value))
        return bool(self._bury(keys=[stream, dead], args=flat))

    def promote(self, stream: str, delayed: str, now_ms: int, limit: int) -> tuple[int, int]:
        """Move due jobs to the stream; return (moved, earliest remaining due ms or -1)."""
        moved, nxt = self._promote(keys=[stream, delayed], args=[now_ms, limit])
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
    ) -> ReclaimResult:
        """One XAUTOCLAIM step from ``cursor``; see ``lua/reclaim.lua``."""
        args: list[Any] = [group, reaper, min_idle_ms, cursor, count, max_deliveries, now_ms]
        reply = self._reclaim(keys=[stream, dead], args=args)
        rest = reply[4:]
        buried = [(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)]
        return ReclaimResult(reply[0], int(reply[1]), buried, int(reply[3]))

    def touch(self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> int:
        """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
        return int(self._touch(keys=[stream], args=[group, consumer, min_idle_ms, count]))

    def release(self, stream: str, group: str, consumer: str, count: int) -> tuple[int, bool]:
        """Requeue ``consumer``'s pending entries; return (released, consumer deleted)."""
        released, gone = self._release(keys=[stream], args=[group, consumer, count])
        return int(released), bool(gone)

    def prune(self, stream: str, group: str, min_idle_ms: int) -> list[str]:
        """Delete consumers idle past ``min_idle_ms`` that own nothing; return their names."""
        names = self._prune(keys=[stream], args=[group, min_idle_ms])
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def replay(self, dead: str, stream: str, moves: list[tuple[bytes, bytes]]) -> int:
        """Move (dead id, payload) pairs back to the stream; return how many moved."""
        flat: list[Any] = []
        for entry_id, payload in moves:
            flat.extend((entry_id, payload))
        return int(self._replay(keys=[dead, stream], args=flat))
