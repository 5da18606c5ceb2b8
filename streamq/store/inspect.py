"""Looking at the server: depth figures, settings, features, liveness."""

from __future__ import annotations

from typing import Any

import redis

from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.store.base import (
    QueueStats,
    StoreBase,
    as_str,
    wrapped,
)


class InspectVerbs(StoreBase):
    """Looking at the server: depth figures, settings, features, liveness."""

    # -- inspection ------------------------------------------------------------------------
    def stats(self, keys: QueueKeys, group: str) -> QueueStats:
        """Depth of one queue as seen by ``group``, over all priorities.

        XLEN is not the depth on its own: acked entries are deleted, so the streams hold what
        is queued plus what workers hold (pending).
        """
        with wrapped("stats failed"):
            pipe = self.client.pipeline(transaction=False)
            for p in PRIORITY_LEVELS:
                pipe.xlen(keys.stream_for(p))
                pipe.zcard(keys.delayed_for(p))
            pipe.xlen(keys.dead)
            *counts, dead = pipe.execute()
            consumers: dict[str, int] = {}
            for stream in keys.streams:
                try:
                    for c in self.client.xinfo_consumers(stream, group):
                        name = as_str(c["name"])
                        consumers[name] = consumers.get(name, 0) + int(c["pending"])
                except redis.ResponseError:
                    pass  # no stream or group yet: nothing is pending
        pending = sum(consumers.values())
        length, delayed = sum(counts[0::2]), sum(counts[1::2])
        return QueueStats(
            keys.queue, int(length) - pending, pending, int(delayed), int(dead), consumers
        )

    def due_before(self, keys: QueueKeys, until_ms: int) -> int:
        """How many delayed jobs of ``keys`` are due by ``until_ms``."""
        with wrapped("delayed count failed"):
            return sum(
                int(self.client.zcount(keys.delayed_for(p), "-inf", until_ms))
                for p in PRIORITY_LEVELS
            )

    def server_info(self) -> dict[str, Any]:
        """INFO and the settings that decide whether accepted jobs survive."""
        with wrapped("info failed"):
            info: dict[str, Any] = self.client.info()
            return info

    def config(self, names: list[str]) -> dict[str, str]:
        """CONFIG GET values that we may read; a managed Redis often forbids CONFIG."""
        out: dict[str, str] = {}
        with wrapped("config failed"):
            for name in names:
                try:
                    got: Any = self.client.config_get(name)
                except redis.ResponseError:
                    continue  # NOPERM or renamed command
                for key, value in got.items():
                    k = key.decode() if isinstance(key, bytes) else key
                    out[k] = value.decode() if isinstance(value, bytes) else str(value)
        return out

    def has_command(self, name: str) -> bool:
        """True if the server knows ``name``: we detect features, not version strings."""
        with wrapped("command info failed"):
            try:
                # COMMAND DOCS exists from 7.0 on, which is our floor anyway.
                reply: Any = self.client.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    "COMMAND DOCS", name
                )
            except redis.ResponseError:
                return False
        if isinstance(reply, dict):
            return any(v for v in reply.values())
        return bool(reply) and reply[0] is not None

    def reset(self) -> None:
        """Drop open connections (after an interrupted command); the next call reconnects."""
        self.client.connection_pool.disconnect()

    def ping(self) -> None:
        """Round trip to Redis; raises StreamqConnectionError when it is unreachable."""
        with wrapped("ping failed"):
            self.client.ping()
