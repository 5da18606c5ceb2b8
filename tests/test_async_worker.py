"""The asyncio worker in process: concurrency, priorities, outcomes, limits, cancel, stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

import streamq
from streamq.keys import QueueKeys
from streamq.settings import WorkerSettings
from streamq.testing import drain, wait_until
from streamq.worker.aloop import AsyncWorker
from streamq.worker.slots import Slots
from tests.helpers import entries


def settings(queue: str, **kw: Any) -> WorkerSettings:
    return WorkerSettings(queues=(queue,), block_ms=50, **kw)


def burst(app: streamq.App, queue: str, timeout_s: float = 20, **kw: Any) -> AsyncWorker:
    """Run an asyncio worker in burst mode until the queue is empty; return it."""
    kw.setdefault("burst_horizon_ms", 0)
    worker = AsyncWorker(app, settings(queue, burst=True, **kw))
    asyncio.run(asyncio.wait_for(worker.run(), timeout_s))
    return worker


def result(handle: Any) -> Any:
    """A finished job's result (async tasks are typed by the producer branch; Any here)."""
    return handle.result(timeout_s=1)


def state(app: streamq.App, queue: str, job_id: str) -> str:
    return app.store.job_record(QueueKeys(queue), job_id).get("state", b"").decode()


class Background:
    """An asyncio worker on a thread of its own, stopped (with its grace) on exit."""

    def __init__(self, worker: AsyncWorker) -> None:
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        self.code = self.loop.run_until_complete(self.worker.run())
        self.loop.close()

    def call(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.call(self.worker.stop)
        self.thread.join(30)


def test_async_jobs_run_concurrently_up_to_the_limit(app: streamq.App, queue: str) -> None:
    """Twenty 0.3 s async jobs with concurrency 10 take about two rounds, never more than 10
    at once, and every one is acknowledged."""
    live, peak = [0], [0]

    @app.task
    async def nap(i: int) -> int:
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        await asyncio.sleep(0.3)
        live[0] -= 1
        return i

    handles = [nap.enqueue(i) for i in range(20)]
    t0 = time.monotonic()
    worker = burst(app, queue, concurrency=10)
    elapsed = time.monotonic() - t0
    assert worker.processed == 20
    assert peak[0] == 10
    assert elapsed < 3.0, f"took {elapsed:.2f} s: jobs did not overlap"
    assert [result(h) for h in handles] == list(range(20))
    stats = app.store.stats(QueueKeys(queue), "default")
    assert (stats.queued, stats.pending) == (0, 0)


def test_current_job_is_per_asyncio_task(app: streamq.App, queue: str) -> None:
    """Each of many overlapping jobs sees its own id through current_job()."""

    @app.task
    async def whoami() -> str:
        before = streamq.current_job().id
        await asyncio.sleep(0.05)
        assert streamq.current_job().id == before
        return before

    handles = [whoami.enqueue() for _ in range(30)]
    burst(app, queue, concurrency=30)
    assert [result(h) for h in handles] == [h.id for h in handles]


def test_failures_retry_then_dead_letter(app: streamq.App, queue: str) -> None:
    """Async failures follow the sync policy: retried with backoff, then buried (max_retries)."""
    tries: dict[str, int] = {}

    @app.task(max_retries=2, backoff_base_s=0, backoff_cap_s=0)
    async def flaky(tag: str, failures: int) -> str:
        tries[tag] = tries.get(tag, 0) + 1
        await asyncio.sleep(0)
        if tries[tag] <= failures:
            raise RuntimeError(f"failure {tries[tag]}")
        return tag

    ok = flaky.enqueue("ok", 2)
    bad = flaky.enqueue("bad", 5)
    burst(app, queue, concurrency=5, burst_horizon_ms=2000)
    assert result(ok) == "ok"
    assert tries == {"ok": 3, "bad": 3}
    assert state(app, queue, bad.id) == "dead"
    dead = entries(app.client(), QueueKeys(queue).dead)
    assert [f[b"reason"] for _, f in dead] == [b"max_retries"]


def test_time_limit_cancels_the_asyncio_task(app: streamq.App, queue: str) -> None:
    """A job past its timeout_s is stopped by asyncio, recorded as TimeLimitExceeded."""
    finished: list[str] = []

    @app.task(timeout_s=0.2, max_retries=0)
    async def slow() -> None:
        await asyncio.sleep(10)
        finished.append("slow")

    handle = slow.enqueue()
    t0 = time.monotonic()
    burst(app, queue, concurrency=2)
    assert time.monotonic() - t0 < 5
    assert finished == []
    info = handle.info()
    assert (info.status, info.error_type) == ("dead", "TimeLimitExceeded")


def test_priority_order_when_a_slot_frees(app: streamq.App, queue: str) -> None:
    """With one slot busy and low-priority work prefetched, a high job that arrives later
    starts first when the slot frees."""
    order: list[str] = []
    gate = threading.Event()

    @app.task
    async def blocker() -> None:
        while not gate.is_set():
            await asyncio.sleep(0.01)

    @app.task
    async def mark(tag: str) -> None:
        order.append(tag)

    blocker.enqueue()
    worker = AsyncWorker(app, settings(queue, concurrency=1, prefetch=1))
    with Background(worker):
        wait_until(lambda: bool(worker._runs), 10, what="blocker running")
        mark.with_options(priority="low").enqueue("low1")
        wait_until(lambda: len(worker._ready) == 1, 10, what="low job prefetched")
        mark.with_options(priority="low").enqueue("low2")
        mark.with_options(priority="high").enqueue("high")
        gate.set()
        wait_until(lambda: len(order) == 3, 10)
    assert order[0] == "high", order


def test_mixed_queue_runs_sync_tasks_on_one_thread(app: streamq.App, queue: str) -> None:
    """Sync and async tasks share a queue: sync ones run one at a time off the loop, with
    their own time limit, while async ones keep running."""
    threads: set[str] = set()
    sync_live, sync_peak = [0], [0]

    @app.task
    def crunch(n: int) -> int:
        threads.add(threading.current_thread().name)
        sync_live[0] += 1
        sync_peak[0] = max(sync_peak[0], sync_live[0])
        time.sleep(0.05)
        sync_live[0] -= 1
        return streamq.current_job().attempt + n

    @app.task(timeout_s=0.2, max_retries=0)
    def spin() -> None:
        while True:
            pass

    @app.task
    async def nap(i: int) -> int:
        await asyncio.sleep(0.05)
        return i

    sync = [crunch.enqueue(i) for i in range(5)]
    spinner = spin.enqueue()
    asyncs = [nap.enqueue(i) for i in range(20)]
    burst(app, queue, concurrency=10)
    assert [result(h) for h in sync] == list(range(1, 6))  # attempt 1 + n
    assert [result(h) for h in asyncs] == list(range(20))
    assert threads
    assert all(t.startswith("streamq-sync") for t in threads)
    assert sync_peak[0] == 1
    assert (spinner.info().status, spinner.info().error_type) == ("dead", "TimeLimitExceeded")


def test_cancel_signal_cancels_the_named_asyncio_task(app: streamq.App, queue: str) -> None:
    """The supervisor's cancel (slot target + SIGUSR1) stops the right job: it ends
    cancelled, is not retried, and its neighbours finish."""
    started: set[str] = set()

    @app.task
    async def wait(tag: str) -> str:
        started.add(tag)
        await asyncio.sleep(1.0)
        return tag

    handles = {t: wait.enqueue(t) for t in ("a", "b", "c")}
    slots = Slots(3)
    worker = AsyncWorker(app, settings(queue, concurrency=3), slots=slots)
    with Background(worker) as bg:
        wait_until(lambda: len(started) == 3, 10)
        target = handles["b"].id
        seat = next(i for i in range(3) if (r := slots.get(i)) and r.job_id == target)
        slots.request_cancel(seat, target)
        bg.call(worker.on_cancel_signal)
        wait_until(lambda: state(app, queue, target) == "cancelled", 5)
        wait_until(lambda: worker.processed == 3, 5)
    assert result(handles["a"]) == "a"
    assert result(handles["c"]) == "c"
    assert handles["b"].info().attempt == 1
    assert app.client().zcard(QueueKeys(queue).delayed) == 0


def test_stop_lets_jobs_finish_then_hands_back_the_rest(app: streamq.App, queue: str) -> None:
    """On stop, a job that ends within the grace is recorded; one that does not is cancelled
    and its entry handed back (not run to completion, not counted as a failure)."""
    started: list[str] = []

    @app.task
    async def work(tag: str, seconds: float) -> str:
        started.append(tag)
        await asyncio.sleep(seconds)
        return tag

    quick = work.enqueue("quick", 0.2)
    slow = work.enqueue("slow", 30)
    worker = AsyncWorker(app, settings(queue, concurrency=2), grace_s=1.0)
    with Background(worker) as bg:
        wait_until(lambda: len(started) == 2, 10)
        t0 = time.monotonic()
        bg.call(worker.stop)
        bg.thread.join(10)
    assert time.monotonic() - t0 < 5
    assert result(quick) == "quick"
    keys = QueueKeys(queue)
    stats = app.store.stats(keys, "default")
    assert (stats.queued, stats.pending, stats.consumers) == (1, 0, {})
    assert app.client().xlen(keys.dead) == 0
    assert slow.info().status != "dead"


def test_a_blocked_loop_is_reported_with_the_task(app: streamq.App, queue: str) -> None:
    """Sync code inside an async task stalls the loop: the watchdog names the task."""

    @app.task
    async def hog() -> None:
        time.sleep(1.6)

    hog.enqueue()
    with capture_logs() as logs:
        burst(app, queue, concurrency=2)
    blocked = [e for e in logs if e["event"] == "worker.loop_blocked"]
    assert blocked
    assert blocked[0]["task"] == "hog"
    assert any(e["event"] == "worker.loop_unblocked" for e in logs)


def test_concurrency_must_be_positive() -> None:
    """A worker with no slots could never run anything: refused at once."""
    with pytest.raises(streamq.ConfigError, match="concurrency"):
        WorkerSettings(concurrency=0)


def test_drain_runs_async_tasks_in_process(app: streamq.App, queue: str) -> None:
    """streamq.testing.drain (a sync in-process worker) awaits async tasks one at a time."""

    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    handle = double.enqueue(21)
    result_ = drain(app)
    assert result_.succeeded == 1
    assert result(handle) == 42


def test_hooks_and_middleware_run_in_the_asyncio_worker(app: streamq.App, queue: str) -> None:
    """Start and stop hooks (sync and async) run once around the asyncio worker's jobs, and
    middleware (sync and async methods) sees every job before it runs and its outcome after."""
    seen: list[tuple[str, str]] = []

    @app.on_worker_start
    async def opened() -> None:
        seen.append(("start", ""))

    @app.on_worker_stop
    def closed() -> None:
        seen.append(("stop", ""))

    class Watch:
        def before_job(self, job: streamq.Envelope) -> None:
            seen.append(("before", job.args[0]))

        async def after_job(self, job: streamq.Envelope, outcome: streamq.Outcome) -> None:
            seen.append((outcome.state, job.args[0]))

    app.add_middleware(Watch())

    @app.task(max_retries=0)
    async def echo(word: str) -> str:
        if word == "boom":
            raise ValueError(word)
        return word

    echo.enqueue("hi")
    echo.enqueue("boom")
    burst(app, queue)
    assert seen[0] == ("start", "")
    assert seen[-1] == ("stop", "")
    middle = seen[1:-1]
    assert sorted(middle) == sorted(
        [("before", "hi"), ("succeeded", "hi"), ("before", "boom"), ("dead", "boom")]
    )
    assert middle.index(("before", "hi")) < middle.index(("succeeded", "hi"))
    assert middle.index(("before", "boom")) < middle.index(("dead", "boom"))


def test_a_failing_start_hook_stops_the_asyncio_worker_before_any_job(
    app: streamq.App, queue: str
) -> None:
    """A start hook that raises ends the asyncio worker with WorkerStartFailed; no job ran."""
    ran: list[int] = []

    @app.on_worker_start
    async def broken() -> None:
        raise RuntimeError("no database")

    @app.task
    async def work(n: int) -> None:
        ran.append(n)

    work.enqueue(1)
    with pytest.raises(streamq.WorkerStartFailed):
        burst(app, queue)
    assert ran == []
