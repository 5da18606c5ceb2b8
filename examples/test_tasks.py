"""Tests of the example shop's tasks (examples/tasks.py) at the three levels of docs/testing.md.

The streamq pytest plugin comes with streamq; pyproject.toml names the App it binds:

    [tool.pytest.ini_options]
    streamq_app = "examples.tasks:app"
"""

from __future__ import annotations

import streamq
from examples import tasks
from streamq.testing import drain

# -- level 1: call the function: fast, no queue, for the logic of a task ----------------------


def test_send_email_says_what_it_sent() -> None:
    """A task called directly is a plain function call."""
    assert tasks.send_email("ann@example.com", "Hello") == "sent 'Hello' to ann@example.com"


# -- level 2: eager mode: enqueue runs the job inline, with no Redis --------------------------


def test_a_report_is_built_for_a_known_customer() -> None:
    """An eager enqueue returns a finished job whose result went through the codec."""
    with tasks.app.eager():
        job = tasks.generate_report.enqueue("acme", "2024-05")
    assert job.status() == "succeeded"
    assert job.result() == "report 2024-05 for Acme Corp"


def test_an_unknown_customer_ends_dead_after_its_retries() -> None:
    """Retries run at once (no backoff wait); the job ends dead as a worker would leave it."""
    with tasks.app.eager():
        job = tasks.generate_report.enqueue("umbrella", "2024-05")
    info = job.info()
    assert (info.status, info.reason, info.attempt) == ("dead", "max_retries", 4)
    assert info.error_type == "LookupError"


# -- level 3: real Redis: the plugin's private server, and drain() as the worker --------------


def test_a_flaky_image_is_retried_then_resized(streamq_app: streamq.App) -> None:
    """Against a real Redis, the first try times out, the retry succeeds."""
    job = tasks.resize_image.enqueue("flaky/cat.png", 320)
    assert job.status() == "queued"

    result = drain(streamq_app)

    assert (result.succeeded, result.failed, result.dead) == (1, 1, 0)
    assert [type(e) for e in result.errors] == [TimeoutError]
    assert job.result(timeout_s=5) == "flaky/cat.png resized to 320px"
