"""Shared fixtures: one private Redis server per session, a fresh queue name per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import streamq
from streamq.settings import AppSettings, QueueSettings
from streamq.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of our own on a free port (``$STREAMQ_SERVER`` picks the binary)."""
    with RedisServer() as server:
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
