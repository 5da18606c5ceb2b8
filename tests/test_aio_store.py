"""The asyncio store runs the same plans as the blocking one, against a real server."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import redis.asyncio as aioredis

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.errors import StreamqConnectionError
from streamq.job import PRIORITY_HIGH, PRIORITY_LOW
from streamq.keys import QueueKeys
from streamq.scripts import Finished
from streamq.store import NewJob, Store
from streamq.store.aio import AsyncStore
from streamq.testing import RedisServer


def _verbs(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def test_both_stores_serve_the_same_verbs() -> None:
    """A verb added to one store and not the other fails here (sync reset, async aclose aside)."""
    assert _verbs(Store) - {"reset"} == _verbs(AsyncStore) - {"aclose"}
    for name in _verbs(AsyncStore) - {"aclose"}:
        assert inspect.iscoroutinefunction(getattr(AsyncStore, name)), name


def test_a_job_goes_through_the_async_store(
    app: streamq.App, queue: str, redis_server: RedisServer
) -> None:
    """Enqueue, read, start and ack through the async store; the blocking store agrees."""
    keys = QueueKeys(queue)
    env = app.envelope("t", [1])

    async def scenario() -> tuple[list[tuple[bool, str]], dict[str, bytes]]:
        store = AsyncStore(aioredis.Redis.from_url(redis_server.url))
        try:
            job = NewJob(keys, env.id, env.task, env.priority, codec.encode(env))
            created = await store.enqueue([job], now_ms())
            await store.ensure_group(keys, "g")
            (entry,) = await store.read([(keys, env.priority)], "g", "c", 10, None)
            assert await store.start("g", "c", now_ms(), [entry], [env.id], [1]) == [True]
            running = await store.job_record(keys, env.id)
            done = Finished(entry.id, keys.job(env.id), env.id, "succeeded", b"", 60_000)
            assert await store.ack(keys, env.priority, "g", now_ms(), [done]) == (1, 0)
            return created, running
        finally:
            await store.aclose()

    created, running = asyncio.run(scenario())
    assert created[0][0] is True
    assert running["state"] == b"running"
    assert app.store.job_record(keys, env.id)["state"] == b"succeeded"
    assert app.store.stats(keys, "g").queued == 0


def test_the_async_store_reloads_scripts_after_a_flush(
    app: streamq.App, queue: str, redis_server: RedisServer
) -> None:
    """A pipelined batch of script calls survives an empty script cache on asyncio too."""
    keys = QueueKeys(queue)
    app.store.add([NewJob(keys, f"j{p}", "t", p, b"x", 1) for p in (PRIORITY_HIGH, PRIORITY_LOW)])
    app.store.client.script_flush()

    async def promote() -> tuple[int, int]:
        store = AsyncStore(aioredis.Redis.from_url(redis_server.url))
        try:
            return await store.promote_due(keys, 10)
        finally:
            await store.aclose()

    assert asyncio.run(promote()) == (2, -1)


def test_the_async_store_wraps_connection_errors() -> None:
    """An unreachable server is a StreamqConnectionError naming the verb, as when blocking."""

    async def ping() -> None:
        store = AsyncStore(aioredis.Redis.from_url("redis://127.0.0.1:1/0"))
        try:
            await store.ping()
        finally:
            await store.aclose()

    with pytest.raises(StreamqConnectionError, match="ping failed"):
        asyncio.run(ping())
