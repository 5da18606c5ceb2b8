"""What a running task can know about its own job: ``streamq.current_job()``.

Set by whatever runs the task: a worker (records in Redis) or eager mode (records in memory).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.producer.handle import Records


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job a task is running for."""

    id: str
    task: str
    queue: str
    attempt: int
    tracked: bool
    _records: Records

    def set_progress(self, progress: float, note: str = "") -> None:
        """Record progress (0..1) and a note, readable from ``job.info()`` in any process.

        A no-op for ``track=False`` tasks: they keep no record to write it to.
        """
        if self.tracked:
            self._records.set_progress(QueueKeys(self.queue), self.id, progress, note)


# The runner sets (envelope, records) per job; the JobContext is built only when asked for,
# which keeps it off the hot path of jobs that never call current_job().
_current: ContextVar[tuple[Envelope, Records] | None] = ContextVar(
    "streamq_current_job", default=None
)


def current_job() -> JobContext:
    """The job the calling task runs for.

    Raises:
        LookupError: called outside a task run by a worker or by eager mode.
    """
    ctx = _current.get()
    if ctx is None:
        raise LookupError(
            "current_job() is only available inside a task run by a worker or in eager mode"
        )
    env, records = ctx
    return JobContext(env.id, env.task, env.queue, env.attempt, env.tracked, records)
