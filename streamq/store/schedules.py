"""Periodic schedules: definitions, next fire times, ticks, pause, removal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamq.keys import SCHEDULE_QUEUES, QueueKeys
from streamq.scripts import Tick
from streamq.store.base import StoreBase, as_str, wrapped


class ScheduleVerbs(StoreBase):
    """Periodic schedules: definitions, next fire times, ticks, pause, removal."""

    def define_schedule(
        self,
        keys: QueueKeys,
        schedule_id: str,
        blob: bytes,
        content_hash: str,
        timing_key: str,
        next_ms: int,
        now_ms: int,
        source: str,
    ) -> tuple[str, str]:
        """Write a definition unless the stored one is identical.

        Returns:
            (created | updated | same, the previous content hash or '').
        """
        script_keys = (keys.schedule(schedule_id), keys.schedules_next, keys.schedules)
        with wrapped("schedule write failed"):
            got = self.scripts.define(
                script_keys, schedule_id, blob, content_hash, timing_key, next_ms, now_ms, source
            )
            # After the script, so a concurrent removal of the queue's last schedule cannot
            # drop the queue from the registry while this one is in it.
            self.client.sadd(SCHEDULE_QUEUES, keys.queue)
        return got

    def schedules_due(
        self, keys: QueueKeys, now_ms: int, limit: int
    ) -> tuple[list[tuple[str, int]], int]:
        """Schedules whose next fire time has come, earliest first, and the earliest next
        fire time of all (due or not; -1 when the queue has no active schedule)."""
        with wrapped("schedule poll failed"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zrangebyscore(keys.schedules_next, "-inf", now_ms, 0, limit, withscores=True)
            pipe.zrange(keys.schedules_next, 0, 0, withscores=True)
            due, first = pipe.execute()
        earliest = int(first[0][1]) if first else -1
        return [(as_str(m), int(score)) for m, score in due], earliest

    def schedule_record(self, keys: QueueKeys, schedule_id: str) -> dict[str, bytes]:
        """A schedule's hash (empty once removed)."""
        with wrapped("schedule read failed"):
            raw: Any = self.client.hgetall(keys.schedule(schedule_id))
        return {as_str(k): v for k, v in raw.items()}

    def schedule_records(self, keys: QueueKeys, schedule_ids: list[str]) -> list[dict[str, bytes]]:
        """Several schedules' hashes in one round trip (empty for removed ones)."""
        with wrapped("schedule read failed"):
            pipe = self.client.pipeline(transaction=False)
            for schedule_id in schedule_ids:
                pipe.hgetall(keys.schedule(schedule_id))
            raw: list[Any] = pipe.execute()
        return [{as_str(k): v for k, v in r.items()} for r in raw]

    def schedule_ids(self, keys: QueueKeys) -> list[str]:
        """Ids of every schedule of the queue, paused ones included, sorted."""
        with wrapped("schedule list failed"):
            raw: Any = self.client.smembers(keys.schedules)
        return sorted(as_str(m) for m in raw)

    def schedule_queues(self) -> list[str]:
        """Queues that have (or had) schedules, from the registry any pool keeps up."""
        with wrapped("schedule list failed"):
            raw: Any = self.client.smembers(SCHEDULE_QUEUES)
        return sorted(as_str(m) for m in raw)

    def schedule_ticks(
        self,
        keys: QueueKeys,
        ticks: Sequence[tuple[Tick, int]],
        now_ms: int,
        max_ahead_ms: int,
    ) -> list[tuple[str, str]]:
        """Fire or pass over (tick, priority) rows in one round trip (see ``lua/tick.lua``).

        Returns (status, detail) per row. A tick's ``expected_last_job`` is also the job
        whose record ``overlap="skip"`` reads.
        """
        rows = []
        for tick, priority in ticks:
            job_key = keys.job(tick.job_id or "-")  # "-": a key no script writes
            target = keys.delayed_for(priority) if tick.due_ms else keys.stream_for(priority)
            previous = tick.expected_last_job
            rows.append(
                (
                    (
                        keys.schedule(tick.schedule_id),
                        keys.schedules_next,
                        job_key,
                        target,
                        keys.job(previous) if previous else job_key,
                    ),
                    tick,
                )
            )
        with wrapped("schedule tick failed"):
            return self.scripts.tick(rows, now_ms, max_ahead_ms)

    def pause_schedule(self, keys: QueueKeys, schedule_id: str, next_ms: int, now_ms: int) -> str:
        """Pause (``next_ms`` -2) or resume with ``next_ms``; paused, resumed or unknown."""
        with wrapped("schedule pause failed"):
            return self.scripts.pause(
                keys.schedule(schedule_id), keys.schedules_next, schedule_id, next_ms, now_ms
            )

    def undefine_schedule(self, keys: QueueKeys, schedule_id: str) -> bool:
        """Remove a schedule; True if it existed. The queue leaves the registry with its last."""
        with wrapped("schedule removal failed"):
            existed = self.scripts.undefine(
                (keys.schedule(schedule_id), keys.schedules_next, keys.schedules), schedule_id
            )
            if not self.client.scard(keys.schedules):
                self.client.srem(SCHEDULE_QUEUES, keys.queue)
        return existed
