"""The testing helpers users get: drain() and the pytest plugin's fixtures."""

from __future__ import annotations

import signal
import textwrap

import pytest

import streamq
from streamq.testing import RedisServer, drain
from streamq.testing.server import SHARED_PORT, free_port


def test_drain_runs_retries_and_follow_ups_at_once_and_counts_outcomes(
    app: streamq.App, queue: str
) -> None:
    """drain() runs every job (retries without their 60 s backoff, delayed and spawned ones)."""
    tries: dict[str, int] = {}

    @app.task(max_retries=2, backoff_base_s=60, backoff_cap_s=60)
    def flaky(tag: str, failures: int) -> str:
        tries[tag] = tries.get(tag, 0) + 1
        if tries[tag] <= failures:
            raise ConnectionError(f"{tag} try {tries[tag]}")
        follow_up.enqueue(tag)
        return tag

    @app.task
    def follow_up(tag: str) -> None:
        tries[tag + ":follow"] = 1

    handler = signal.getsignal(signal.SIGALRM)
    ok = flaky.enqueue("ok", 1)
    dead = flaky.enqueue("dead", 9)
    later = flaky.enqueue_in(3600, "later", 0)

    result = drain(app, timeout_s=20)

    assert (result.succeeded, result.failed, result.dead) == (4, 3, 1)
    assert len(result.errors) == 4
    assert all(isinstance(e, ConnectionError) for e in result.errors)
    assert (ok.result(timeout_s=5), later.result(timeout_s=5)) == ("ok", "later")
    assert dead.status() == "dead"
    assert tries == {"ok": 2, "dead": 3, "later": 1, "ok:follow": 1, "later:follow": 1}
    assert signal.getsignal(signal.SIGALRM) is handler


def test_drain_gives_up_after_its_timeout(app: streamq.App, queue: str) -> None:
    """A queue that is not empty by the deadline raises TimeoutError, with the counts so far."""

    @app.task
    def idle() -> None:
        pass

    idle.enqueue()
    with pytest.raises(TimeoutError, match="not drained"):
        drain(app, timeout_s=0)


def test_free_port_is_never_the_shared_port() -> None:
    """Servers the tests start never take 6379, where a shared Redis may run."""
    assert all(free_port() != SHARED_PORT for _ in range(20))


INNER_TASKS = """
import streamq

app = streamq.App("redis://127.0.0.1:1/0")

@app.task(max_retries=0)
def shout(word):
    if word == "boom":
        raise ValueError(word)
    return word.upper()
"""

INNER_TEST = """
from streamq.testing import drain
import inner_tasks

def test_runs_on_the_private_server(streamq_app, streamq_server):
    assert streamq_app is inner_tasks.app
    assert streamq_app.redis_url.startswith(f"redis://127.0.0.1:{streamq_server.port}/")
    assert streamq_server.port != 6379
    job = inner_tasks.shout.enqueue("hi")
    bad = inner_tasks.shout.enqueue("boom")
    result = drain(streamq_app)
    assert (result.succeeded, result.dead) == (1, 1)
    assert [str(e) for e in result.errors] == ["boom"]
    assert job.result(timeout_s=5) == "HI"

def test_each_test_starts_on_an_empty_database(streamq_app):
    assert streamq_app.client().dbsize() == 0

def test_no_server_needed_and_the_app_was_pointed_back():
    assert inner_tasks.shout("x") == "X"
    assert inner_tasks.app.redis_url == "redis://127.0.0.1:1/0"
"""


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the servers RedisServer starts during an in-process inner pytest run."""
    started: list[int] = []
    real = RedisServer.start

    def counting(self: RedisServer, timeout_s: float = 10.0) -> RedisServer:
        started.append(1)
        return real(self, timeout_s)

    monkeypatch.setattr(RedisServer, "start", counting)
    return started


def test_plugin_fixtures_bind_the_ini_app_and_start_one_server(
    pytester: pytest.Pytester, starts: list[int]
) -> None:
    """The ini option names the App; one session server serves every test that asks for it."""
    pytester.makepyfile(inner_tasks=INNER_TASKS, test_inner=INNER_TEST)
    pytester.makeini("[pytest]\nstreamq_app = inner_tasks:app\n")
    pytester.syspathinsert()
    run = pytester.runpytest("-p", "no:cacheprovider")
    run.assert_outcomes(passed=3)
    assert starts == [1]


def test_plugin_starts_no_server_for_tests_that_do_not_ask(
    pytester: pytest.Pytester, starts: list[int]
) -> None:
    """Installing streamq costs a suite nothing: no fixture used, no server started."""
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert starts == []


def test_plugin_app_can_come_from_an_overridden_fixture(pytester: pytest.Pytester) -> None:
    """A conftest fixture streamq_target_app chooses the App instead of the ini option."""
    pytester.makepyfile(inner_tasks=INNER_TASKS)
    pytester.makeconftest(
        textwrap.dedent(
            """
            import pytest
            import inner_tasks

            @pytest.fixture
            def streamq_target_app():
                return inner_tasks.app
            """
        )
    )
    pytester.makepyfile(
        test_override="def test_bound(streamq_app):\n    assert streamq_app.client().ping()\n"
    )
    pytester.syspathinsert()
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_plugin_says_how_to_name_the_app_when_none_is_set(pytester: pytest.Pytester) -> None:
    """Without the ini option or an override, streamq_app errors with what to set."""
    pytester.makepyfile(test_missing="def test_missing(streamq_app):\n    pass\n")
    run = pytester.runpytest("-p", "no:cacheprovider")
    run.assert_outcomes(errors=1)
    run.stdout.fnmatch_lines(["*no App to test*streamq_app*"])
