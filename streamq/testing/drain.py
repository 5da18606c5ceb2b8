"""Run an App's jobs in this process until its queues are empty: ``drain(app)`` in tests."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from streamq.clock import now_ms
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.producer.app import App
from streamq.settings import WorkerSettings
from streamq.store import Store
from streamq.upkeep.scheduler import Scheduler
from streamq.worker.loop import Worker

# "Now" for the scheduler while draining: every delayed job and retry is due at once.
_FAR_FUTURE_MS = 100 * 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What a :func:`drain` ran, counted as the worker's job log lines count it.

    Attributes:
        succeeded: jobs that returned.
        failed: attempts that raised and were retried (``job.failed`` lines).
        dead: jobs dead-lettered: out of retries, not retryable, unknown task, undecodable.
        cancelled: jobs that ended cancelled while running.
        errors: every exception tasks raised, in order (retried and final ones).
    """

    succeeded: int
    failed: int
    dead: int
    cancelled: int
    errors: tuple[BaseException, ...]


def drain(app: App, queues: Sequence[str] | None = None, timeout_s: float = 10.0) -> DrainResult:
    """Run jobs with an in-process worker until the queues hold nothing, then stop it.

    Retries and delayed jobs run as soon as they are written (no waiting out backoffs or due
    times), so a job that fails three times drains in milliseconds. Jobs enqueued by the
    jobs run too. Time limits are enforced only when called from the main thread.

    Args:
        app: the App whose tasks run; it must point at the Redis the jobs are in.
        queues: the queues to drain; default every queue the App's tasks use.
        timeout_s: give up after this long.

    Returns:
        The counts of outcomes, and the exceptions tasks raised.

    Raises:
        TimeoutError: jobs were still queued, pending or delayed after ``timeout_s``.
    """
    names = tuple(queues or app.task_queues())
    counts: Counter[str] = Counter()
    errors: list[BaseException] = []

    def seen(outcome: str, _env: Envelope | None, exc: BaseException | None) -> None:
        counts[outcome] += 1
        if exc is not None:
            errors.append(exc)

    settings = WorkerSettings(queues=names, burst=True, block_ms=100)
    worker = Worker(app, settings, on_outcome=seen)
    scheduler = Scheduler(app.store, worker.queues)
    deadline = time.monotonic() + timeout_s
    with _alarm_kept():
        worker.start()
        try:
            while True:
                scheduler.run_once(now_ms() + _FAR_FUTURE_MS)
                if _empty(app.store, worker.queues, settings.group):
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"queues {list(names)} not drained within {timeout_s}s "
                        f"(so far: {dict(counts)})"
                    )
                worker.run_once()
        finally:
            worker.shutdown()
            worker.store.client.close()
    return DrainResult(
        counts["succeeded"], counts["retry"], counts["dead"], counts["cancelled"], tuple(errors)
    )


def _empty(store: Store, queues: list[QueueKeys], group: str) -> bool:
    """Nothing queued, held by a worker, or waiting in a delayed set."""
    for keys in queues:
        stats = store.stats(keys, group)
        if stats.queued or stats.pending or stats.delayed:
            return False
    return True


@contextlib.contextmanager
def _alarm_kept() -> Iterator[None]:
    """Give back SIGALRM and its timer (pytest-timeout uses them) after the worker took them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGALRM)
    delay_s, interval_s = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, handler)
        if delay_s:
            left_s = max(delay_s - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left_s, interval_s)
