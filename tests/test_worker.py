"""One worker's loop, in process: outcomes of jobs and of bad entries, recorded in Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import pytest

import streamq
from streamq import codec
from streamq.keys import QueueKeys
from streamq.scripts import Finished, RetryRow
from streamq.settings import WorkerSettings
from streamq.testing import wait_until


def make_worker(app: streamq.App, queue: str, **kw: Any) -> streamq.Worker:
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=20, **kw))
    w.start()
    return w


def drain(worker: streamq.Worker, app: streamq.App, queue: str, timeout_s: float = 10) -> None:
    """Run steps (promoting delayed jobs as a scheduler would) until nothing is left."""
    keys = QueueKeys(queue)

    def step() -> bool:
        app.store.promote_due(keys, 2**62)
        worker.run_once()
        s = app.store.stats(keys, "default")
        return s.queued == 0 and s.pending == 0 and s.delayed == 0

    wait_until(step, timeout_s, interval_s=0)


def test_success_is_acked_and_deleted(app: streamq.App, queue: str) -> None:
    """A job that returns is run once with its arguments, then acked and gone from the stream."""
    seen: list[tuple[Any, ...]] = []

    @app.task
    def add(a: int, b: int, *, c: int = 0) -> int:
        seen.append((a, b, c))
        return a + b + c

    add.enqueue(1, 2, c=3)
    w = make_worker(app, queue)
    drain(w, app, queue)
    assert seen == [(1, 2, 3)]
    keys = QueueKeys(queue)
    assert app.client().xlen(keys.stream) == 0
    assert app.client().xpending(keys.stream, "default")["pending"] == 0


def test_fails_twice_then_succeeds_runs_three_times(app: streamq.App, queue: str) -> None:
    """Retries go through the delayed set and the attempt number grows by one each time."""
    attempts: list[int] = []

    @app.task(max_retries=3, backoff_base_s=0, backoff_cap_s=0)
    def flaky() -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    flaky.enqueue()
    drain(make_worker(app, queue), app, queue)
    assert attempts == [1, 2, 3]
    assert app.client().xlen(QueueKeys(queue).dead) == 0


def test_always_failing_job_runs_max_retries_plus_one_then_dead(
    app: streamq.App, queue: str
) -> None:
    """max_retries=2 means exactly 3 executions, then a dead letter with its traceback."""
    runs: list[int] = []

    @app.task(max_retries=2, backoff_base_s=0.001, backoff_cap_s=0.002)
    def doomed(x: int) -> None:
        runs.append(x)
        raise ValueError("bad value")

    job = doomed.enqueue(7)
    drain(make_worker(app, queue), app, queue)
    assert runs == [7, 7, 7]
    (dead,) = streamq.DeadLetters(app.store, queue).list()
    assert dead.reason == "max_retries"
    assert dead.job_id == job.id
    assert dead.task == "doomed"
    assert dead.attempts == 3
    assert dead.error_type == "ValueError"
    assert "bad value" in dead.error_message
    assert 'raise ValueError("bad value")' in dead.traceback


def test_per_enqueue_override_of_max_retries(app: streamq.App, queue: str) -> None:
    """with_options(max_retries=0) dead-letters after the first failure."""
    runs: list[int] = []

    @app.task(max_retries=5)
    def fails() -> None:
        runs.append(1)
        raise RuntimeError("x")

    fails.with_options(max_retries=0).enqueue()
    drain(make_worker(app, queue), app, queue)
    assert runs == [1]


def test_retry_on_limits_which_errors_retry(app: streamq.App, queue: str) -> None:
    """An exception outside retry_on goes straight to dead letters as not_retryable."""

    @app.task(retry_on=(ConnectionError,))
    def strict() -> None:
        raise KeyError("nope")

    strict.enqueue()
    drain(make_worker(app, queue), app, queue)
    (dead,) = streamq.DeadLetters(app.store, queue).list()
    assert dead.reason == "not_retryable"
    assert dead.attempts == 1


def test_retry_exception_asks_for_a_specific_delay(app: streamq.App, queue: str) -> None:
    """raise Retry(delay_s=...) schedules the next attempt that far ahead."""

    @app.task(max_retries=1)
    def later() -> None:
        raise streamq.Retry(delay_s=60)

    later.enqueue()
    w = make_worker(app, queue)
    wait_until(lambda: (w.run_once(), app.client().zcard(QueueKeys(queue).delayed))[1], 5)
    scored: Any = app.client().zrange(QueueKeys(queue).delayed, 0, -1, withscores=True)
    ((_, score),) = scored
    assert 59_000 < score - streamq.clock.now_ms() <= 60_000


def test_unknown_task_is_dead_lettered_not_run(app: streamq.App, queue: str) -> None:
    """A job naming no registered task is buried with reason unknown_task; nothing imports it."""
    app.enqueue("os.system", args=["echo pwned"], queue=queue)
    drain(make_worker(app, queue), app, queue)
    (dead,) = streamq.DeadLetters(app.store, queue).list()
    assert dead.reason == "unknown_task"
    assert dead.task == "os.system"


def test_garbage_entries_are_dead_lettered_between_good_jobs(app: streamq.App, queue: str) -> None:
    """Junk written straight into the stream is buried with a reason; good jobs still run."""
    done: list[int] = []

    @app.task
    def good(i: int) -> None:
        done.append(i)

    keys = QueueKeys(queue)
    r = app.client()
    good.enqueue(0)
    r.xadd(keys.stream, {b"j": b"\xc1\xc1 not msgpack"})
    good.enqueue(1)
    r.xadd(keys.stream, {b"j": msgpack.packb(["a", "list"])})
    r.xadd(keys.stream, {b"other": b"field"})
    r.xadd(keys.stream, {b"j": msgpack.packb({"v": 1, "id": "x"})})
    r.xadd(keys.stream, {b"j": b"\x00" * (5 * 1024 * 1024)})
    env = app.envelope("nobody", queue=queue)
    r.xadd(keys.stream, {b"j": codec.encode(env)})
    good.enqueue(2)
    drain(make_worker(app, queue), app, queue)
    assert sorted(done) == [0, 1, 2]
    reasons = sorted(d.reason for d in streamq.DeadLetters(app.store, queue).list())
    assert reasons == [
        "malformed_entry",
        "too_large",
        "undecodable",
        "unknown_task",
        "wrong_shape",
        "wrong_shape",
    ]
    big = [d for d in streamq.DeadLetters(app.store, queue).list() if d.reason == "too_large"]
    assert len(big[0].payload) == 5 * 1024 * 1024  # kept as it was


def test_lease_lost_result_is_not_recorded_twice(app: streamq.App, queue: str) -> None:
    """If the reaper took an entry back meanwhile, the ack is a no-op and nothing duplicates."""
    keys = QueueKeys(queue)

    @app.task
    def slow() -> None:
        # Simulate the reaper acting while we run: requeue our entry under a new id.
        app.store.reclaim_idle(keys, keys.stream, "default", 0, b"0-0", 10, 5, 0)

    slow.enqueue()
    w = make_worker(app, queue)
    wait_until(w.run_once, 5)
    # Our ack found nothing pending; the reclaimed copy is the only one left, and it is queued.
    s = app.store.stats(keys, "default")
    assert (s.queued, s.pending) == (1, 0)
    assert app.client().xlen(keys.stream) == 1


def test_stop_releases_prefetched_entries(app: streamq.App, queue: str) -> None:
    """Entries read but not started go back to the stream at once on shutdown."""
    ran: list[int] = []
    holder: dict[str, streamq.Worker] = {}

    @app.task
    def first(i: int) -> None:
        ran.append(i)
        holder["w"]._stopping = True  # as SIGTERM would, mid-batch

    for i in range(10):
        first.enqueue(i)
    w = make_worker(app, queue, max_batch=10)
    w._count = 10
    holder["w"] = w
    w.run_once()
    w.shutdown()
    assert ran == [0]
    keys = QueueKeys(queue)
    s = app.store.stats(keys, "default")
    assert (s.queued, s.pending) == (9, 0)
    assert w.consumer not in s.consumers  # left the group cleanly


@pytest.mark.parametrize("count", [1, 7])
def test_results_are_acked_in_batches(app: streamq.App, queue: str, count: int) -> None:
    """A batch of fast jobs is acknowledged by one script call, not one per job."""

    @app.task
    def noop() -> None:
        return None

    app.enqueue_many([noop.prepare() for _ in range(count)])
    w = make_worker(app, queue)
    w._count = count
    calls: list[int] = []
    real_ack = w.store.ack

    def counting_ack(
        keys: QueueKeys,
        priority: int,
        group: str,
        now_ms: int,
        done: Sequence[Finished],
        retries: Sequence[RetryRow] = (),
    ) -> tuple[int, int]:
        calls.append(len(done))
        return real_ack(keys, priority, group, now_ms, done, retries)

    w.store.ack = counting_ack  # type: ignore[method-assign]
    assert w.run_once() == count
    assert calls == [count]
