"""A registered task: call it locally, or enqueue it with arguments checked by type checkers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from streamq.job import Envelope
from streamq.producer.handle import Job
from streamq.settings import TaskOptions, priority_value

if TYPE_CHECKING:
    from streamq.producer.app import App

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function registered under a name, with its queue and retry policy."""

    __slots__ = ("_overrides", "app", "fn", "name", "options")

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        name: str,
        options: TaskOptions,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self._overrides = overrides or {}

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, without a queue."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def with_options(
        self,
        *,
        queue: str | None = None,
        max_retries: int | None = None,
        backoff_base_s: float | None = None,
        backoff_cap_s: float | None = None,
        priority: str | int | None = None,
        timeout_s: float | None = None,
        job_id: str | None = None,
        unique_for_s: float | None = None,
    ) -> Task[P, R]:
        """Return this task with per-enqueue overrides, e.g. ``t.with_options(max_retries=0)``.

        Overrides travel in the envelope, so the worker applies them whatever its defaults.
        ``job_id`` makes the enqueue idempotent (an id still queued, scheduled, running or
        retrying is not enqueued again); ``unique_for_s`` also covers finished jobs that
        recent.
        """
        overrides = dict(self._overrides)
        if timeout_s is not None:
            overrides["timeout_ms"] = int(timeout_s * 1000)
        if job_id is not None:
            overrides["job_id"] = job_id
        if unique_for_s is not None:
            overrides["unique_for_s"] = unique_for_s
        if max_retries is not None:
            overrides["max_retries"] = max_retries
        if backoff_base_s is not None:
            overrides["backoff_base_ms"] = int(backoff_base_s * 1000)
        if backoff_cap_s is not None:
            overrides["backoff_cap_ms"] = int(backoff_cap_s * 1000)
        options = self.options
        if queue is not None:
            options = replace(options, queue=queue)
        if priority is not None:
            options = replace(options, priority=priority_value(priority))
        return Task(self.app, self.fn, self.name, options, overrides)

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Envelope:
        """Build the envelope without sending it, for :meth:`App.enqueue_many`."""
        return self.app.envelope(
            self.name,
            args,
            kwargs,
            queue=self.options.queue,
            priority=self.options.priority,
            max_retries=self._overrides.get("max_retries"),
            backoff_base_ms=self._overrides.get("backoff_base_ms"),
            backoff_cap_ms=self._overrides.get("backoff_cap_ms"),
            timeout_ms=self._overrides.get("timeout_ms"),
            job_id=self._overrides.get("job_id"),
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Append the job to its queue's stream and return its handle.

        Raises:
            EnqueueError: Redis did not confirm it (see :class:`EnqueueError` on timeouts).
        """
        return self.app.send(self.prepare(*args, **kwargs), unique_for_s=self._unique)

    @property
    def _unique(self) -> float:
        return float(self._overrides.get("unique_for_s", 0))

    def enqueue_in(self, delay: float | timedelta, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue to run after ``delay`` (seconds or a timedelta)."""
        return self.app.send(self.prepare(*args, **kwargs), delay=delay, unique_for_s=self._unique)

    def enqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue to run at ``when`` (a timezone-aware datetime)."""
        return self.app.send(self.prepare(*args, **kwargs), at=when, unique_for_s=self._unique)
