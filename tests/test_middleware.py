"""Lifecycle hooks and middleware: in-process through drain() and Worker.run(), and in pools."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

import streamq
from streamq.pool.codes import EXIT_START_FAILED
from streamq.testing import RedisServer, drain, wait_until
from tests.helpers import Pool

OBSERVED = ["--app", "tests.apps.observed:app"]


class Calls:
    """Middleware that records its calls in a shared list, under a name."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def before_job(self, job: streamq.Envelope) -> None:
        self.seen.append(f"{self.name}.before:{job.task}")

    def after_job(self, job: streamq.Envelope, outcome: streamq.Outcome) -> None:
        err = type(outcome.error).__name__ if outcome.error else "-"
        self.seen.append(f"{self.name}.after:{job.task}:{outcome.state}:{err}:{outcome.ran}")


class AsyncCalls(Calls):
    """The same, with async methods."""

    async def before_job(self, job: streamq.Envelope) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().before_job(job)

    async def after_job(  # type: ignore[override]
        self, job: streamq.Envelope, outcome: streamq.Outcome
    ) -> None:
        await asyncio.sleep(0)
        super().after_job(job, outcome)


def _tasks(app: streamq.App) -> dict[str, Any]:
    tries: dict[str, int] = {}

    @app.task
    def fine() -> None:
        pass

    @app.task(max_retries=1, backoff_base_s=0, backoff_cap_s=0)
    def once_flaky() -> None:
        tries["f"] = tries.get("f", 0) + 1
        if tries["f"] == 1:
            raise ConnectionError("first try")

    @app.task(max_retries=0)
    def broken() -> None:
        raise ValueError("broken")

    @app.task
    def stopped() -> None:
        raise streamq.Cancelled("stop")

    return {"fine": fine, "once_flaky": once_flaky, "broken": broken, "stopped": stopped}


def test_sync_and_async_middleware_wrap_every_outcome_in_order(app: streamq.App) -> None:
    """before_job runs in the order added and after_job in reverse, sync and async alike,
    with each of the four outcomes and the exception that caused it."""
    seen: list[str] = []
    app.add_middleware(Calls("outer", seen))
    app.add_middleware(AsyncCalls("inner", seen))
    tasks = _tasks(app)
    for name in ("fine", "once_flaky", "broken", "stopped"):
        tasks[name].enqueue()
        drain(app)
    assert seen == [
        "outer.before:fine",
        "inner.before:fine",
        "inner.after:fine:succeeded:-:True",
        "outer.after:fine:succeeded:-:True",
        "outer.before:once_flaky",
        "inner.before:once_flaky",
        "inner.after:once_flaky:retrying:ConnectionError:True",
        "outer.after:once_flaky:retrying:ConnectionError:True",
        "outer.before:once_flaky",
        "inner.before:once_flaky",
        "inner.after:once_flaky:succeeded:-:True",
        "outer.after:once_flaky:succeeded:-:True",
        "outer.before:broken",
        "inner.before:broken",
        "inner.after:broken:dead:ValueError:True",
        "outer.after:broken:dead:ValueError:True",
        "outer.before:stopped",
        "inner.before:stopped",
        "inner.after:stopped:cancelled:Cancelled:True",
        "outer.after:stopped:cancelled:Cancelled:True",
    ]


def test_middleware_sees_the_job_context_and_timings(app: streamq.App) -> None:
    """Inside before_job current_job() is the job; after_job gets its run and wait times."""
    got: dict[str, Any] = {}

    class Probe:
        def before_job(self, job: streamq.Envelope) -> None:
            got["current"] = streamq.current_job().id == job.id

        def after_job(self, job: streamq.Envelope, outcome: streamq.Outcome) -> None:
            got["outcome"] = outcome
            got["current_after"] = streamq.current_job().id == job.id

    @app.task
    def nap() -> None:
        import time

        time.sleep(0.05)

    app.add_middleware(Probe())
    nap.enqueue_in(0.2)
    drain(app)
    outcome: streamq.Outcome = got["outcome"]
    assert got["current"]
    assert got["current_after"]
    assert outcome.state == "succeeded"
    assert outcome.ran
    assert 0.05 <= outcome.duration_s < 1
    assert 0 <= outcome.wait_s < 5


def test_a_failing_middleware_is_logged_and_changes_no_outcome(app: streamq.App) -> None:
    """A middleware that raises gets a middleware.failed line; the job still succeeds and the
    middleware after it still runs."""
    seen: list[str] = []

    class Broken:
        def before_job(self, job: streamq.Envelope) -> None:
            raise RuntimeError("sentry is down")

    app.add_middleware(Calls("ok", seen))
    app.add_middleware(Broken())
    tasks = _tasks(app)
    job = tasks["fine"].enqueue()
    with capture_logs() as logs:
        result = drain(app)
    assert result.succeeded == 1
    assert job.status() == "succeeded"
    assert seen == ["ok.before:fine", "ok.after:fine:succeeded:-:True"]
    (line,) = [e for e in logs if e["event"] == "middleware.failed"]
    assert (line["middleware"], line["method"]) == ("Broken", "before_job")
    assert (line["error_message"], line["job_id"]) == ("sentry is down", job.id)


