"""Lifecycle hooks and job middleware: one chain that every worker loop calls around each job.

The sync loop calls :meth:`Chain.before` / :meth:`Chain.after`; the asyncio loop awaits
:meth:`Chain.abefore` / :meth:`Chain.aafter`. Both run the same middleware, in the same order,
with the same error rule: a middleware that raises is logged (``middleware.failed``) and never
changes the job's outcome or stops the worker, since what middleware does (metrics, traces,
error reports) must not decide whether a job ran.

In the sync loop an ``async def`` method runs to completion on a private event loop of the
chain (one per worker process); the asyncio loop awaits it on its own loop. A loop with no
middleware holds ``None`` instead of a chain, so a job pays one ``is None`` check.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple

import structlog

from streamq.errors import WorkerStartFailed
from streamq.job import Envelope

log = structlog.get_logger("streamq.worker")

# What after_job is told: the same four words in every loop.
SUCCEEDED, RETRYING, DEAD, CANCELLED = "succeeded", "retrying", "dead", "cancelled"
OUTCOMES = (SUCCEEDED, RETRYING, DEAD, CANCELLED)


class Outcome(NamedTuple):
    """How one run of a job ended, as ``after_job(job, outcome)`` sees it.

    Attributes:
        state: ``"succeeded"``, ``"retrying"`` (failed, another attempt is scheduled),
            ``"dead"`` (dead-lettered) or ``"cancelled"``.
        error: what the task raised (None if nothing, or for a job that never ran).
        duration_s: how long the task ran (0 for a job that never ran).
        wait_s: from the moment the job entered its stream (enqueued, or promoted when due)
            to its start: the queueing delay this worker saw.
        ran: False for a job settled without running (cancelled before it started, or a
            task this worker does not know); ``before_job`` was not called for it.
    """

    state: str
    error: BaseException | None = None
    duration_s: float = 0.0
    wait_s: float = 0.0
    ran: bool = True


Bound = tuple[str, Callable[..., Any], bool]  # (middleware class name, method, is async)


def _bound(middleware: Sequence[object], name: str) -> list[Bound]:
    found = []
    for m in middleware:
        fn = getattr(m, name, None)
        if callable(fn):
            found.append((type(m).__name__, fn, inspect.iscoroutinefunction(fn)))
    return found


class Chain:
    """The middleware of one worker, bound once: ``before_job`` in the order they were
    added, ``after_job`` and ``after_batch`` in reverse (the first added wraps the rest)."""

    def __init__(self, middleware: Sequence[object]) -> None:
        self._before = _bound(middleware, "before_job")
        self._after = _bound(middleware, "after_job")[::-1]
        self._batch = _bound(middleware, "after_batch")[::-1]
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def of(cls, middleware: Sequence[object]) -> Chain | None:
        """A chain, or None when there is no middleware (the loops' fast path)."""
        return cls(middleware) if middleware else None

    # -- sync loop -------------------------------------------------------------------------
    def before(self, job: Envelope) -> None:
        """Call every ``before_job(job)``; the job's log context and ``current_job()`` are set."""
        for bound in self._before:
            self._call(bound, "before_job", job)

    def after(self, job: Envelope, outcome: Outcome) -> None:
        """Call every ``after_job(job, outcome)`` once the outcome is decided."""
        for bound in self._after:
            self._call(bound, "after_job", job, outcome)

    def after_batch(self) -> None:
        """Call every ``after_batch()`` once a batch's outcomes are written to Redis."""
        for bound in self._batch:
            self._call(bound, "after_batch")

    def close(self) -> None:
        """Close the private event loop, if an async method ever needed one."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _call(self, bound: Bound, method: str, *args: Any) -> None:
        name, fn, is_async = bound
        try:
            if not is_async:
                fn(*args)  # the common case: no awaitable check per job
                return
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(fn(*args))
        except Exception as e:  # noqa: BLE001 - middleware never decides a job's outcome
            _failed(name, method, e, args)

    # -- asyncio loop ----------------------------------------------------------------------
    async def abefore(self, job: Envelope) -> None:
        """:meth:`before` for the asyncio loop: async methods are awaited on its loop."""
        for bound in self._before:
            await self._acall(bound, "before_job", job)

    async def aafter(self, job: Envelope, outcome: Outcome) -> None:
        """:meth:`after` for the asyncio loop."""
        for bound in self._after:
            await self._acall(bound, "after_job", job, outcome)

    async def aafter_batch(self) -> None:
        """:meth:`after_batch` for the asyncio loop."""
        for bound in self._batch:
            await self._acall(bound, "after_batch")

    async def _acall(self, bound: Bound, method: str, *args: Any) -> None:
        name, fn, _ = bound
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as e:  # noqa: BLE001 - middleware never decides a job's outcome
            _failed(name, method, e, args)


def _failed(name: str, method: str, e: Exception, args: tuple[Any, ...]) -> None:
    job = args[0] if args and isinstance(args[0], Envelope) else None
    log.error(
        "middleware.failed",
        middleware=name,
        method=method,
        job_id=job.id if job else None,
        error_type=type(e).__name__,
        error_message=str(e),
        exc_info=e,
    )


# -- lifecycle hooks -----------------------------------------------------------------------
Hook = Callable[[], object]


def _run_hook(hook: Hook) -> None:
    result = hook()
    if inspect.iscoroutine(result):
        asyncio.run(_as_coroutine(result))


async def _as_coroutine(result: Coroutine[Any, Any, Any]) -> Any:
    return await result


def hook_name(hook: Hook) -> str:
    """``module.qualname`` of a hook, for log lines."""
    return f"{getattr(hook, '__module__', '?')}.{getattr(hook, '__qualname__', repr(hook))}"


def run_start_hooks(hooks: Sequence[Hook]) -> None:
    """Run ``@app.on_worker_start`` hooks in order, in this process, before its first job.

    Raises:
        WorkerStartFailed: a hook raised; the rest do not run and no job should.
    """
    for hook in hooks:
        try:
            _run_hook(hook)
        except Exception as e:
            raise WorkerStartFailed(hook_name(hook), e) from e


def run_stop_hooks(hooks: Sequence[Hook]) -> None:
    """Run ``@app.on_worker_stop`` hooks in order; one that raises is logged, the rest run."""
    for hook in hooks:
        try:
            _run_hook(hook)
        except Exception as e:  # noqa: BLE001 - logged; stopping goes on
            _stop_hook_failed(hook, e)


async def _arun_hook(hook: Hook) -> None:
    result = hook()
    if inspect.iscoroutine(result):
        await result


async def arun_start_hooks(hooks: Sequence[Hook]) -> None:
    """:func:`run_start_hooks` on the asyncio worker's loop: async hooks are awaited there.

    Raises:
        WorkerStartFailed: a hook raised; the rest do not run and no job should.
    """
    for hook in hooks:
        try:
            await _arun_hook(hook)
        except Exception as e:
            raise WorkerStartFailed(hook_name(hook), e) from e


async def arun_stop_hooks(hooks: Sequence[Hook]) -> None:
    """:func:`run_stop_hooks` on the asyncio worker's loop."""
    for hook in hooks:
        try:
            await _arun_hook(hook)
        except Exception as e:  # noqa: BLE001 - logged; stopping goes on
            _stop_hook_failed(hook, e)


def _stop_hook_failed(hook: Hook, e: Exception) -> None:
    log.error(
        "worker.stop_hook_failed",
        hook=hook_name(hook),
        error_type=type(e).__name__,
        error_message=str(e),
        exc_info=e,
    )
