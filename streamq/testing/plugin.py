"""The pytest plugin: a private Redis for the test session and your App pointed at it.

Installed with streamq (the ``pytest11`` entry point), nothing to enable. Fixtures start
nothing until a test asks for them:

- ``streamq_server``: a Redis (or Valkey) of the session's own on a free port, never 6379.
- ``streamq_target_app``: the App your tests use, unbound; from the ``streamq_app`` ini option
  (``module:attribute``, as for ``streamq worker --app``), or override this fixture.
- ``streamq_app``: that App pointed at a freshly flushed database of ``streamq_server`` for
  one test, and pointed back afterwards.

Run its jobs with :func:`streamq.testing.drain`. See docs/testing.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
import redis

from streamq.errors import ConfigError
from streamq.producer.app import App
from streamq.testing.server import RedisServer, find_server

INI_APP = "streamq_app"
DB = 1  # not 0: a test App left pointing at the server by mistake never sees db 0's data


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini option naming the App under test."""
    parser.addini(
        INI_APP,
        "the App your tests enqueue to, as module:attribute (as for `streamq worker --app`)",
        default="",
    )


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and return the App it names.

    Raises:
        ConfigError: ``spec`` is malformed or names something that is not an App.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{INI_APP} must look like module:attribute, got {spec!r}")
    app = getattr(importlib.import_module(module_name), attr)
    if not isinstance(app, App):
        raise ConfigError(f"{spec} is a {type(app).__name__}, not a streamq.App")
    return app


@pytest.fixture(scope="session")
def streamq_server() -> Iterator[RedisServer]:
    """A private Redis/Valkey for this test session (``$STREAMQ_SERVER`` picks which)."""
    with RedisServer(find_server()) as server:
        yield server


@pytest.fixture
def streamq_target_app(pytestconfig: pytest.Config) -> App:
    """The App under test, from the ``streamq_app`` ini option; override it to choose."""
    spec = str(pytestconfig.getini(INI_APP))
    if not spec:
        raise ConfigError(
            'no App to test: set `streamq_app = "module:attribute"` under [tool.pytest.ini_options]'
            " (or [pytest]), or override the streamq_target_app fixture to return one"
        )
    return load_app(spec)


@pytest.fixture
def streamq_app(streamq_server: RedisServer, streamq_target_app: App) -> Iterator[App]:
    """The App under test on an empty database of ``streamq_server``, for one test."""
    app = streamq_target_app
    url = f"redis://127.0.0.1:{streamq_server.port}/{DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    saved = app.redis_url
    app.close()
    app.redis_url = url
    try:
        yield app
    finally:
        app.close()
        app.redis_url = saved
