"""Outcomes of runs waiting to be written, and the lines both workers log about them.

Shared by the sync and asyncio workers, so both write the same shape: one ``ack`` script call
per stream per flush (``lua/ack.lua``) carrying the finished entries and the failed ones' next
attempts. A stream's rows leave the buffer only once Redis took them, so an outage keeps them
for the retry, and nothing is acknowledged before its run ended.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.outage import Notice
from streamq.producer.context import Progress
from streamq.producer.handle import Records
from streamq.scripts import Finished, RetryRow
from streamq.settings import WorkerSettings
from streamq.store import Entry
from streamq.store.aio import AsyncStore
from streamq.worker.outcomes import job_fields

Rows = tuple[list[Finished], list[RetryRow]]


class AckBuffer:
    """Finished entries and next attempts per stream, until the next flush."""

    def __init__(self) -> None:
        self._rows: dict[tuple[QueueKeys, int], Rows] = {}

    def __bool__(self) -> bool:
        return bool(self._rows)

    def finished(self, entry: Entry, env: Envelope, state: str, result: bytes, ttl_ms: int) -> None:
        """A run that ended ``succeeded`` or ``cancelled``."""
        job_key = entry.keys.job(env.id) if env.tracked else ""
        self._for(entry)[0].append(Finished(entry.id, job_key, env.id, state, result, ttl_ms))

    def retry(self, entry: Entry, row: RetryRow) -> None:
        """A failed run's next attempt (moved to the delayed set by the same script call)."""
        self._for(entry)[1].append(row)

    def take(self) -> tuple[QueueKeys, int, Rows]:
        """Remove the oldest stream's rows to write them: (queue keys, priority, rows).

        Rows added while they are being written start a new list, so a writer that awaits
        never drops them; :meth:`restore` puts back rows Redis did not take.
        """
        (keys, priority), rows = next(iter(self._rows.items()))
        del self._rows[keys, priority]
        return keys, priority, rows

    def restore(self, keys: QueueKeys, priority: int, rows: Rows) -> None:
        """Put back rows whose write failed, ahead of rows added since."""
        later = self._rows.pop((keys, priority), ([], []))
        self._rows[keys, priority] = (rows[0] + later[0], rows[1] + later[1])

    def _for(self, entry: Entry) -> Rows:
        return self._rows.setdefault((entry.keys, entry.priority), ([], []))


class DeferredProgress(Progress):
    """Progress of an asyncio worker's jobs: kept by ``set`` (from any thread, never blocking
    the loop), written by the worker's flusher before the outcomes (:meth:`write`)."""

    def __init__(self, store: Records, wake: Callable[[], None]) -> None:
        super().__init__(store)
        self._wake = wake

    def set(self, queue: str, job_id: str, progress: float, note: str) -> None:
        """Keep the latest value of the job and ask for a flush."""
        self._pending[queue, job_id] = (progress, note)
        self._wake()

    async def write(self, store: AsyncStore) -> None:
        """Write what is pending; a failure raises and keeps it (the flusher retries)."""
        while self._pending:
            (queue, job_id), value = next(iter(self._pending.items()))
            await store.set_progress(QueueKeys(queue), job_id, *value)
            if self._pending.get((queue, job_id)) == value:
                del self._pending[queue, job_id]


def check_acked(log: Any, keys: QueueKeys, rows: Rows, acked: int, lost: int) -> None:
    """Log entries an ack found no longer ours (reclaimed while their jobs ran)."""
    if acked < len(rows[0]) or lost:
        log.warning("job.lease_lost", queue=keys.queue, count=len(rows[0]) - acked + lost)


def log_finished(
    log: Any, env: Envelope, state: str, duration_ms: float, settings: WorkerSettings
) -> None:
    """The canonical line of a run that ended ``succeeded`` or ``cancelled`` (while running)."""
    if state == "cancelled":
        log.info(
            "job.cancelled",
            **job_fields(env, settings.log_args),
            duration_ms=duration_ms,
            outcome="cancelled",
            running=True,
        )
    elif settings.log_jobs == "all":
        log.info(
            "job.succeeded",
            **job_fields(env, settings.log_args),
            duration_ms=duration_ms,
            outcome="succeeded",
        )


def log_skipped(log: Any, env: Envelope, settings: WorkerSettings) -> None:
    """The canonical line of a job cancelled before it started (dropped unrun)."""
    log.info(
        "job.cancelled", **job_fields(env, settings.log_args), outcome="cancelled", running=False
    )


def log_lease_lost(log: Any, job_id: str | None) -> None:
    """An outcome write refused because the entry was reclaimed while its job ran."""
    log.warning(
        "job.lease_lost",
        job_id=job_id,
        message="entry was reclaimed while running; the reclaimed copy decides the outcome",
    )


def log_lost(log: Any, notice: Notice | None, error: Exception) -> None:
    """``redis.connection_lost`` when the outage tracker says so (first, then reminders)."""
    if notice is not None:
        log.log(
            40 if notice.first else 30,
            "redis.connection_lost",
            pid=os.getpid(),
            error_message=str(error),
            down_ms=notice.down_ms,
            failures=notice.failures,
        )


def retry_delay_s(down_ms: int, rng: random.Random) -> float:
    """How long to wait before the next try: grows with the outage, capped at 2 s, jittered."""
    down_s = down_ms / 1000
    return min(2.0, 0.05 * 2 ** min(down_s, 10)) * (0.5 + rng.random() / 2)
