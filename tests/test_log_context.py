"""A task's own log lines carry its job's fields, and its prints stay inside the JSON stream."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator, MutableMapping

import pytest
import structlog

import streamq
from streamq import logging as sq_logging
from streamq.testing import RedisServer, drain, wait_until
from tests.helpers import Pool

OBSERVED = ["--app", "tests.apps.observed:app"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog and the stdlib root logger back as they were after the test."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


def _chatty(app: streamq.App) -> streamq.Task[[str], None]:
    @app.task
    def chatty(word: str) -> None:
        structlog.get_logger("shop").info("shop.ordered", word=word)
        logging.getLogger("shop").warning("stdlib says %s", word)

    return chatty


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_of_a_task_carry_its_job_fields(app: streamq.App) -> None:
    """structlog and stdlib lines logged by a task carry job_id, task, queue and attempt."""
    out = io.StringIO()
    sq_logging.configure("json", "info", out)
    job = _chatty(app).enqueue("tea")
    drain(app)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = [d for d in lines if d.get("event") in ("shop.ordered", "stdlib says tea")]
    assert len(mine) == 2
    for doc in mine:
        assert (doc["job_id"], doc["task"], doc["queue"], doc["attempt"]) == (
            job.id,
            "chatty",
            app.settings.default_queue,
            1,
        )
    stdlib = next(d for d in mine if d["event"] == "stdlib says tea")
    assert (stdlib["level"], stdlib["logger"]) == ("warning", "shop")
    started = next(d for d in lines if d["event"] == "worker.started")
    assert "job_id" not in started  # only lines logged while a job runs


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_of_a_task_carry_its_job_fields(app: streamq.App) -> None:
    """In the console format too, both kinds of line name the job."""
    out = io.StringIO()
    sq_logging.configure("console", "info", out)
    job = _chatty(app).enqueue("tea")
    drain(app)
    text = out.getvalue().splitlines()
    mine = [line for line in text if "shop.ordered" in line or "stdlib says tea" in line]
    assert len(mine) == 2
    for line in mine:
        assert f"job_id={job.id}" in line
        assert "task=chatty" in line
        assert "attempt=1" in line


@pytest.mark.usefixtures("restore_logging")
def test_an_app_that_configures_structlog_keeps_its_configuration(app: streamq.App) -> None:
    """structlog.configure after ours wins; add_job_fields in its chain still adds the job."""
    sq_logging.configure("json", "info", io.StringIO())
    assert sq_logging.in_force() == "json"
    seen: list[dict[str, object]] = []

    def keep(_l: object, _m: str, event: MutableMapping[str, object]) -> str:
        seen.append(dict(event))
        return "x"

    structlog.configure(
        processors=[sq_logging.add_job_fields, keep],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    assert sq_logging.in_force() is None
    assert sq_logging.capture_prints() is None  # their config: stdout is left alone
    job = _chatty(app).enqueue("tea")
    drain(app)
    (line,) = [e for e in seen if e["event"] == "shop.ordered"]
    assert line["job_id"] == job.id


@pytest.mark.slow
def test_pool_json_stream_carries_job_fields_and_wraps_prints(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """In a real pool every stdout line parses as JSON: a task's prints become task.print
    events, and its structlog, stdlib and print lines all carry the job's fields."""
    from tests.apps import observed

    observed.app.redis_url = redis_server.url
    job = observed.app.enqueue("chatty", args=["tea"], queue=queue)
    with Pool(worker_env, OBSERVED, processes=1) as pool:
        wait_until(lambda: len(pool.events("task.print")) >= 2, 20)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    events = pool.events()  # every line must parse
    fields = {"job_id": job.id, "task": "chatty", "queue": queue, "attempt": 1}
    mine = [
        e for e in events if e["event"] in ("shop.structlog_line", "stdlib line tea", "task.print")
    ]
    assert [e.get("line") for e in mine if e["event"] == "task.print"] == [
        "printed tea",
        "partial line",
    ]
    assert len(mine) == 4
    for e in mine:
        assert {k: e.get(k) for k in fields} == fields


@pytest.mark.slow
def test_pool_console_lines_carry_job_fields(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """With --log-format console a task's structlog and stdlib lines name its job."""
    from tests.apps import observed

    observed.app.redis_url = redis_server.url
    job = observed.app.enqueue("chatty", args=["tea"], queue=queue)
    with Pool(worker_env, [*OBSERVED, "--log-format", "console"], processes=1) as pool:
        wait_until(lambda: any("printed tea" in line for line in pool.lines), 20)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    mine = [line for line in pool.lines if "shop.structlog_line" in line or "stdlib line" in line]
    assert len(mine) == 2
    assert all(f"job_id={job.id}" in line and "task=chatty" in line for line in mine)
