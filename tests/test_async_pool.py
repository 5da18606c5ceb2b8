"""Real pools of asyncio workers: concurrency, cancel, time-limit backstop, graceful stop."""

from __future__ import annotations

import signal
import time

import pytest
import redis

import streamq
from streamq.keys import QueueKeys
from streamq.settings import AppSettings
from streamq.testing import RedisServer, wait_until
from tests.helpers import Pool, runs

ASYNC_APP = "tests.apps.async_app:app"


def _pool(env: dict[str, str], *args: str, processes: int = 1) -> Pool:
    return Pool(env, ["--app", ASYNC_APP, *args], processes=processes)


def _producer(server: RedisServer, queue: str) -> streamq.App:
    return streamq.App(server.url, AppSettings(default_queue=queue))


def test_a_pool_runs_async_and_sync_jobs_of_one_queue(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """100 async 0.5 s jobs overlap (concurrency 50) and the queue's sync jobs run too."""
    app = _producer(redis_server, queue)
    naps = [app.enqueue("nap", args=[f"n{i}", 0.5]) for i in range(100)]
    crunches = [app.enqueue("crunch", args=[f"c{i}"]) for i in range(10)]
    c = redis.Redis.from_url(redis_server.url)
    with _pool(worker_env, "--concurrency", "50", "--log-jobs", "all") as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 1, 30)
        t0 = time.monotonic()
        assert [j.result(timeout_s=30) for j in naps] == [f"n{i}" for i in range(100)]
        elapsed = time.monotonic() - t0
        assert {j.result(timeout_s=30) for j in crunches} == set(pool.children())
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    counts = runs(c, queue)
    assert all(counts[f"n{i}"] == 1 for i in range(100))
    assert elapsed < 10, f"100 x 0.5 s took {elapsed:.1f} s: jobs did not overlap"
    assert pool.events("worker.started")[0]["loop"] == "asyncio"


def test_cancel_of_a_running_async_job(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """cancel() stops the running asyncio task: cancelled, not retried, neighbours finish."""
    app = _producer(redis_server, queue)
    jobs = [app.enqueue("nap", args=[f"w{i}", 3.0]) for i in range(5)]
    c = redis.Redis.from_url(redis_server.url)
    with _pool(worker_env, "--concurrency", "20") as pool:
        wait_until(lambda: all(runs(c, queue).get(f"w{i}:started") for i in range(5)), 30)
        assert jobs[2].cancel() == "cancelling"
        wait_until(lambda: jobs[2].status() == "cancelled", 10)
        assert [jobs[i].result(timeout_s=30) for i in (0, 1, 3, 4)] == ["w0", "w1", "w3", "w4"]
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    assert "w2" not in runs(c, queue)
    assert not pool.events("worker.exited") or all(
        e["exit_code"] == 0 for e in pool.events("worker.exited")
    )
    assert c.zcard(QueueKeys(queue).delayed) == 0  # not retried


@pytest.mark.slow
def test_a_blocked_loop_is_named_and_killed_at_the_time_limit(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Sync code in an async task holds the loop past its limit: the child logs which task
    blocked it, the supervisor kills it, and the job is recorded as timed out."""
    app = _producer(redis_server, queue)
    job = app.enqueue("hog", args=["h", 30])
    with _pool(worker_env, "--concurrency", "20") as pool:
        blocked = wait_until(lambda: pool.events("worker.loop_blocked"), 30)
        assert blocked[0]["task"] == "hog"
        assert blocked[0]["job_id"] == job.id
        wait_until(lambda: job.status() == "dead", 30)
        assert pool.events("job.timed_out")[0]["job_id"] == job.id
        assert job.info().error_type == "TimeLimitExceeded"
        wait_until(lambda: len(pool.events("worker.started")) == 2, 30)  # replaced
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0


@pytest.mark.slow
def test_sigterm_lets_async_jobs_finish_then_hands_back_the_rest(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Within the grace running jobs finish and are acked; past it they are cancelled and
    their entries handed back, and the pool still exits 0."""
    app = _producer(redis_server, queue)
    short = [app.enqueue("nap", args=[f"s{i}", 1.0]) for i in range(10)]
    long = [app.enqueue("nap", args=[f"l{i}", 60]) for i in range(5)]
    c = redis.Redis.from_url(redis_server.url)
    with _pool(worker_env, "--concurrency", "20", "--grace-s", "4") as pool:
        wait_until(lambda: len([k for k in runs(c, queue) if k.endswith(":started")]) == 15, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    assert [j.result(timeout_s=1) for j in short] == [f"s{i}" for i in range(10)]
    stats = app.store.stats(QueueKeys(queue), "default")
    assert (stats.queued, stats.pending, stats.consumers) == (5, 0, {})
    assert {j.status() for j in long} <= {"queued", "running"}  # handed back, not failed
    assert pool.events("worker.stopped")[0]["released"] == 5
