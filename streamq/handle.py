"""The handle a producer gets back for each enqueued job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from streamq.job import Envelope

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Job(Generic[R]):
    """An accepted job: its id, the envelope as sent, and where it went.

    ``entry_id`` is the stream entry id for a job added to the stream, None for a job waiting in
    the delayed set (``due_ms`` then says when it will be promoted).
    """

    envelope: Envelope
    entry_id: str | None = None
    due_ms: int | None = None

    @property
    def id(self) -> str:
        """The job id, stable across retries and replays."""
        return self.envelope.id

    @property
    def task(self) -> str:
        """The registered task name."""
        return self.envelope.task

    @property
    def queue(self) -> str:
        """The queue the job was sent to."""
        return self.envelope.queue
