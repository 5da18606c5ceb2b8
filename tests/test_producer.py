"""Producer API: enqueue by function and by name, in bulk, delayed, and its failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.keys import QueueKeys
from streamq.store import NewJob
from streamq.testing import RedisServer, free_port
from tests.helpers import entries


def test_enqueue_appends_one_versioned_entry(app: streamq.App, queue: str) -> None:
    """task.enqueue XADDs one msgpack envelope carrying the id, task, args and queue."""

    @app.task
    def send_email(to: str, subject: str) -> None: ...

    job = send_email.enqueue("a@example.com", subject="Hi")
    ((entry_id, fields),) = entries(app.client(), QueueKeys(queue).stream)
    assert entry_id.decode() == job.entry_id
    env = codec.decode(fields[b"j"])
    assert (env.id, env.task, env.queue, env.attempt) == (job.id, "send_email", queue, 1)
    assert (list(env.args), dict(env.kwargs)) == (["a@example.com"], {"subject": "Hi"})
    assert abs(env.enqueued_ms - now_ms()) < 5000


def test_job_ids_are_unique(app: streamq.App) -> None:
    """Ids never repeat, even for many jobs created in the same millisecond."""
    ids = {app.envelope("t").id for _ in range(20_000)}
    assert len(ids) == 20_000


def test_enqueue_by_name_without_task_code(app: streamq.App, queue: str) -> None:
    """A producer App with no tasks registered enqueues by name onto a chosen queue."""
    producer = streamq.App(app.redis_url)
    job = producer.enqueue("reports.generate", args=[42], kwargs={"fmt": "pdf"}, queue=queue)
    ((_, fields),) = entries(app.client(), QueueKeys(queue).stream)
    env = codec.decode(fields[b"j"])
    assert (env.task, list(env.args), dict(env.kwargs)) == (
        "reports.generate",
        [42],
        {"fmt": "pdf"},
    )
    assert job.queue == queue
    producer.client().close()


def test_enqueue_by_name_uses_registered_task_queue(app: streamq.App, queue: str) -> None:
    """By name, a task this App knows goes to its own queue."""
    other = queue + "-other"

    @app.task(name="emails.send", queue=other)
    def send() -> None: ...

    job = app.enqueue("emails.send")
    assert job.queue == other
    assert app.client().xlen(QueueKeys(other).stream) == 1


def test_enqueue_many_is_one_round_trip_per_batch(app: streamq.App, queue: str) -> None:
    """Bulk enqueue makes ceil(n / batch_size) script calls, and every job arrives in order."""

    @app.task
    def work(i: int) -> None: ...

    calls: list[int] = []
    real_enqueue = app.store.enqueue

    def counting(jobs: Sequence[NewJob], now_ms: int, window_ms: int = 0) -> list[tuple[bool, str]]:
        calls.append(len(jobs))
        return real_enqueue(jobs, now_ms, window_ms)

    app.store.enqueue = counting  # type: ignore[method-assign]
    jobs = app.enqueue_many((work.prepare(i) for i in range(2500)), batch_size=1000)
    assert calls == [1000, 1000, 500]
    assert len(jobs) == 2500
    got = entries(app.client(), QueueKeys(queue).stream)
    assert [codec.decode(f[b"j"]).args[0] for _, f in got] == list(range(2500))


def test_enqueue_in_and_at_go_to_the_delayed_set(app: streamq.App, queue: str) -> None:
    """Delayed jobs wait in the sorted set scored by due time, not in the stream."""

    @app.task
    def later() -> None: ...

    before = now_ms()
    j1 = later.enqueue_in(30)
    j2 = later.enqueue_in(timedelta(minutes=1))
    j3 = later.enqueue_at(datetime.now(UTC) + timedelta(hours=1))
    j4 = app.enqueue_in(5, "later")
    keys = QueueKeys(queue)
    assert app.client().xlen(keys.stream) == 0
    assert app.client().zcard(keys.delayed) == 4
    for job, delay_ms in ((j1, 30_000), (j2, 60_000), (j3, 3_600_000), (j4, 5_000)):
        assert job.entry_id is None
        assert job.due_ms is not None
        assert 0 <= job.due_ms - before - delay_ms < 5000


def test_naive_datetime_is_refused(app: streamq.App) -> None:
    """enqueue_at with a naive datetime is ambiguous and fails loudly."""

    @app.task
    def t() -> None: ...

    with pytest.raises(streamq.ConfigError):
        t.enqueue_at(datetime.now() + timedelta(seconds=5))


def test_oversized_payload_is_refused_at_enqueue(redis_server: RedisServer, queue: str) -> None:
    """A payload over max_payload_bytes raises PayloadTooLarge and nothing is written."""
    app = streamq.App(
        redis_server.url,
        streamq.AppSettings(default_queue=queue, max_payload_bytes=1000),
    )

    @app.task
    def big(blob: bytes) -> None: ...

    with pytest.raises(streamq.PayloadTooLarge):
        big.enqueue(b"x" * 2000)
    assert app.client().xlen(QueueKeys(queue).stream) == 0


def test_unencodable_argument_is_a_clear_enqueue_error(app: streamq.App) -> None:
    """An argument msgpack cannot carry is refused with EnqueueError (never pickled)."""

    @app.task
    def t(x: object) -> None: ...

    with pytest.raises(streamq.EnqueueError, match="cannot encode"):
        t.enqueue(object())


def test_unreachable_redis_raises_enqueue_error() -> None:
    """With no Redis listening, enqueue raises EnqueueError naming the job, quickly."""
    app = streamq.App(f"redis://127.0.0.1:{free_port()}/0", streamq.AppSettings(socket_timeout_s=1))

    @app.task
    def t() -> None: ...

    with pytest.raises(streamq.EnqueueError, match="was not enqueued"):
        t.enqueue()
    with pytest.raises(streamq.EnqueueError, match="bulk enqueue stopped after 0 jobs"):
        app.enqueue_many([t.prepare()])


def test_duplicate_task_name_is_refused(app: streamq.App) -> None:
    """Two functions cannot share a task name."""

    @app.task(name="x")
    def a() -> None: ...

    with pytest.raises(streamq.ConfigError):

        @app.task(name="x")
        def b() -> None: ...


def test_async_tasks_register(app: streamq.App) -> None:
    """An ``async def`` registers like any task; the worker awaits it (see worker/aloop.py)."""

    @app.task
    async def coro() -> None: ...

    assert app.tasks["coro"].fn is coro.fn