def test_unknown_task_and_cancel_before_start_reach_after_job_only(
    app: streamq.App, queue: str
) -> None:
    """A job that never runs (unknown task, cancelled while queued) gets after_job with
    ran=False and no before_job."""
    seen: list[str] = []
    app.add_middleware(Calls("m", seen))
    tasks = _tasks(app)
    app.enqueue("nobody_has_this", queue=queue)
    job = tasks["fine"].enqueue()
    assert job.cancel() == "cancelled"
    drain(app)
    assert seen == ["m.after:nobody_has_this:dead:-:False", "m.after:fine:cancelled:-:False"]


def test_add_middleware_refuses_an_object_without_methods(app: streamq.App) -> None:
    """Something that is not middleware is refused when added, not ignored at run time."""
    with pytest.raises(streamq.ConfigError, match="not middleware"):
        app.add_middleware(object())


def test_standalone_worker_run_calls_start_and_stop_hooks(app: streamq.App) -> None:
    """Worker.run() runs sync and async start hooks before its first job and stop hooks after."""
    order: list[str] = []

    @app.on_worker_start
    def start() -> None:
        order.append("start")

    @app.on_worker_stop
    async def stop() -> None:
        order.append("stop")

    @app.task
    def work() -> None:
        order.append("job")

    work.enqueue()
    worker = streamq.Worker(
        app, streamq.WorkerSettings(queues=(app.settings.default_queue,), burst=True)
    )
    assert worker.run() == 0
    assert order == ["start", "job", "stop"]


def test_standalone_worker_raises_when_a_start_hook_fails(app: streamq.App) -> None:
    """A failing start hook raises WorkerStartFailed naming it; no job runs."""
    ran: list[int] = []

    @app.on_worker_start
    def broken_pool() -> None:
        raise OSError("no database")

    @app.task
    def work() -> None:
        ran.append(1)

    work.enqueue()
    worker = streamq.Worker(
        app, streamq.WorkerSettings(queues=(app.settings.default_queue,), burst=True)
    )
    with pytest.raises(streamq.WorkerStartFailed, match="broken_pool") as info:
        worker.run()
    assert isinstance(info.value.__cause__, OSError)
    assert ran == []


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


@pytest.mark.slow
def test_pool_runs_hooks_in_each_worker_and_middleware_around_jobs(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Each worker process runs the start hook after the fork and before its first job, the
    stop hook when drained by SIGTERM, and sync and async middleware around every job."""
    from tests.apps import observed

    observed.app.redis_url = redis_server.url
    c = _client(redis_server)
    worker_env["SQ_MIDDLEWARE"] = "1"
    with Pool(worker_env, OBSERVED, processes=2) as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 2, 20)
        job = observed.app.enqueue("hooked", queue=queue)
        pid = job.result(timeout_s=20)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    children = set(pool.children() or [e["child_pid"] for e in pool.events("worker.spawned")])
    hooks: list[str] = c.lrange(f"sqtest:{queue}:hooks", 0, -1)  # type: ignore[assignment]
    assert sorted(h for h in hooks if h.startswith("start:")) == sorted(
        f"start:{p}" for p in children
    )
    assert sorted(h for h in hooks if h.startswith("stop:")) == sorted(
        f"stop:{p}" for p in children
    )
    assert pid in children
    assert c.lrange(f"sqtest:{queue}:mw", 0, -1) == [
        "sync.before:hooked:1",
        "async.before:hooked:1",
        "async.after:hooked:succeeded",
        "sync.after:hooked:succeeded:",
    ]


@pytest.mark.slow
def test_failing_start_hook_stops_the_pool_without_restarting(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A start hook that raises ends the pool with EXIT_START_FAILED and one clear supervisor
    line, after no restart; the job stays queued."""
    from tests.apps import observed

    observed.app.redis_url = redis_server.url
    job = observed.app.enqueue("ok", queue=queue)
    worker_env["SQ_FAIL_START_HOOK"] = "1"
    with Pool(worker_env, OBSERVED, processes=2) as pool:
        assert pool.wait(30) == EXIT_START_FAILED
    (line,) = pool.events("supervisor.start_failed")
    assert line["exit_code"] == EXIT_START_FAILED
    failed = pool.events("worker.start_failed")
    assert failed
    assert failed[0]["hook"] == "tests.apps.observed.opened"
    assert "database pool could not open" in failed[0]["error_message"]
    assert len(pool.events("worker.spawned")) == 2  # no restart
    assert not pool.events("worker.restart_delayed")
    assert job.status() == "queued"
