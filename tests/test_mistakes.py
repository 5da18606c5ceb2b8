"""Caller mistakes: bad options and arguments are refused at the call, never crash a worker."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.errors import ConfigError, EnqueueError, JobFailed
from streamq.job import Envelope
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.settings import WorkerSettings
from streamq.store import NewJob
from streamq.testing import RedisServer
from tests.helpers import ROOT, entries


def _drain(app: streamq.App, *queues: str) -> None:
    w = streamq.Worker(app, WorkerSettings(queues=queues, block_ms=10))
    w.start()
    while w.run_once():
        pass


def _stored(app: streamq.App, job: streamq.Job[Any]) -> Envelope:
    """The envelope of ``job`` as Redis holds it, whichever priority stream it went to."""
    keys = QueueKeys(job.queue)
    for p in PRIORITY_LEVELS:
        for eid, fields in entries(app.client(), keys.stream_for(p)):
            if eid.decode() == job.entry_id:
                return codec.decode(fields[b"j"])
    raise AssertionError(f"job {job.id} is not in the streams of {job.queue}")


# -- options: one validation at every door --------------------------------------------------

BAD_OPTIONS: list[dict[str, Any]] = [
    {"timeout_s": -5},
    {"timeout_s": 0},
    {"timeout_s": math.nan},
    {"timeout_s": math.inf},
    {"timeout_s": 10 * 366 * 86_400},
    {"max_retries": -1},
    {"max_retries": 1.5},
    {"max_retries": True},
    {"backoff_base_s": -1},
    {"backoff_cap_s": math.nan},
    {"priority": 7},
    {"priority": "urgent"},
    {"priority": 1.0},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=repr)
def test_bad_option_is_refused_by_the_decorator_and_every_enqueue_door(
    app: streamq.App, bad: dict[str, Any]
) -> None:
    """A value that cannot work raises ConfigError at the decorator, with_options and by name."""

    @app.task
    def ok() -> None: ...

    with pytest.raises(ConfigError):
        app.task(name="refused", **bad)(lambda: None)
    with pytest.raises(ConfigError):
        ok.with_options(**bad)
    with pytest.raises(ConfigError):
        app.enqueue("ok", **bad)
    assert app.store.stats(QueueKeys(app.settings.default_queue), "default").queued == 0


@pytest.mark.parametrize(
    "bad",
    [{"job_id": ""}, {"job_id": "x" * 201}, {"unique_for_s": -1}, {"queue": "no spaces"}],
    ids=repr,
)
def test_bad_enqueue_only_option_is_refused(app: streamq.App, bad: dict[str, Any]) -> None:
    """Per-enqueue options (job id, unique window, queue) are checked at both enqueue doors."""

    @app.task
    def ok() -> None: ...

    with pytest.raises(ConfigError):
        ok.with_options(**bad)
    with pytest.raises(ConfigError):
        app.enqueue("ok", **bad)


@pytest.mark.parametrize("delay", [-1, math.nan, timedelta(seconds=-1)], ids=repr)
def test_bad_delay_is_refused(app: streamq.App, delay: Any) -> None:
    """A negative or NaN delay raises ConfigError instead of scheduling in the past."""

    @app.task
    def ok() -> None: ...

    with pytest.raises(ConfigError):
        ok.enqueue_in(delay)
    with pytest.raises(ConfigError):
        app.enqueue_in(delay, "ok")


def test_timeout_zero_means_the_same_everywhere(app: streamq.App) -> None:
    """timeout_s=0 is refused by the decorator, with_options and app.enqueue alike."""
    with pytest.raises(ConfigError, match="timeout_s"):
        app.task(timeout_s=0)(lambda: None)

    @app.task
    def ok() -> None: ...

    with pytest.raises(ConfigError, match="timeout_s"):
        ok.with_options(timeout_s=0)
    with pytest.raises(ConfigError, match="timeout_s"):
        app.enqueue("ok", timeout_s=0)


def _write(app: streamq.App, env: Envelope) -> None:
    """Enqueue ``env`` as an older producer or a hand-written entry would: no checks."""
    keys = QueueKeys(env.queue)
    app.store.enqueue([NewJob(keys, env.id, env.task, 1, codec.encode(env))], now_ms())


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout_ms": -5000},
        {"timeout_ms": 2**62},
        {"max_retries": -1},
        {"backoff_base_ms": -1},
    ],
    ids=repr,
)
def test_entry_with_a_bad_option_is_buried_and_its_result_fails(
    app: streamq.App, queue: str, bad: dict[str, Any]
) -> None:
    """A bad value that reaches a worker is dead-lettered as bad_option with its job id, its
    record is made final with a TTL, and the worker carries on with the next job."""
    ran: list[int] = []

    @app.task
    def work(n: int) -> None:
        ran.append(n)

    env = app.envelope("work", [1])._replace(**bad)
    _write(app, env)
    good = work.enqueue(2)
    _drain(app, queue)  # raised (setitimer) or left the record queued before the fix
    assert ran == [2]
    assert good.status() == "succeeded"
    (dead,) = streamq.DeadLetters(app.store, queue).list()
    assert (dead.reason, dead.job_id, dead.task) == ("bad_option", env.id, "work")
    with pytest.raises(JobFailed) as failed:
        app.job(env.id).result(timeout_s=5)
    assert failed.value.state == "dead"
    assert failed.value.reason == "bad_option"
    assert 0 < app.client().pttl(QueueKeys(queue).job(env.id)) <= 86_400_000


def test_replayed_bad_entry_is_buried_again_without_a_crash(app: streamq.App, queue: str) -> None:
    """Replaying a bad-option dead letter buries it again; no worker ever runs or crashes."""

    @app.task
    def work() -> None: ...

    env = app.envelope("work")._replace(timeout_ms=-5000)
    _write(app, env)
    _drain(app, queue)
    dead = streamq.DeadLetters(app.store, queue)
    assert dead.replay() == 1
    _drain(app, queue)
    assert [d.reason for d in dead.list()] == ["bad_option"]
    assert app.job(env.id).status() == "dead"


# -- arguments: bound to the function's signature at enqueue --------------------------------


def test_misspelled_option_is_refused_with_its_name(app: streamq.App, queue: str) -> None:
    """task.enqueue(1, job_id="x") raises EnqueueError naming job_id; nothing is enqueued."""

    @app.task
    def add(x: int, y: int = 0) -> int:
        return x + y

    with pytest.raises(EnqueueError, match="job_id") as e:
        add.enqueue(1, job_id="x")  # type: ignore[call-arg]  # the mistake under test
    assert "with_options(job_id=" in str(e.value)
    with pytest.raises(EnqueueError, match="missing"):
        add.enqueue()  # type: ignore[call-arg]
    with pytest.raises(EnqueueError, match="positional"):
        add.with_options(max_retries=1).prepare(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(EnqueueError, match="'z'"):
        app.enqueue("add", args=[1], kwargs={"z": 2})
    assert entries(app.client(), QueueKeys(queue).stream) == []
    assert add.enqueue(1, y=2).created


def test_by_name_without_the_function_cannot_check(app: streamq.App, queue: str) -> None:
    """A producer that does not register the task enqueues any arguments (documented)."""
    producer = streamq.App(app.redis_url)
    producer.enqueue("add", args=[1], kwargs={"job_id": "x"}, queue=queue)
    producer.client().close()
    (_, fields), *_ = entries(app.client(), QueueKeys(queue).stream)
    assert dict(codec.decode(fields[b"j"]).kwargs) == {"job_id": "x"}


def _pos_only(a: int, b: int = 1, /, c: int = 2) -> None: ...
def _kw_only(a: int, *, b: int, c: int = 3) -> None: ...
def _star(a: int, *rest: int, b: int = 0, **extra: Any) -> None: ...
def _none() -> None: ...


class _Callable:
    def __call__(self, x: int, *, flag: bool = False) -> None: ...


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1, 2, 3, 4), {}),
    ((1,), {"b": 2}),
    ((1,), {"a": 2}),
    ((), {"a": 1}),
    ((1,), {"c": 2}),
    ((1,), {"x": 2}),
    ((), {"x": 1}),
    ((1,), {"flag": True}),
    ((1,), {"b": 2, "zz": 3}),
]


@pytest.mark.parametrize(
    "fn",
    [_pos_only, _kw_only, _star, _none, _Callable()],
    ids=lambda f: getattr(f, "__name__", "instance"),
)
def test_argument_check_agrees_with_python(fn: Callable[..., Any]) -> None:
    """The cached check accepts exactly the calls inspect.Signature.bind accepts."""
    from streamq.producer.arguments import checker_for

    check = checker_for(fn)
    assert check is not None
    sig = inspect.signature(fn)
    for args, kwargs in CALLS:
        try:
            sig.bind(*args, **kwargs)
            expected = True
        except TypeError:
            expected = False
        try:
            check(*args, **kwargs)
            got = True
        except TypeError:
            got = False
        assert got == expected, (args, kwargs)


# -- every per-enqueue option survives every path --------------------------------------------

OPTIONS: dict[str, tuple[Any, Callable[[Envelope], object], object]] = {
    "max_retries": (7, lambda e: e.max_retries, 7),
    "backoff_base_s": (2.5, lambda e: e.backoff_base_ms, 2500),
    "backoff_cap_s": (9, lambda e: e.backoff_cap_ms, 9000),
    "timeout_s": (4, lambda e: e.timeout_ms, 4000),
    "priority": ("high", lambda e: e.priority, 2),
    "job_id": ("fixed-id", lambda e: e.id, "fixed-id"),
}

PATHS: dict[str, Callable[[streamq.App, streamq.Task[..., Any], dict[str, Any]], Any]] = {
    "enqueue": lambda app, t, o: t.with_options(**o).enqueue(1),
    "prepare+send": lambda app, t, o: app.send(t.with_options(**o).prepare(1)),
    "prepare+enqueue_many": lambda app, t, o: app.enqueue_many([t.with_options(**o).prepare(1)])[0],
    "app.enqueue": lambda app, t, o: app.enqueue(t.name, args=[1], **o),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("option", OPTIONS)
def test_option_survives_path(app: streamq.App, option: str, path: str) -> None:
    """Each per-enqueue option reaches Redis unchanged, whichever way the job is sent."""

    @app.task
    def job(n: int) -> None: ...

    value, read, expected = OPTIONS[option]
    sent = PATHS[path](app, job, {option: value})
    assert read(_stored(app, sent)) == expected


@pytest.mark.parametrize("path", PATHS)
def test_queue_option_survives_path(app: streamq.App, queue: str, path: str) -> None:
    """queue= sends the job to that queue's stream on every path."""

    @app.task
    def job(n: int) -> None: ...

    other = queue + "b"
    sent = PATHS[path](app, job, {"queue": other})
    assert sent.queue == other
    assert _stored(app, sent).queue == other


