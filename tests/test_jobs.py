"""Results, status, progress, priorities, cancellation, time limits and unique jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
import redis

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.keys import QueueKeys
from streamq.settings import WorkerSettings
from streamq.store import NewJob
from streamq.testing import RedisServer, wait_until
from streamq.upkeep.reaper import Reaper
from tests.apps import sample
from tests.helpers import ROOT, Pool, runs


def worker(app: streamq.App, queue: str, **kw: Any) -> streamq.Worker:
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=10, **kw))
    w.start()
    return w


def drain(w: streamq.Worker) -> None:
    while w.run_once():
        pass


def test_result_round_trip_and_expiry(app: streamq.App, queue: str) -> None:
    """A return value comes back typed through job.result(); it expires after result_ttl_s."""

    @app.task
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    @app.task(result_ttl_s=0.2)
    def brief() -> str:
        return "gone soon"

    job = add.enqueue(2, 3)
    short = brief.enqueue()
    drain(worker(app, queue))
    value: dict[str, int] = job.result(timeout_s=5)
    assert value == {"sum": 5}
    assert short.result(timeout_s=5) == "gone soon"
    wait_until(lambda: short.status() == "unknown", 5)
    assert job.status() == "succeeded"


def test_result_waits_without_polling_and_times_out(app: streamq.App, queue: str) -> None:
    """result() blocks on pub/sub until the job ends, and raises ResultTimeout when it does not."""

    @app.task
    def triple(x: int) -> int:
        return 3 * x

    job = triple.enqueue(7)
    with pytest.raises(streamq.ResultTimeout):
        job.result(timeout_s=0.2)
    w = worker(app, queue)
    timer = threading.Timer(0.3, lambda: drain(w))
    timer.start()
    started = time.monotonic()
    assert job.result(timeout_s=10) == 21
    assert time.monotonic() - started < 5
    timer.join()


def test_job_failed_carries_the_remote_error(app: streamq.App, queue: str) -> None:
    """A dead job's result() raises JobFailed with the remote type, message and traceback."""

    @app.task(max_retries=0)
    def boom() -> None:
        raise ZeroDivisionError("no luck")

    job = boom.enqueue()
    drain(worker(app, queue))
    with pytest.raises(streamq.JobFailed) as info:
        job.result(timeout_s=5)
    err = info.value
    assert (err.state, err.reason, err.error_type) == ("dead", "max_retries", "ZeroDivisionError")
    assert err.error_message == "no luck"
    assert 'raise ZeroDivisionError("no luck")' in err.traceback


def test_status_through_every_stage(app: streamq.App, queue: str) -> None:
    """scheduled -> queued -> running -> retrying -> succeeded, and dead, at each moment."""
    seen: dict[str, str] = {}

    @app.task(max_retries=1, backoff_base_s=60, backoff_cap_s=60)
    def staged(tag: str) -> None:
        me = streamq.current_job()
        seen[f"{tag}:{me.attempt}"] = app.job(me.id).status()
        if tag == "dies":
            raise RuntimeError("always fails")
        if me.attempt == 1:
            raise streamq.Retry(delay_s=1.0, reason="first attempt fails")

    later = staged.enqueue_in(60, "later")
    assert later.status() == "scheduled"
    job = staged.enqueue("x")
    assert job.status() == "queued"
    w = worker(app, queue)
    drain(w)
    assert seen == {"x:1": "running"}
    assert job.status() == "retrying"
    info = job.info()
    assert (info.attempt, info.error_type) == (1, "Retry")  # attempts made so far
    keys = QueueKeys(queue)
    # Once due it counts as queued, even before a scheduler has moved it.
    wait_until(lambda: job.status() == "queued", 5)
    app.store.promote_due(keys, streamq.clock.now_ms())
    drain(w)
    assert seen["x:2"] == "running"
    assert job.status() == "succeeded"
    info = job.info()
    assert info.finished_ms is not None
    assert info.started_ms is not None
    assert info.worker == w.consumer
    dies = staged.with_options(max_retries=0).enqueue("dies")
    drain(w)
    assert dies.status() == "dead"
    assert later.status() == "scheduled"
    assert app.job("no-such-job").status() == "unknown"


