"""The App's worker-side extension points: ``@app.on_worker_start``, ``@app.on_worker_stop``
and ``app.add_middleware``.

A mixin of :class:`~streamq.producer.app.App`. Registering does nothing else: worker loops
read these lists when they start (see :mod:`streamq.worker.middleware`), in each worker
process, after the fork.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from streamq.errors import ConfigError

H = TypeVar("H", bound=Callable[[], object])
METHODS = ("before_job", "after_job", "after_batch")


class Lifecycle:
    """Hooks and middleware of an App, in the order they were registered."""

    start_hooks: list[Callable[[], object]]
    stop_hooks: list[Callable[[], object]]
    middleware: list[object]

    def _init_lifecycle(self) -> None:
        self.start_hooks, self.stop_hooks, self.middleware = [], [], []

    def on_worker_start(self, fn: H) -> H:
        """Decorate a function (sync or async, no arguments) to run in each worker process
        after the fork and before its first job: reopen a database pool, set up a client.

        If it raises, that worker runs no job: a pool stops with one ``worker.start_failed``
        line and exit code ``EXIT_START_FAILED`` (5) instead of restarting it in a loop.
        """
        self.start_hooks.append(_callable(fn))
        return fn

    def on_worker_stop(self, fn: H) -> H:
        """Decorate a function (sync or async, no arguments) to run in each worker process as
        it stops gracefully, after its last job; one that raises is logged and stopping goes on.
        """
        self.stop_hooks.append(_callable(fn))
        return fn

    def add_middleware(self, middleware: object) -> None:
        """Run ``middleware`` around every job: its ``before_job(job)``, ``after_job(job,
        outcome)`` and ``after_batch()`` methods, any of them, sync or async.

        ``before_job`` runs in the order middleware were added, ``after_job`` in reverse. An
        exception in a middleware method is logged (``middleware.failed``) and never changes
        the job's outcome. See docs/monitoring.md.

        Raises:
            ConfigError: the object has none of those methods.
        """
        if not any(callable(getattr(middleware, m, None)) for m in METHODS):
            raise ConfigError(
                f"{middleware!r} is not middleware: give it before_job(job), "
                "after_job(job, outcome) or after_batch() (sync or async)"
            )
        self.middleware.append(middleware)


def _callable(fn: H) -> H:
    if not callable(fn):
        raise ConfigError(f"a worker hook must be a function, got {fn!r}")
    return fn