@pytest.mark.parametrize("path", PATHS)
def test_unique_window_survives_path(app: streamq.App, queue: str, path: str) -> None:
    """unique_for_s refuses a finished job's id on every path (prepare dropped it before)."""

    @app.task
    def job(n: int) -> None: ...

    job.with_options(job_id="once").enqueue(1)
    _drain(app, queue)
    assert app.job("once").status() == "succeeded"
    again = PATHS[path](app, job, {"job_id": "once", "unique_for_s": 3600})
    assert again.created is False
    assert PATHS[path](app, job, {"job_id": "once"}).created is True


# -- consumer groups: refused without a trace ------------------------------------------------


def test_second_group_is_refused_without_creating_anything(app: streamq.App, queue: str) -> None:
    """A worker for a second group raises ConfigError and leaves no group behind."""
    keys = QueueKeys(queue)
    app.client().xgroup_create(keys.stream_for(0), "default", id="0", mkstream=True)
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), group="reporting", block_ms=10))
    with pytest.raises(ConfigError, match=r"already has consumer group\(s\) \['default'\]"):
        w.start()
    for stream in keys.streams:
        if app.client().exists(stream):
            assert [g["name"] for g in app.client().xinfo_groups(stream)] == [b"default"]
    streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=10)).start()
    assert all(
        [g["name"] for g in app.client().xinfo_groups(s)] == [b"default"] for s in keys.streams
    )


# -- command line ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamq", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unknown_log_level_is_a_usage_error() -> None:
    """--log-level verbose exits 2 with argparse's message, not a KeyError traceback."""
    out = _cli("--log-level", "verbose", "info")
    assert out.returncode == 2
    assert "invalid choice: 'verbose'" in out.stderr
    assert "Traceback" not in out.stderr


def test_global_options_are_accepted_after_the_command(
    app: streamq.App, queue: str, redis_server: RedisServer
) -> None:
    """--redis-url, --log-format and --log-level work after the subcommand too."""
    app.enqueue("t")
    out = _cli("info", "--queue", queue, "--redis-url", redis_server.url, "--log-level", "WARNING")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["queued"] == 1
    before = _cli("--redis-url", redis_server.url, "info", "--queue", queue, "--log-format", "json")
    assert before.returncode == 0, before.stderr