def test_progress_is_readable_from_the_handle(app: streamq.App, queue: str) -> None:
    """current_job().set_progress is visible through job.info() while the job runs."""
    observed: list[tuple[float | None, str]] = []

    @app.task
    def long_job() -> None:
        me = streamq.current_job()
        me.set_progress(0.4, note="resizing")
        info = app.job(me.id).info()
        observed.append((info.progress, info.note))

    job = long_job.enqueue()
    drain(worker(app, queue))
    assert observed == [(0.4, "resizing")]
    assert job.info().progress == 0.4
    with pytest.raises(LookupError):
        streamq.current_job()


def test_handle_rebuilt_in_another_process(
    app: streamq.App, queue: str, redis_server: RedisServer
) -> None:
    """`streamq job ID` (another process) sees the same status and attempts."""

    @app.task
    def noop() -> None: ...

    job = noop.enqueue()
    drain(worker(app, queue))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamq",
            "--redis-url",
            redis_server.url,
            "job",
            job.id,
            "--queue",
            queue,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(out.stdout)
    assert (info["id"], info["status"], info["attempt"], info["task"]) == (
        job.id,
        "succeeded",
        1,
        "noop",
    )


def test_priority_order_under_a_mixed_backlog(app: streamq.App, queue: str) -> None:
    """With low, normal and high jobs waiting, workers run all high, then normal, then low."""
    order: list[str] = []

    @app.task
    def rec(tag: str) -> None:
        order.append(tag)

    for i in range(5):
        rec.with_options(priority="low").enqueue(f"low{i}")
        rec.enqueue(f"normal{i}")
        rec.with_options(priority="high").enqueue(f"high{i}")
    w = worker(app, queue)
    w._count = 100
    drain(w)
    assert order == [f"{p}{i}" for p in ("high", "normal", "low") for i in range(5)]


def test_retries_and_delayed_jobs_keep_their_priority(app: streamq.App, queue: str) -> None:
    """A high-priority retry and a high-priority delayed job go back to the high stream."""

    @app.task(priority="high", max_retries=1, backoff_base_s=60, backoff_cap_s=60)
    def urgent() -> None:
        raise RuntimeError("once")

    urgent.enqueue()
    urgent.enqueue_in(60)
    drain(worker(app, queue))
    keys = QueueKeys(queue)
    assert app.client().zcard(keys.delayed_for(2)) == 2
    assert app.client().zcard(keys.delayed) == 0
    app.store.promote_due(keys, streamq.clock.now_ms() + 120_000)
    assert app.client().xlen(keys.stream_for(2)) == 2


def test_weighted_mode_serves_every_level(app: streamq.App, queue: str) -> None:
    """With weights, low-priority jobs are not all left for last under a backlog."""
    order: list[str] = []

    @app.task
    def rec(tag: str) -> None:
        order.append(tag)

    for i in range(50):
        rec.with_options(priority="high").enqueue(f"h{i}")
        rec.with_options(priority="low").enqueue(f"l{i}")
    w = worker(app, queue, priority_weights=(1, 1, 1), max_batch=10)
    w._count = 10
    drain(w)
    first_half = order[:50]
    assert any(t.startswith("l") for t in first_half)
    assert len(order) == 100


def test_cancel_queued_and_scheduled_jobs(app: streamq.App, queue: str) -> None:
    """A cancelled queued or scheduled job never runs, and its status is cancelled."""
    ran: list[str] = []

    @app.task
    def rec(tag: str) -> None:
        ran.append(tag)

    a = rec.enqueue("queued")
    b = rec.enqueue_in(0.05, "scheduled")
    c = rec.enqueue("kept")
    assert a.cancel() == "cancelled"
    assert b.cancel() == "cancelled"
    assert app.store.stats(QueueKeys(queue), "default").delayed == 0  # b left the delayed set
    drain(worker(app, queue))
    assert ran == ["kept"]
    assert (a.status(), b.status(), c.status()) == ("cancelled", "cancelled", "succeeded")
    assert c.cancel() == "succeeded"  # too late: it already finished
    with pytest.raises(streamq.JobFailed, match="cancelled"):
        a.result(timeout_s=1)
    keys = QueueKeys(queue)
    assert app.client().xlen(keys.stream) == 0


