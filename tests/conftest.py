"""Shared fixtures: one private Redis server per session, a fresh queue name per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import streamq
from streamq.settings import AppSettings, QueueSettings
from streamq.testing import RedisServer, find_server


def _servers() -> list[str]:
    """Every test runs on Redis 7 and on Valkey, unless ``$STREAMQ_SERVER`` names one."""
    chosen = os.environ.get("STREAMQ_SERVER")
    return [chosen] if chosen else ["redis", "valkey"]


@pytest.fixture(scope="session", params=_servers())
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server of our own on a free port: redis-server from PATH, or Valkey from the extra."""
    with RedisServer(find_server(request.param)) as server:
        yield server


@pytest.fixture
def queue() -> str:
    """A queue name no other test uses, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def app(redis_server: RedisServer, queue: str) -> Iterator[streamq.App]:
    """An App on the private server whose default queue is this test's queue."""
    a = streamq.App(
        redis_server.url,
        AppSettings(
            default_queue=queue,
            default_queue_settings=QueueSettings(visibility_timeout_s=1.0, max_deliveries=3),
        ),
    )
    yield a
    a.client().close()


@pytest.fixture
def worker_env(redis_server: RedisServer, queue: str) -> dict[str, str]:
    """Environment for a worker subprocess running ``tests.apps.sample``."""
    env = dict(os.environ)
    env.update(STREAMQ_REDIS_URL=redis_server.url, SQ_TEST_QUEUE=queue, PYTHONUNBUFFERED="1")
    return env
