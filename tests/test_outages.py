"""Caller and operator mistakes, and Redis blips, never take a worker or a producer down."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import streamq
from streamq.errors import StreamqConnectionError
from streamq.keys import QueueKeys
from streamq.outage import Outage
from streamq.pool.supervisor import EXIT_REDIS_REFUSED
from streamq.settings import AppSettings, WorkerSettings
from streamq.testing import RedisServer, free_port, wait_until
from tests.faults.proxy import CutProxy
from tests.helpers import Pool


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[CutProxy]:
    """A TCP forwarder to the test server that a test can cut and restore."""
    with CutProxy(redis_server.port) as p:
        yield p


def _run_until(worker: streamq.Worker, done: Callable[[], bool], timeout_s: float = 15) -> None:
    """Run worker steps, riding out connection errors as ``Worker.run`` does, until done()."""

    def step() -> bool:
        with contextlib.suppress(StreamqConnectionError):
            worker.run_once()
        return done()

    wait_until(step, timeout_s, interval_s=0)


def test_streamq_connection_errors_are_builtin_connection_errors() -> None:
    """``retry_on=(ConnectionError,)`` covers streamq's own connection error."""
    assert issubclass(StreamqConnectionError, ConnectionError)
    assert issubclass(StreamqConnectionError, streamq.StreamqError)


def test_progress_during_a_redis_blip_never_fails_the_job(
    app: streamq.App, queue: str, proxy: CutProxy
) -> None:
    """set_progress() while Redis is cut off keeps the value, writes it later, job succeeds."""
    worker_app = streamq.App(proxy.url, AppSettings(default_queue=queue))

    @worker_app.task(max_retries=0, retry_on=(ConnectionError, TimeoutError))
    def blip() -> str:
        proxy.cut()
        streamq.current_job().set_progress(0.5, "halfway")
        proxy.restore()
        return "done"

    job = app.enqueue("blip", queue=queue)
    worker = streamq.Worker(worker_app, WorkerSettings(queues=(queue,), block_ms=20))
    worker.start()
    _run_until(worker, lambda: job.status() in ("succeeded", "dead"))
    assert job.result(timeout_s=1) == "done", job.info()
    info = job.info()
    assert (info.progress, info.note) == (0.5, "halfway")


class NotRedis:
    """A TCP server that answers every connection like a web server: a URL that is not Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """A ``redis://`` URL pointing at it."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        """Stop listening."""
        self.sock.close()


@pytest.fixture
def not_redis() -> Iterator[NotRedis]:
    """A listener on a free port that answers, but not in the Redis protocol."""
    server = NotRedis()
    yield server
    server.close()


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    """A private server that requires a password (``s3cret``)."""
    with RedisServer(args=["--requirepass", "s3cret"]) as server:
        yield server


def test_enqueue_to_a_server_that_is_not_redis_raises_enqueue_error_once(
    not_redis: NotRedis, queue: str
) -> None:
    """A URL that answers but is not Redis: EnqueueError naming the cause, no resend."""
    app = streamq.App(not_redis.url, AppSettings(default_queue=queue))
    with pytest.raises(streamq.EnqueueError, match="does not speak the Redis protocol") as info:
        app.enqueue("anything")
    assert isinstance(info.value.__cause__, streamq.RedisSetupError)
    assert info.value.__cause__.cause == "protocol"
    assert not_redis.accepted == 1


def test_enqueue_with_a_wrong_password_raises_enqueue_error_without_resends(
    locked_redis: RedisServer, queue: str
) -> None:
    """A wrong password: EnqueueError naming the cause after one connection, not three."""
    admin = redis.Redis(port=locked_redis.port, password="s3cret")
    before = int(admin.info("stats")["total_connections_received"])
    url = locked_redis.url.replace("redis://", "redis://:wrong@")
    app = streamq.App(url, AppSettings(default_queue=queue))
    with pytest.raises(streamq.EnqueueError, match="refused the credentials") as info:
        app.enqueue("anything")
    assert isinstance(info.value.__cause__, streamq.RedisSetupError)
    assert info.value.__cause__.cause == "auth"
    assert int(admin.info("stats")["total_connections_received"]) - before == 1
    admin.close()


