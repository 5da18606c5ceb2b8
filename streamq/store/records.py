"""Job records (status, progress, cancel, result waits) and dead letters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from streamq.keys import QueueKeys
from streamq.store.base import (
    DeadLetter,
    StoreBase,
    as_str,
    wrapped,
)


class RecordVerbs(StoreBase):
    """Job records (status, progress, cancel, result waits) and dead letters."""

    # -- jobs ------------------------------------------------------------------------------
    def job_record(self, keys: QueueKeys, job_id: str) -> dict[str, bytes]:
        """The job's hash (empty when it expired or never existed)."""
        with wrapped("job lookup failed"):
            raw: Any = self.client.hgetall(keys.job(job_id))
        return {as_str(k): v for k, v in raw.items()}

    def set_progress(self, keys: QueueKeys, job_id: str, progress: float, note: str) -> None:
        """Store a running job's progress (0..1) and a note, for its handle to read."""
        with wrapped("progress failed"):
            self.client.hset(keys.job(job_id), mapping={"progress": progress, "note": note})

    def cancel(self, keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> str:
        """Cancel a job; see ``lua/cancel.lua`` for what each outcome means."""
        with wrapped("cancel failed"):
            return self.scripts.cancel(
                keys.job(job_id), keys.cancels, job_id, now_ms, ttl_ms, keys.done_channel(job_id)
            )

    def cancels(self, keys: QueueKeys) -> set[str]:
        """Ids of running jobs whose cancellation was asked for."""
        with wrapped("cancel list failed"):
            raw: Any = self.client.smembers(keys.cancels)
        return {as_str(m) for m in raw}

    def forget_cancel(self, keys: QueueKeys, job_id: str) -> None:
        """Drop a cancel request whose job is no longer running anywhere."""
        with wrapped("cancel cleanup failed"):
            self.client.srem(keys.cancels, job_id)

    def wait_done(
        self, keys: QueueKeys, job_id: str, timeout_s: float, is_done: Callable[[], bool]
    ) -> bool:
        """Block (pub/sub, no polling) until the job is final or ``timeout_s`` passes.

        Waits through this process's one shared listener (:mod:`streamq.store.listener`), so
        many waiting threads hold one connection, not one each. ``is_done`` is checked after
        registering and again on every wake-up, so a finish in between is not missed.
        """
        return self.listener.wait(keys.done_channel(job_id), timeout_s, is_done)

    # -- dead letters ----------------------------------------------------------------------
    def dead_list(self, keys: QueueKeys, start: str = "-", count: int = 100) -> list[DeadLetter]:
        """Dead letters from ``start`` (inclusive), oldest first."""
        with wrapped("dead-letter read failed"):
            rows: Any = self.client.xrange(keys.dead, min=start, max="+", count=count)
        return [
            DeadLetter(eid.decode(), {k.decode(): v for k, v in fields.items()})
            for eid, fields in rows
        ]

    def dead_replay(
        self,
        keys: QueueKeys,
        priority: int,
        now_ms: int,
        moves: Sequence[tuple[bytes, bytes, str, str]],
    ) -> int:
        """Move (dead id, payload, job id, task) back to the stream atomically; return count."""
        rows = [(keys.job(jid), did, payload, jid, task) for did, payload, jid, task in moves]
        with wrapped("replay failed"):
            return self.scripts.replay(keys.dead, keys.stream_for(priority), now_ms, rows)

    def dead_delete(self, keys: QueueKeys, ids: list[str]) -> int:
        """Delete dead letters by id; return how many existed."""
        if not ids:
            return 0
        with wrapped("dead-letter purge failed"):
            return int(self.client.xdel(keys.dead, *ids))
