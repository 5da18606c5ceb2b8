"""The dead-letter workflow, in the library and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import streamq
from streamq.job import PRIORITY_NORMAL
from streamq.keys import QueueKeys
from streamq.settings import WorkerSettings
from streamq.testing import RedisServer
from tests.helpers import ROOT


def _bury_three(app: streamq.App, queue: str) -> list[str]:
    """Dead-letter three jobs of two tasks through a real worker step; return their job ids."""
    runs: list[str] = []

    @app.task(max_retries=0)
    def broken(tag: str) -> None:
        runs.append(tag)
        if not tag.startswith("fixed"):
            raise RuntimeError(f"{tag} broke")

    @app.task(max_retries=0)
    def other() -> None:
        raise KeyError("x")

    jobs = [broken.enqueue("a"), broken.enqueue("b"), other.enqueue()]
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=10))
    w.start()
    while w.run_once():
        pass
    assert app.client().xlen(QueueKeys(queue).dead) == 3
    return [j.id for j in jobs]


def test_replay_runs_the_job_again_with_a_fresh_attempt(app: streamq.App, queue: str) -> None:
    """A replayed job leaves the dead-letter stream and runs again from attempt 1."""
    ids = _bury_three(app, queue)
    dead = streamq.DeadLetters(app.store, queue)
    target = dead.list(task="broken")[0]
    assert target.job_id == ids[0]
    progress: list[int] = []
    assert dead.replay([target.id], progress=progress.append) == 1
    assert progress == [1]
    assert dead.replay([target.id]) == 0  # already moved: replaying twice adds nothing
    assert len(dead.list()) == 2
    seen: list[tuple[str, int]] = []

    def fixed(tag: str) -> None:
        seen.append((tag, 1))

    app.tasks["broken"].fn = fixed
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=10))
    w.start()
    while w.run_once():
        pass
    assert seen == [("a", 1)]
    assert app.client().xlen(QueueKeys(queue).stream) == 0


def test_purge_by_task_and_all(app: streamq.App, queue: str) -> None:
    """Purge removes exactly what it is asked to."""
    _bury_three(app, queue)
    dead = streamq.DeadLetters(app.store, queue)
    assert dead.purge(task="other") == 1
    assert {d.task for d in dead.list()} == {"broken"}
    assert dead.purge() == 2
    assert dead.list() == []


def _cli(server: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamq", "--redis-url", server.url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_dead_list_show_replay_purge(
    app: streamq.App, queue: str, redis_server: RedisServer
) -> None:
    """`streamq dead` lists, shows with traceback, replays and purges; refuses a bare purge."""
    _bury_three(app, queue)
    listed = [
        json.loads(line)
        for line in _cli(redis_server, "dead", "list", "--queue", queue).stdout.splitlines()
    ]
    assert [row["task"] for row in listed] == ["broken", "broken", "other"]
    assert listed[0]["error"] == "RuntimeError: a broke"
    shown = json.loads(
        _cli(redis_server, "dead", "show", "--queue", queue, "--id", listed[0]["id"]).stdout
    )
    assert "RuntimeError: a broke" in shown["traceback"]
    refused = _cli(redis_server, "dead", "purge", "--queue", queue)
    assert refused.returncode == 2
    assert "--all" in refused.stderr
    replayed = _cli(redis_server, "dead", "replay", "--queue", queue, "--task", "broken")
    assert json.loads(replayed.stdout) == {"replay": 2}
    assert "replayed 2" in replayed.stderr  # progress
    assert app.client().xlen(QueueKeys(queue).stream) == 2
    purged = _cli(redis_server, "dead", "purge", "--queue", queue, "--all")
    assert json.loads(purged.stdout) == {"purge": 1}


def test_cli_info_reports_depth(app: streamq.App, queue: str, redis_server: RedisServer) -> None:
    """`streamq info` shows queued, pending per consumer, delayed and dead counts."""

    @app.task
    def t() -> None: ...

    for _ in range(3):
        t.enqueue()
    t.enqueue_in(60)
    keys = QueueKeys(queue)
    app.store.ensure_group(keys, "default")
    app.store.read([(keys, PRIORITY_NORMAL)], "default", "c1", 1, 10)
    info = json.loads(_cli(redis_server, "info", "--queue", queue).stdout)
    assert info == {
        "queue": queue,
        "group": "default",
        "queued": 2,
        "pending": 1,
        "delayed": 1,
        "dead": 0,
        "consumers": {"c1": 1},
        "last_hour": {"succeeded": 0, "retried": 0, "dead": 0, "cancelled": 0},
    }
