"""Caller and operator mistakes, and Redis blips, never take a worker or a producer down."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

import streamq
from streamq.errors import StreamqConnectionError
from streamq.settings import AppSettings, WorkerSettings
from streamq.testing import RedisServer, wait_until
from tests.faults.proxy import CutProxy


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
