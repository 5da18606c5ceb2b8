"""Run the Python examples of the README and the docs pages as tests (sybil).

Every ```` ```python ```` block of a page runs, in order, in one namespace per page. A page's
examples talk to a server this session started on a free port (the way ``tests/conftest.py``
does, never a shared Redis): ``$STREAMQ_REDIS_URL`` points at it while an example runs, so
``streamq.App()`` in an example connects there. The server is emptied after each page, so
pages cannot see each other's jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

import streamq
from streamq.testing import RedisServer, find_server


@pytest.fixture(scope="session")
def docs_redis() -> Iterator[RedisServer]:
    """One private server for every docs page: redis-server from PATH, else Valkey."""
    with RedisServer(find_server()) as server:
        yield server


@pytest.fixture
def docs_env(docs_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """While an example runs, the default Redis URL is the private server's."""
    monkeypatch.setenv("STREAMQ_REDIS_URL", docs_redis.url)
    return docs_redis


def _teardown(namespace: dict[str, Any]) -> None:
    """Close the page's connections and empty the private server for the next page."""
    server = namespace.get("docs_env")
    if isinstance(server, RedisServer):
        client = redis.Redis.from_url(server.url)
        client.flushall()
        client.close()
    for value in namespace.values():
        if isinstance(value, streamq.App):  # the connection an example's App opened
            value.client().close()


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    fixtures=["docs_env"],
    teardown=_teardown,
).pytest()