def _refusal_ends_pool(pool: Pool, lines_max: int) -> None:
    """The pool exits at once with the named code, one clear line, and no flood."""
    assert pool.wait(20) == EXIT_REDIS_REFUSED
    events = pool.events()  # every line is JSON: no traceback
    refused = pool.events("supervisor.redis_refused")
    assert len(refused) == 1, refused
    assert refused[0]["exit_code"] == EXIT_REDIS_REFUSED
    assert len(events) <= lines_max, [e["event"] for e in events]


def test_pool_with_a_wrong_password_stops_with_its_exit_code(
    locked_redis: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Wrong credentials are not an outage: the pool stops with exit code 4, never spawning."""
    worker_env["STREAMQ_REDIS_URL"] = locked_redis.url.replace("redis://", "redis://:wrong@")
    with Pool(worker_env, processes=2) as pool:
        _refusal_ends_pool(pool, lines_max=4)
        assert not pool.events("worker.spawned")
        assert pool.events("supervisor.redis_refused")[0]["cause"] == "auth"


def test_pool_on_a_server_that_is_not_redis_stops_with_its_exit_code(
    not_redis: NotRedis, queue: str, worker_env: dict[str, str]
) -> None:
    """A URL that is not Redis: exit code 4 and one line, no traceback."""
    worker_env["STREAMQ_REDIS_URL"] = not_redis.url
    with Pool(worker_env, processes=2) as pool:
        _refusal_ends_pool(pool, lines_max=4)
        assert pool.events("supervisor.redis_refused")[0]["cause"] == "protocol"


@pytest.mark.slow
def test_password_set_under_a_running_pool_stops_it_without_restarts(
    queue: str, worker_env: dict[str, str]
) -> None:
    """Workers refused mid-run exit with code 4; the supervisor stops the pool, no restarts."""
    with RedisServer() as server:
        worker_env["STREAMQ_REDIS_URL"] = server.url
        with Pool(worker_env, processes=2) as pool:
            wait_until(lambda: len(pool.events("worker.started")) == 2, 30)
            admin = redis.Redis(port=server.port)
            admin.config_set("requirepass", "s3cret")
            with contextlib.suppress(redis.ConnectionError):
                admin.client_kill_filter(_type="normal")
            _refusal_ends_pool(pool, lines_max=30)
            assert len(pool.events("worker.spawned")) == 2
            for line in pool.events("worker.redis_refused"):
                assert line["cause"] == "auth"


def test_sigterm_while_waiting_for_redis_at_start_exits_0_at_once(
    queue: str, worker_env: dict[str, str]
) -> None:
    """A stop before the pool is up spawns nothing and exits 0 at once."""
    worker_env["STREAMQ_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    with Pool(worker_env, processes=2) as pool:
        wait_until(lambda: pool.events("supervisor.redis_failed"), 30)
        started = time.monotonic()
        pool.signal(signal.SIGTERM)
        assert pool.wait(10) == 0
        assert time.monotonic() - started < 2
        assert not pool.events("worker.spawned")
        assert pool.events("supervisor.stopped")[0]["exit_code"] == 0


def test_outage_tracker_logs_loss_reminders_and_return() -> None:
    """One notice when Redis is lost, reminders at most every 10 s, the downtime when back."""
    outage = Outage()
    assert outage.succeeded(0) is None
    first = outage.failed(1_000)
    assert first is not None
    assert first.first
    assert first.down_ms == 0
    assert [outage.failed(t) for t in range(1_100, 11_000, 100)] == [None] * 99
    reminder = outage.failed(11_000)
    assert reminder is not None
    assert not reminder.first
    assert (reminder.down_ms, reminder.failures) == (10_000, 100)
    assert outage.failed(12_000) is None
    assert outage.succeeded(12_500) == 11_500
    assert not outage.down
    again = outage.failed(13_000)
    assert again is not None
    assert again.first


@pytest.mark.slow
def test_an_outage_logs_a_line_per_loop_not_a_flood(queue: str, worker_env: dict[str, str]) -> None:
    """Redis away for 3 s: each loop logs its loss once and its return once, with group and pid."""
    with RedisServer() as server:
        worker_env["STREAMQ_REDIS_URL"] = server.url
        with Pool(worker_env, processes=1) as pool:
            wait_until(lambda: pool.events("worker.started"), 30)
            server.kill()
            wait_until(lambda: pool.events("redis.connection_lost"), 10)
            until = time.monotonic() + 3  # an observation window: the flood was 10 lines/s
            wait_until(lambda: time.monotonic() >= until, 10)
            server.restart()
            wait_until(lambda: len(pool.events("redis.reconnected")) >= 3, 30)
            wait_until(
                lambda: len({e.get("loop") for e in pool.events("redis.reconnected")}) >= 3, 30
            )
    failures = [
        e
        for e in pool.events()
        if e["event"]
        in ("supervisor.redis_failed", "scheduler.failed", "reaper.failed", "redis.connection_lost")
    ]
    by_loop: dict[tuple[str, object], int] = {}
    for e in failures:
        assert e["group"] == "default", e
        assert isinstance(e["pid"], int), e
        key = (e["event"], e.get("loop"))
        by_loop[key] = by_loop.get(key, 0) + 1
    assert by_loop
    assert max(by_loop.values()) == 1, by_loop
    for e in pool.events("redis.reconnected"):
        assert e["down_ms"] >= 2500, e


def test_many_result_waiters_share_one_connection(redis_server: RedisServer, queue: str) -> None:
    """120 threads wait on results while others enqueue, with 8 connections: all arrive."""
    app = streamq.App(redis_server.url, AppSettings(default_queue=queue, max_connections=8))

    @app.task
    def double(x: int) -> int:
        return x * 2

    jobs = [double.enqueue(i) for i in range(120)]
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def wait_for(i: int) -> None:
        try:
            results[i] = jobs[i].result(timeout_s=60)
        except BaseException as e:
            errors.append(e)

    def enqueue_more(start: int) -> None:
        try:
            for i in range(start, start + 25):
                double.enqueue(i)
        except BaseException as e:
            errors.append(e)

    waiters = [threading.Thread(target=wait_for, args=(i,)) for i in range(120)]
    for t in waiters:
        t.start()
    admin = redis.Redis(port=redis_server.port)
    channels = [QueueKeys(queue).done_channel(j.id) for j in jobs]

    def all_subscribed() -> bool:
        counts: Any = admin.pubsub_numsub(*channels)
        return all(n == 1 for _, n in counts)

    wait_until(all_subscribed, 30)
    pubsub_clients: Any = admin.client_list(_type="pubsub")
    assert len(pubsub_clients) == 1
    producers = [threading.Thread(target=enqueue_more, args=(s,)) for s in range(1000, 1100, 25)]
    for t in producers:
        t.start()
    worker = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=20))
    worker.start()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(lambda: not stop.is_set(),))
    runner.start()
    try:
        for t in producers + waiters:
            t.join(90)
    finally:
        stop.set()
        runner.join(30)
        admin.close()
    assert not errors, errors[:3]
    assert results == {i: i * 2 for i in range(120)}


def test_result_waiter_rides_out_an_outage_and_sees_a_finish_it_missed(
    app: streamq.App, queue: str, proxy: CutProxy
) -> None:
    """A job finishing while the waiter is cut off is seen after the listener reconnects."""

    @app.task
    def double(x: int) -> int:
        return x * 2

    job = double.enqueue(21)
    handle = streamq.App(proxy.url, AppSettings(default_queue=queue)).job(job.id)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(handle.result(timeout_s=30)))
    waiter.start()
    admin = app.client()
    channel = QueueKeys(queue).done_channel(job.id)
    wait_until(lambda: admin.pubsub_numsub(channel)[0][1] == 1, 10)
    proxy.cut()
    worker = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=20))
    worker.start()
    wait_until(lambda: worker.run_once() == 0 and job.status() == "succeeded", 10)
    proxy.restore()
    waiter.join(30)
    assert got == [42]
