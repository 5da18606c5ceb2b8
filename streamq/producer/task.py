"""A registered task: call it locally, or enqueue it with arguments checked by type checkers."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from streamq import options as check
from streamq.job import Envelope
from streamq.keys import check_queue_name
from streamq.producer.arguments import Checker, check_arguments, checker_for
from streamq.producer.handle import Job
from streamq.settings import TaskOptions

if TYPE_CHECKING:
    from streamq.producer.app import App

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function registered under a name, with its queue and retry policy.

    ``R`` is what a job of it returns: for an ``async def`` task (an :class:`AsyncTask`), the
    awaited value, so ``job.result()`` and ``await job.aresult()`` are typed alike.
    ``is_async`` is True for ``async def`` functions.
    """

    __slots__ = ("_checker", "_overrides", "app", "fn", "is_async", "name", "options")

    def __init__(
        self,
        app: App,
        fn: Callable[P, Any],
        name: str,
        options: TaskOptions,
        overrides: dict[str, Any] | None = None,
        checker: Checker | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.name = name
        self.options = options
        self._overrides = overrides or {}
        # Built once per task (with_options copies share it): enqueue only calls it.
        self._checker = checker if checker is not None else checker_for(fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, without a queue."""
        result: R = self.fn(*args, **kwargs)
        return result

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
    ) -> Self:
        """Return this task with per-enqueue overrides, e.g. ``t.with_options(max_retries=0)``.

        Overrides travel in the envelope, so the worker applies them whatever its defaults.
        ``job_id`` makes the enqueue idempotent (an id still queued, scheduled, running or
        retrying is not enqueued again); ``unique_for_s`` also covers finished jobs that
        recent. ``None`` keeps the task's own value.

        Raises:
            ConfigError: a value that cannot work (e.g. ``timeout_s`` of 0 or less), here
                rather than in a worker.
        """
        overrides = dict(self._overrides)
        if timeout_s is not None:
            overrides["timeout_ms"] = check.timeout_ms(timeout_s)
        if job_id is not None:
            overrides["job_id"] = check.job_id(job_id)
        if unique_for_s is not None:
            overrides["unique_ms"] = check.unique_ms(unique_for_s)
        if max_retries is not None:
            overrides["max_retries"] = check.max_retries(max_retries)
        if backoff_base_s is not None:
            overrides["backoff_base_ms"] = check.backoff_ms("backoff_base_s", backoff_base_s)
        if backoff_cap_s is not None:
            overrides["backoff_cap_ms"] = check.backoff_ms("backoff_cap_s", backoff_cap_s)
        options = self.options
        if queue is not None:
            options = replace(options, queue=check_queue_name(queue))
        if priority is not None:
            options = replace(options, priority=check.priority(priority))
        return type(self)(self.app, self.fn, self.name, options, overrides, self._checker)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise EnqueueError unless the function could be called with these arguments.

        No I/O: a cached stub of the signature binds them (~0.1 us).
        """
        check_arguments(self.name, self._checker, args, kwargs)

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Envelope:
        """Build the envelope without sending it, for :meth:`App.send` or
        :meth:`App.enqueue_many`; it carries every override, ``unique_for_s`` included.

        Raises:
            EnqueueError: the arguments do not fit the function's signature.
        """
        self.check_arguments(args, kwargs)
        o = self._overrides
        return self.app.envelope(
            self.name,
            args,
            kwargs,
            queue=self.options.queue,
            priority=self.options.priority,
            max_retries=o.get("max_retries"),
            backoff_base_ms=o.get("backoff_base_ms"),
            backoff_cap_ms=o.get("backoff_cap_ms"),
            timeout_ms=o.get("timeout_ms"),
            job_id=o.get("job_id"),
            unique_ms=o.get("unique_ms", 0),
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Append the job to its queue's stream and return its handle.

        Raises:
            EnqueueError: the arguments do not fit the function's signature, or Redis did not
                confirm it (see :class:`EnqueueError` on timeouts).
        """
        return self.app.send(self.prepare(*args, **kwargs))

    def enqueue_in(self, delay: float | timedelta, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue to run after ``delay`` (seconds or a timedelta)."""
        return self.app.send(self.prepare(*args, **kwargs), delay=delay)

    def enqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue to run at ``when`` (a timezone-aware datetime)."""
        return self.app.send(self.prepare(*args, **kwargs), at=when)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """:meth:`enqueue` without blocking the event loop (``redis.asyncio``, same rules).

        Raises:
            EnqueueError: as :meth:`enqueue`.
        """
        return await self.app.asend(self.prepare(*args, **kwargs))

    async def aenqueue_in(
        self, delay: float | timedelta, *args: P.args, **kwargs: P.kwargs
    ) -> Job[R]:
        """:meth:`enqueue_in`, awaitable."""
        return await self.app.asend(self.prepare(*args, **kwargs), delay=delay)

    async def aenqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """:meth:`enqueue_at`, awaitable."""
        return await self.app.asend(self.prepare(*args, **kwargs), at=when)


class AsyncTask(Task[P, R]):
    """A task whose function is ``async def``; ``R`` is what awaiting it gives.

    Calling it returns the function's coroutine (await it to run the task here and now).
    Enqueueing is the same as for a sync task, with :meth:`Task.enqueue` or
    :meth:`Task.aenqueue`; async workers run its jobs.
    """

    __slots__ = ()

    def __call__(  # type: ignore[override]  # the call gives the coroutine; R is its result
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """Return the function's coroutine, to await here and now, without a queue."""
        coro: Coroutine[Any, Any, R] = self.fn(*args, **kwargs)
        return coro


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns: it registers a sync or async function."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]:
        """Register ``fn``."""
        ...