def test_concurrent_enqueues_of_one_job_id_create_one_job(
    redis_server: RedisServer, queue: str
) -> None:
    """100 producers enqueueing job_id="invoice-42" at once create exactly one job."""
    apps = [
        streamq.App(redis_server.url, streamq.AppSettings(default_queue=queue)) for _ in range(20)
    ]
    barrier = threading.Barrier(100)
    created: list[bool] = []

    def produce(app: streamq.App) -> None:
        barrier.wait()
        job = app.enqueue("invoice.send", args=[42], job_id="invoice-42")
        created.append(job.created)

    threads = [threading.Thread(target=produce, args=(apps[i % 20],)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert created.count(True) == 1
    assert len(created) == 100
    assert apps[0].client().xlen(QueueKeys(queue).stream) == 1


def test_unique_window_covers_finished_jobs(app: streamq.App, queue: str) -> None:
    """job_id alone allows a new run once the first finished; unique_for_s blocks that too."""

    @app.task
    def report() -> None: ...

    first = report.with_options(job_id="r-1").enqueue()
    assert report.with_options(job_id="r-1").enqueue().created is False
    drain(worker(app, queue))
    assert report.with_options(job_id="r-1", unique_for_s=3600).enqueue().created is False
    assert report.with_options(job_id="r-1").enqueue().created is True
    assert first.id == "r-1"


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def _producer(server: RedisServer, queue: str) -> streamq.App:
    sample.app.redis_url = server.url
    sample.app.settings = streamq.AppSettings(default_queue=queue)
    return sample.app


def test_high_priority_job_overtakes_a_low_backlog(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A high job arriving behind a prefetched low backlog waits about one job, not the batch."""
    _producer(redis_server, queue)
    c = _client(redis_server)
    low = sample.ordered.with_options(queue=queue, priority="low")
    sample.app.enqueue_many([low.prepare(f"low{i}", 0.02) for i in range(300)])
    with Pool(worker_env, processes=1):
        wait_until(lambda: c.llen(f"sqtest:{queue}:order") >= 20, 30)
        sample.ordered.with_options(queue=queue, priority="high").enqueue("HIGH", 0)
        lows_started = c.llen(f"sqtest:{queue}:order")  # at most this many began before
        wait_until(lambda: b"HIGH" in c.lrange(f"sqtest:{queue}:order", 0, -1), 30)
        raw: list[bytes] = c.lrange(f"sqtest:{queue}:order", 0, -1)  # type: ignore[assignment]
    order = [x.decode() for x in raw]
    # The low job in hand finishes first (one job's run time); then HIGH, not the prefetch.
    assert order.index("HIGH") <= lows_started + 1, order[:40]


def test_cancel_running_job_stops_it(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A running job is stopped (Cancelled raised in it), not retried, status cancelled."""
    app = _producer(redis_server, queue)
    c = _client(redis_server)
    job = sample.sleep_then_record.with_options(queue=queue).enqueue("c", 30)
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: job.status() == "running", 30)
        assert job.cancel() == "cancelling"
        wait_until(lambda: job.status() == "cancelled", 15)
        (ev,) = wait_until(lambda: pool.events("job.cancelled"), 10)  # log lines may lag
        assert ev["job_id"] == job.id
        assert len(pool.children()) == 1
    assert runs(c, queue) == {"c:started": 1}
    assert app.store.stats(QueueKeys(queue), "default").pending == 0


def test_cancel_of_a_task_that_ignores_it_replaces_the_process(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A task that swallows Cancelled is killed after the grace, and its process replaced."""
    _producer(redis_server, queue)
    job = sample.stubborn.with_options(queue=queue, timeout_s=60).enqueue("s", 60)
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: job.status() == "running", 30)
        victim = pool.children()[0]
        job.cancel()
        wait_until(lambda: job.status() == "cancelled", 20)
        wait_until(lambda: pool.children() and victim not in pool.children(), 20)
        sample.record.with_options(queue=queue).enqueue("after")
        wait_until(lambda: runs(_client(redis_server), queue).get("after") == 1, 20)


def test_time_limit_stops_and_retries_then_dead_letters(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A job over timeout_s is stopped, retried (max_retries=1), then dead with reason timeout."""
    _producer(redis_server, queue)
    c = _client(redis_server)
    job = sample.overrun.with_options(queue=queue).enqueue("t", 5)
    stuck = sample.stubborn.with_options(queue=queue).enqueue("st", 60)
    with Pool(worker_env, processes=2) as pool:
        with pytest.raises(streamq.JobFailed) as info:
            job.result(timeout_s=30)
        assert info.value.reason == "timeout"
        assert runs(c, queue)["t"] == 2
        with pytest.raises(streamq.JobFailed) as info2:
            stuck.result(timeout_s=30)
        assert info2.value.reason == "timeout"  # killed by the supervisor, recorded for it
        wait_until(lambda: pool.events("job.timed_out"), 10)  # the log line may lag the record
        wait_until(lambda: len(pool.children()) == 2, 20)


def test_cli_cancel(redis_server: RedisServer, queue: str) -> None:
    """`streamq cancel ID` cancels a queued job and says so."""
    app = _producer(redis_server, queue)
    job = app.enqueue("record", args=["x"], queue=queue)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamq",
            "--redis-url",
            redis_server.url,
            "cancel",
            job.id,
            "--queue",
            queue,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0
    assert json.loads(out.stdout) == {"job_id": job.id, "outcome": "cancelled"}
    assert job.status() == "cancelled"


def test_untracked_tasks_run_and_retry_without_records(app: streamq.App, queue: str) -> None:
    """track=False: jobs run, retry and dead-letter as usual, but keep no status record."""
    runs_: list[int] = []

    @app.task(track=False, max_retries=1, backoff_base_s=0, backoff_cap_s=0)
    def fire(i: int) -> int:
        runs_.append(i)
        if i == 2:
            raise RuntimeError("two fails")
        return i

    jobs = app.enqueue_many([fire.prepare(i) for i in range(3)])
    drain(worker(app, queue))
    assert sorted(runs_) == [0, 1, 2, 2]
    assert {j.status() for j in jobs} == {"unknown"}
    keys = QueueKeys(queue)
    assert app.client().keys(keys.job("*")) == []
    (dead,) = streamq.DeadLetters(app.store, queue).list()
    assert (dead.reason, dead.task) == ("max_retries", "fire")


def test_cancelled_scheduled_job_stays_cancelled_past_its_result_ttl(
    app: streamq.App, queue: str
) -> None:
    """A cancelled scheduled job whose entry cancel cannot find (here: written by other code,
    fields in another order) keeps its record past its due time, so it still never runs."""
    ran: list[int] = []

    @app.task(result_ttl_s=0.3)
    def later() -> None:
        ran.append(1)

    env = later.prepare()
    doc = msgpack.unpackb(codec.encode(env))
    reordered = msgpack.packb({k: doc[k] for k in sorted(doc, reverse=True)}, use_bin_type=True)
    keys = QueueKeys(queue)
    app.store.enqueue([NewJob(keys, env.id, "later", 1, reordered, now_ms() + 600)], now_ms())
    job = app.job(env.id)
    assert job.cancel() == "cancelled"
    assert app.store.stats(keys, "default").delayed == 1
    pttl = app.client().pttl(keys.job(job.id))
    assert pttl > 600  # until due, plus the result TTL
    wait_until(lambda: app.store.promote_due(keys, streamq.clock.now_ms())[0], 5)
    drain(worker(app, queue))
    assert ran == []
    assert job.status() == "cancelled"


def test_cancel_asked_while_running_wins_over_a_retry(app: streamq.App, queue: str) -> None:
    """A job cancelled while running that then fails is not retried: it ends cancelled."""

    @app.task(max_retries=5, backoff_base_s=0, backoff_cap_s=0)
    def fails_after_cancel() -> None:
        me = streamq.current_job()
        assert app.job(me.id).cancel() == "cancelling"  # no supervisor here to interrupt it
        raise RuntimeError("failed anyway")

    job = fails_after_cancel.enqueue()
    drain(worker(app, queue))
    assert job.status() == "cancelled"
    keys = QueueKeys(queue)
    assert app.client().xlen(keys.stream) == 0
    assert app.client().zcard(keys.delayed) == 0


def test_progress_of_an_untracked_job_writes_nothing(app: streamq.App, queue: str) -> None:
    """set_progress on a track=False job leaves no key behind."""

    @app.task(track=False)
    def quiet() -> None:
        streamq.current_job().set_progress(0.5)

    job = quiet.enqueue()
    drain(worker(app, queue))
    assert app.client().exists(QueueKeys(queue).job(job.id)) == 0


def test_killed_overrunning_job_is_retried_by_the_supervisor(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A task that ignores its limit is killed; the supervisor schedules its retry, once."""
    _producer(redis_server, queue)
    c = _client(redis_server)
    stuck = sample.stubborn.with_options(queue=queue, max_retries=1).enqueue("again", 60)
    with Pool(worker_env, processes=1):
        with pytest.raises(streamq.JobFailed) as info:
            stuck.result(timeout_s=40)
        assert info.value.reason == "timeout"
        assert runs(c, queue)["again"] == 2  # the first run, then the retry the supervisor wrote


def test_a_new_run_never_shows_the_last_runs_progress(app: streamq.App, queue: str) -> None:
    """A retried job waits, and starts again, with no progress, note or worker of the failed run."""
    seen: list[tuple[int, float | None, str]] = []

    @app.task
    def step() -> None:
        me = streamq.current_job()
        info = app.job(me.id).info()
        seen.append((me.attempt, info.progress, info.note))
        if me.attempt == 1:
            me.set_progress(0.5, "half way")
            raise streamq.Retry(delay_s=0)
        if me.attempt == 2:
            me.set_progress(0.7, "again")
            raise streamq.Retry(delay_s=60)

    job = step.enqueue()
    drain(worker(app, queue))
    assert seen == [(1, None, ""), (2, None, "")]
    info = job.info()
    assert (info.status, info.attempt) == ("retrying", 2)
    assert (info.progress, info.note, info.worker) == (None, "", "")


def test_requeued_job_drops_its_lost_workers_progress(app: streamq.App, queue: str) -> None:
    """A job the reaper takes back from a dead worker shows no worker or progress of that run."""
    keys = QueueKeys(queue)
    job = app.enqueue("t")
    app.store.ensure_group(keys, "default")
    (entry,) = app.store.read([(keys, 1)], "default", "dead-worker", 1, 10)
    app.store.start("default", "dead-worker", now_ms(), [entry], [job.id], [1])
    app.store.set_progress(keys, job.id, 0.3, "stuck")
    reaper = Reaper(app.store, [keys], "default", app.settings)

    def requeued() -> bool:
        reaper.run_once(now_ms())
        return job.status() == "queued"

    wait_until(requeued, 5)
    info = job.info()
    assert (info.progress, info.note, info.worker, info.attempt) == (None, "", "", 1)


def test_attempt_reads_zero_until_the_job_starts(app: streamq.App, queue: str) -> None:
    """JobInfo.attempt counts attempts started: 0 while queued or scheduled, 1 once it ran."""

    @app.task
    def noop() -> None: ...

    queued, scheduled = noop.enqueue(), noop.enqueue_in(60)
    assert (queued.info().attempt, scheduled.info().attempt) == (0, 0)
    drain(worker(app, queue))
    assert queued.info().attempt == 1


def test_cancelled_scheduled_job_no_longer_counts_as_delayed(app: streamq.App, queue: str) -> None:
    """Cancelling a scheduled or retrying job takes it out of the delayed figure at once."""

    @app.task(priority="high")
    def later(arg: object) -> None: ...

    # Bytes and datetimes too: Redis's cmsgpack cannot read them, so cancel must not decode.
    args: list[object] = [1, b"\x00bytes", datetime.now(UTC)]
    jobs = [later.enqueue_in(60, arg) for arg in args]
    keys = QueueKeys(queue)
    assert app.store.stats(keys, "default").delayed == 3
    assert jobs[1].cancel() == "cancelled"
    assert app.store.stats(keys, "default").delayed == 2
    assert [j.status() for j in jobs] == ["scheduled", "cancelled", "scheduled"]


def test_result_of_an_unknown_id_raises_job_not_found(app: streamq.App) -> None:
    """result() for an id with no record raises JobNotFound, still a JobFailed for old code."""
    with pytest.raises(streamq.JobNotFound) as e:
        app.job("never-enqueued").result(timeout_s=5)
    assert isinstance(e.value, streamq.JobFailed)
    assert (e.value.job_id, e.value.state) == ("never-enqueued", "unknown")
