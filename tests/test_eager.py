"""Eager mode: enqueue runs the job inline, with a real job context and the worker's rules.

The App here points at a port nothing listens on, so any Redis call would raise: these tests
also prove that eager mode never talks to Redis.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import streamq
from streamq.errors import EnqueueError, JobFailed, Retry, TimeLimitExceeded
from streamq.job import Envelope
from streamq.policy import Bury, RetryLater, on_failure, result_bytes
from streamq.settings import TaskOptions
from streamq.testing import wait_until

NOWHERE = "redis://127.0.0.1:1/0"


@pytest.fixture
def app() -> streamq.App:
    """An App whose Redis does not exist."""
    return streamq.App(NOWHERE)


def test_enqueue_runs_the_task_inline_with_a_job_context(app: streamq.App) -> None:
    """In a block, enqueue returns a finished job; current_job() and progress work."""
    seen: list[tuple[str, int]] = []

    @app.task
    def add(a: int, b: int) -> int:
        job = streamq.current_job()
        seen.append((job.id, job.attempt))
        job.set_progress(0.5, "halfway")
        return a + b

    with app.eager():
        job = add.enqueue(2, 3)
    assert job.status() == "succeeded"
    assert job.result() == 5
    assert seen == [(job.id, 1)]
    info = job.info()
    assert (info.progress, info.note, info.worker, info.attempt) == (0.5, "halfway", "eager", 1)
    assert info.started_ms is not None
    assert info.finished_ms is not None


def test_outside_a_block_enqueue_goes_to_redis(app: streamq.App) -> None:
    """The default is unchanged: without eager mode the enqueue needs Redis (here, absent)."""

    @app.task
    def noop() -> None:
        pass

    with app.eager():
        noop.enqueue()
    with pytest.raises(EnqueueError):
        noop.enqueue()


def test_app_eager_true_runs_every_enqueue_inline() -> None:
    """App(eager=True) needs no block, and app.job() handles read the in-memory records."""
    app = streamq.App(NOWHERE, eager=True)

    @app.task
    def double(x: int) -> int:
        return x * 2

    job = double.enqueue(21)
    assert app.job(job.id).result() == 42
    assert app.enqueue("double", [4]).result() == 8


def test_failures_retry_inline_without_backoff_then_dead(app: streamq.App) -> None:
    """A failing task runs max_retries + 1 times at once (no 100 s backoff), then reads dead."""
    attempts: list[int] = []

    @app.task(max_retries=2, backoff_base_s=100, backoff_cap_s=100)
    def flaky() -> None:
        attempts.append(streamq.current_job().attempt)
        raise ConnectionError("backend down")

    started = time.monotonic()
    with app.eager():
        job = flaky.enqueue()
    assert time.monotonic() - started < 5
    assert attempts == [1, 2, 3]
    info = job.info()
    assert (info.status, info.reason, info.error_type) == ("dead", "max_retries", "ConnectionError")
    assert "backend down" in info.traceback
    with pytest.raises(JobFailed) as failed:
        job.result()
    assert failed.value.error_message == "backend down"


def test_retry_then_success_and_retry_delay_is_not_waited(app: streamq.App) -> None:
    """Retry(delay_s=60) runs the next attempt at once; it may then succeed."""

    @app.task
    def once_more() -> str:
        if streamq.current_job().attempt == 1:
            raise Retry(delay_s=60)
        return "done"

    with app.eager():
        job = once_more.enqueue()
    assert job.result() == "done"
    assert job.info().attempt == 2
    assert job.info().error_type == "Retry"  # the last failure stays on the record, as for real


def test_not_retryable_errors_die_at_once(app: streamq.App) -> None:
    """An exception outside retry_on ends the job after one attempt, reason not_retryable."""
    runs: list[int] = []

    @app.task(retry_on=(ConnectionError,))
    def strict() -> None:
        runs.append(1)
        raise KeyError("nope")

    with app.eager():
        job = strict.enqueue()
    assert runs == [1]
    assert (job.status(), job.info().reason) == ("dead", "not_retryable")


def test_propagate_raises_what_killed_the_job(app: streamq.App) -> None:
    """With propagate=True the final exception leaves enqueue; retries still ran first."""
    runs: list[int] = []

    @app.task(max_retries=1)
    def broken() -> None:
        runs.append(1)
        raise ValueError("bad input")

    with app.eager(propagate=True), pytest.raises(ValueError, match="bad input"):
        broken.enqueue()
    assert len(runs) == 2
    with app.eager(propagate=True), pytest.raises(JobFailed, match="unknown_task"):
        app.enqueue("no_such_task")


def test_arguments_and_results_go_through_the_codec(app: streamq.App) -> None:
    """An argument msgpack cannot carry fails the enqueue; results come back as decoded."""
    runs: list[int] = []

    @app.task
    def pair(x: object) -> object:
        runs.append(1)
        return (x, x) if x != "object" else object()

    with app.eager():
        with pytest.raises(EnqueueError, match="cannot encode"):
            pair.enqueue(datetime.now())  # naive datetime: refused for real too
        assert runs == []
        assert pair.enqueue(1).result() == [1, 1]  # a tuple comes back a list, as from Redis
        unencodable = pair.enqueue("object")
    assert unencodable.status() == "succeeded"  # as a worker: logged, no result stored
    assert unencodable.result() is None


def test_delayed_jobs_run_at_once(app: streamq.App) -> None:
    """enqueue_in and enqueue_at run now; the handle and record keep the asked due time."""

    @app.task
    def later(x: int) -> int:
        return x

    when = datetime.now(UTC) + timedelta(hours=1)
    with app.eager():
        a = later.enqueue_in(3600, 1)
        b = later.enqueue_at(when, 2)
    assert (a.result(), b.result()) == (1, 2)
    assert b.due_ms == int(when.timestamp() * 1000)
    assert b.info().due_ms == b.due_ms


def test_blocks_nest_and_restore_on_exceptions(app: streamq.App) -> None:
    """The innermost block decides; leaving a block, even by an exception, restores the outer."""

    @app.task(max_retries=0)
    def fail() -> None:
        raise OSError("x")

    def propagating() -> None:
        with app.eager(propagate=True):
            with pytest.raises(OSError, match="x"):
                fail.enqueue()
            raise RuntimeError("leave the block")

    with app.eager():
        with pytest.raises(RuntimeError):
            propagating()
        assert fail.enqueue().status() == "dead"  # propagate is off again
    with pytest.raises(EnqueueError):
        fail.enqueue()


def test_eager_mode_covers_other_threads(app: streamq.App) -> None:
    """A block turned on in the test's thread applies to enqueues from another thread."""

    @app.task
    def square(x: int) -> int:
        return x * x

    got: list[object] = []
    with app.eager():
        t = threading.Thread(target=lambda: got.append(square.enqueue(3).result()))
        t.start()
        t.join(timeout=10)
    assert got == [9]


