"""Upkeep of a queue: promotion of due jobs, reclaiming, settling, pruning."""

from __future__ import annotations

import redis

from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.scripts import ReclaimResult
from streamq.store.base import (
    REAPER_CONSUMER,
    StoreBase,
    no_group,
    wrapped,
)


class UpkeepVerbs(StoreBase):
    """Upkeep of a queue: promotion of due jobs, reclaiming, settling, pruning."""

    # -- maintenance -----------------------------------------------------------------------
    def promote_due(self, keys: QueueKeys, now_ms: int, limit: int = 500) -> tuple[int, int]:
        """Move due delayed jobs to their streams; return (moved, next due ms or -1)."""
        moved, nxt = 0, -1
        with wrapped("promote failed"):
            for p in PRIORITY_LEVELS:
                m, n = self.scripts.promote(keys.stream_for(p), keys.delayed_for(p), now_ms, limit)
                moved += m
                if n >= 0 and (nxt < 0 or n < nxt):
                    nxt = n
        return moved, nxt

    def reclaim_idle(
        self,
        keys: QueueKeys,
        stream: str,
        group: str,
        min_idle_ms: int,
        cursor: bytes,
        count: int,
        max_deliveries: int,
        now_ms: int,
        dead_consumer: str = "",
    ) -> ReclaimResult:
        """One reaper step over one stream's pending list, from ``cursor``; or, given
        ``dead_consumer``, everything that consumer holds there."""
        with wrapped("reclaim failed"):
            try:
                return self.scripts.reclaim(
                    stream,
                    keys.dead,
                    group,
                    REAPER_CONSUMER,
                    min_idle_ms,
                    cursor,
                    count,
                    max_deliveries,
                    now_ms,
                    dead_consumer,
                )
            except redis.ResponseError as e:
                if no_group(e):
                    return ReclaimResult(b"0-0", 0, [], [])
                raise

    def settle(self, keys: QueueKeys, result: ReclaimResult, now_ms: int, ttl_ms: int) -> int:
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
        with wrapped("settle failed"):
            return self.scripts.settle(now_ms, ttl_ms, moves)

    def prune_consumers(self, keys: QueueKeys, group: str, min_idle_ms: int) -> list[str]:
        """Delete consumers that are long idle and own nothing."""
        gone: list[str] = []
        with wrapped("prune failed"):
            for stream in keys.streams:
                try:
                    gone += self.scripts.prune(stream, group, min_idle_ms)
                except redis.ResponseError as e:
                    if not no_group(e):
                        raise
        return gone
