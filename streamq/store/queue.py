"""Producing and consuming: enqueue, read, start, ack, retry, bury, leases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from streamq.keys import QueueKeys
from streamq.scripts import Finished, RetryRow
from streamq.store.base import (
    Entry,
    NewJob,
    StoreBase,
    as_str,
    no_group,
    wrapped,
)


class QueueVerbs(StoreBase):
    """Producing and consuming: enqueue, read, start, ack, retry, bury, leases."""

    # -- producing -------------------------------------------------------------------------
    def enqueue(
        self, jobs: Sequence[NewJob], now_ms: int, window_ms: int = 0
    ) -> list[tuple[bool, str]]:
        """Record and add jobs in one script call; per job (created, entry id or its state).

        Idempotent per job id, so resending after a lost reply never duplicates a job. Each
        job's dedup window is its ``unique_ms``, at least ``window_ms`` (a resend's).
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
        with wrapped("enqueue failed"):
            return self.scripts.enqueue(rows, now_ms, window_ms)

    def add(self, jobs: Sequence[NewJob]) -> list[str]:
        """XADD (or ZADD, when delayed) jobs that keep no record, pipelined; no dedup."""
        with wrapped("enqueue failed"):
            if len(jobs) == 1 and not jobs[0].due_ms:  # no pipeline for one: ~2.5 us less
                j = jobs[0]
                return [as_str(self.client.xadd(j.keys.stream_for(j.priority), {b"j": j.payload}))]
            pipe = self.client.pipeline(transaction=False)
            for j in jobs:
                if j.due_ms:
                    pipe.zadd(j.keys.delayed_for(j.priority), {j.payload: j.due_ms})
                else:
                    pipe.xadd(j.keys.stream_for(j.priority), {b"j": j.payload})
            replies: list[Any] = pipe.execute()
        return [r.decode() if isinstance(r, bytes) else "" for r in replies]

    # -- consuming -------------------------------------------------------------------------
    def ensure_group(self, keys: QueueKeys, group: str) -> list[str]:
        """Create the group on every priority stream if missing, from the first entry.

        Returns the names of other groups on the queue, in which case nothing was created:
        one group per queue (see ``lua/group.lua``).
        """
        with wrapped("group create failed"):
            return self.scripts.group(keys.streams, group)

    def read(
        self,
        streams: Sequence[tuple[QueueKeys, int]],
        group: str,
        consumer: str,
        count: int,
        block_ms: int | None,
        own: bool = False,
    ) -> list[Entry]:
        """XREADGROUP new entries of (queue, priority) streams (``own``: our pending ones).

        Entries come back highest priority first. ``block_ms=None`` does not block.
        Recreates the group if Redis lost it (a restart without persistence).
        """
        by_stream = {k.stream_for(p).encode(): (k, p) for k, p in streams}
        names: dict[Any, Any] = {k.stream_for(p): "0" if own else ">" for k, p in streams}
        with wrapped("read failed"):
            try:
                reply: Any = self.client.xreadgroup(
                    group, consumer, names, count=count, block=block_ms
                )
            except redis.ResponseError as e:
                if not no_group(e):
                    raise
                # Redis lost the group (a restart without persistence). If another group
                # took the queue since, nothing is created and this reads nothing.
                for keys in {k for k, _ in streams}:
                    self.ensure_group(keys, group)
                return []
        out: list[Entry] = []
        for stream, entries in reply or ():
            keys, priority = by_stream[stream]
            # An entry deleted while pending reads back with no fields (None): bury it too.
            out += [Entry(keys, priority, eid, fields or {}) for eid, fields in entries]
        if reply and len(reply) > 1:
            out.sort(key=lambda e: -e.priority)  # stable: stream order within a level
        return out

    def entry(self, keys: QueueKeys, priority: int, entry_id: bytes) -> Entry | None:
        """One stream entry by id, or None once it is gone (acked, moved)."""
        with wrapped("entry read failed"):
            rows: Any = self.client.xrange(keys.stream_for(priority), entry_id, entry_id)
        return Entry(keys, priority, rows[0][0], rows[0][1]) if rows else None

    def start(
        self,
        group: str,
        worker: str,
        now_ms: int,
        batch: Sequence[Entry],
        job_ids: Sequence[str],
        attempts: Sequence[int],
    ) -> list[bool]:
        """Mark a batch as running; False for entries cancelled meanwhile (already dropped).

        One script call per queue, so every key of a call shares the queue's hash tag.
        """
        by_queue: dict[QueueKeys, list[int]] = {}
        for i, e in enumerate(batch):
            by_queue.setdefault(e.keys, []).append(i)
        go = [True] * len(batch)
        with wrapped("start failed"):
            for keys, idx in by_queue.items():
                rows = [
                    (batch[i].stream, keys.job(job_ids[i]), batch[i].id, attempts[i], job_ids[i])
                    for i in idx
                ]
                res = self.scripts.start(
                    keys.cancels, keys.done_prefix, group, worker, now_ms, rows
                )
                for i, ok in zip(idx, res, strict=True):
                    go[i] = ok
        return go

    def ack(
        self,
        keys: QueueKeys,
        priority: int,
        group: str,
        now_ms: int,
        done: Sequence[Finished],
        retries: Sequence[RetryRow] = (),
    ) -> tuple[int, int]:
        """Record a batch's outcomes on one stream: finished entries, and failed ones'
        next attempts. Returns (finished still ours, failed no longer ours)."""
        acked = lost = 0
        with wrapped("ack failed"):
            for i in range(0, max(len(done), len(retries), 1), 1000):  # Lua unpack() limit
                a, b = self.scripts.ack(
                    keys.cancels,
                    keys.stream_for(priority),
                    keys.delayed_for(priority),
                    keys.done_prefix,
                    group,
                    now_ms,
                    done[i : i + 1000],
                    retries[i : i + 1000],
                )
                acked, lost = acked + a, lost + b
        return acked, lost

    def bury(
        self,
        entry: Entry,
        group: str,
        job_id: str,
        now_ms: int,
        ttl_ms: int,
        fields: dict[str, Any],
    ) -> bool:
        """Ack an entry, add it to the dead-letter stream and mark its job dead, atomically."""
        k = entry.keys
        # No job id (an undecodable entry): a placeholder key no job can have (ids are 1+ chars).
        keys = (entry.stream, k.dead, k.job(job_id))
        with wrapped("bury failed"):
            return self.scripts.bury(
                keys, group, entry.id, now_ms, ttl_ms, k.done_channel(job_id), fields
            )

    def touch(self, keys: QueueKeys, group: str, consumer: str, min_idle_ms: int) -> int:
        """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
        n = 0
        with wrapped("lease refresh failed"):
            for stream in keys.streams:
                try:
                    n += self.scripts.touch(stream, group, consumer, min_idle_ms, 10_000)
                except redis.ResponseError as e:
                    if not no_group(e):
                        raise
        return n

    def release(self, keys: QueueKeys, group: str, consumer: str) -> int:
        """Requeue everything ``consumer`` still holds; drop it from the group if empty."""
        n = 0
        with wrapped("release failed"):
            for stream in keys.streams:
                try:
                    n += self.scripts.release(stream, group, consumer, 10_000)[0]
                except redis.ResponseError as e:
                    if not no_group(e):
                        raise
        return n