def test_by_name_bulk_untracked_and_unknown_tasks(app: streamq.App) -> None:
    """enqueue by name, enqueue_many, track=False and unknown task names behave as for real."""
    runs: list[str] = []

    @app.task
    def note(x: str) -> str:
        runs.append(x)
        return x

    @app.task(track=False)
    def fire(x: str) -> None:
        streamq.current_job().set_progress(1.0)  # a no-op without a record
        runs.append(x)

    with app.eager():
        jobs = app.enqueue_many([note.prepare("a"), note.prepare("b"), fire.prepare("c")])
        missing = app.enqueue("nobody")
    assert runs == ["a", "b", "c"]
    assert [j.status() for j in jobs] == ["succeeded", "succeeded", "unknown"]
    assert (missing.status(), missing.info().reason) == ("dead", "unknown_task")


def test_job_ids_deduplicate_as_for_real(app: streamq.App) -> None:
    """A job_id within unique_for_s is not enqueued twice; without a window it may rerun."""
    runs: list[int] = []

    @app.task
    def once(x: int) -> None:
        runs.append(x)

    with app.eager():
        first = once.with_options(job_id="j1", unique_for_s=60).enqueue(1)
        second = once.with_options(job_id="j1", unique_for_s=60).enqueue(2)
        again = once.with_options(job_id="j1").enqueue(3)  # finished and no window: new run
    assert (first.created, second.created, again.created) == (True, False, True)
    assert runs == [1, 3]


def test_cancel_asked_while_running_ends_the_job_instead_of_a_retry(app: streamq.App) -> None:
    """cancel() of a running job says cancelling; its failure then ends it cancelled."""
    answers: list[str] = []

    @app.task(max_retries=3)
    def self_cancel() -> None:
        answers.append(app.job(streamq.current_job().id).cancel())
        raise RuntimeError("stopping")

    with app.eager():
        job = self_cancel.enqueue()
    assert answers == ["cancelling"]
    assert job.status() == "cancelled"
    assert job.cancel() == "cancelled"  # a final state is what cancel() answers
    with pytest.raises(JobFailed, match="cancelled"):
        job.result()


def test_records_expire_like_redis_records(app: streamq.App) -> None:
    """A finished job's record lives its result_ttl_s, then the job reads unknown."""

    @app.task(result_ttl_s=0.05)
    def short() -> int:
        return 1

    with app.eager():
        job = short.enqueue()
    assert job.status() == "succeeded"
    wait_until(lambda: job.status() == "unknown", timeout_s=5, what="record expired")


def _env(attempt: int, **kw: Any) -> Envelope:
    return Envelope("id1", "t", "q", attempt=attempt, **kw)


def test_failure_policy_decides_retry_or_bury_with_reasons() -> None:
    """One rule for worker and eager mode: reasons, delays and the next attempt's payload."""
    opts = TaskOptions(queue="q", max_retries=1, retry_on=(OSError,))
    rng = random.Random(1)
    retry = on_failure(_env(1), opts, OSError("x"), 1 << 20, rng)
    assert isinstance(retry, RetryLater)
    assert (retry.reason, 0 <= retry.delay_ms <= 1000) == ("error", True)
    last = OSError("x")
    assert on_failure(_env(2), opts, last, 1 << 20, rng) == Bury("max_retries", last)
    assert on_failure(_env(1), opts, Retry(delay_s=7), 1 << 20, rng)[0] == 7000
    assert on_failure(_env(1), opts, KeyError(), 1 << 20, rng).reason == "not_retryable"
    timeout = on_failure(_env(2), opts, TimeLimitExceeded(), 1 << 20, rng)
    assert isinstance(timeout, Bury)
    assert timeout.reason == "timeout"
    too_big = on_failure(_env(1, args=["x" * 100]), opts, OSError(), 50, rng)
    assert isinstance(too_big, Bury)
    assert too_big.reason == "unencodable_retry"


def test_result_bytes_skips_none_untracked_and_unencodable() -> None:
    """What a run stores as its result, the same for the worker and eager mode."""
    opts = TaskOptions(queue="q")
    assert result_bytes(None, opts, True) == (b"", "")
    assert result_bytes(1, opts, False) == (b"", "")
    assert result_bytes(1, TaskOptions(queue="q", result_ttl_s=0), True) == (b"", "")
    assert result_bytes(1, opts, True)[0] != b""
    assert result_bytes(object(), opts, True)[1] != ""
