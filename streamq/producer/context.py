"""What a running task can know about its own job: ``streamq.current_job()``.

Set by whatever runs the task: a worker (records in Redis) or eager mode (records in memory).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

import structlog

from streamq.errors import RedisCommandError, StreamqConnectionError
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.logging import current_job_var
from streamq.producer.handle import Records

log = structlog.get_logger("streamq.worker")

# While Redis is away, a progress write is tried again at most this often from the task
# (each try may wait up to the socket timeout); the worker writes the latest value anyway
# before it records the job's outcome.
PROGRESS_RETRY_S = 5.0


class Progress:
    """Progress writes of one worker: advisory, so a Redis blip never fails the job.

    The latest value per job is kept when Redis is away and written by :meth:`flush`, which
    the worker calls before it records outcomes (so the record still exists).
    """

    def __init__(self, store: Records) -> None:
        self.store = store
        self._pending: dict[tuple[str, str], tuple[float, str]] = {}
        self._failed_at: float | None = None  # monotonic time of the last failed write

    def set(self, queue: str, job_id: str, progress: float, note: str) -> None:
        """Record the latest progress of a job; write it now unless Redis just failed."""
        self._pending[queue, job_id] = (progress, note)
        failed = self._failed_at
        if failed is None or time.monotonic() - failed >= PROGRESS_RETRY_S:
            self.flush()

    def flush(self) -> bool:
        """Write what is pending; return False (keeping it) if Redis is away. Never raises."""
        while self._pending:
            (queue, job_id), (progress, note) = next(iter(self._pending.items()))
            try:
                self.store.set_progress(QueueKeys(queue), job_id, progress, note)
            except (StreamqConnectionError, RedisCommandError) as e:
                if self._failed_at is None:
                    log.warning("job.progress_deferred", job_id=job_id, error_message=str(e))
                self._failed_at = time.monotonic()
                return False
            if self._pending.get((queue, job_id)) == (progress, note):
                del self._pending[queue, job_id]
        self._failed_at = None
        return True


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job a task is running for."""

    id: str
    task: str
    queue: str
    attempt: int
    tracked: bool
    _progress: Progress

    def set_progress(self, progress: float, note: str = "") -> None:
        """Record progress (0..1) and a note, readable from ``job.info()`` in any process.

        Advisory: if Redis is away, the latest value is kept and written once it is back;
        the job never fails for it. A no-op for ``track=False`` tasks (they keep no record).
        """
        if self.tracked:
            self._progress.set(self.queue, self.id, progress, note)


# The runner (a worker, or eager mode) sets (envelope, progress writer) per job; the
# JobContext is built only when asked for, which keeps it off the hot path of jobs that never
# call current_job().
# One variable with streamq.logging, whose add_job_fields reads it for log lines.
_current: ContextVar[tuple[Envelope, Progress] | None] = current_job_var


def current_job() -> JobContext:
    """The job the calling task runs for.

    Raises:
        LookupError: called outside a task run by a worker.
    """
    ctx = _current.get()
    if ctx is None:
        raise LookupError(
            "current_job() is only available inside a task run by a worker or in eager mode"
        )
    env, progress = ctx
    return JobContext(env.id, env.task, env.queue, env.attempt, env.tracked, progress)
