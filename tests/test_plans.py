"""The store's plans and their executor: batches, refusals, NOSCRIPT, on a real server."""

from __future__ import annotations

import pytest

import streamq
from streamq.errors import RedisCommandError, StreamqConnectionError
from streamq.job import PRIORITY_HIGH, PRIORITY_LOW
from streamq.keys import QueueKeys
from streamq.plan import Batch, Plan, cmd, refused
from streamq.store import NewJob
from streamq.store.upkeep import promote_due_plan


def _delayed(keys: QueueKeys, priority: int, due_ms: int) -> NewJob:
    return NewJob(keys, f"j{priority}", "t", priority, b"payload", due_ms)


def test_a_plan_without_commands_needs_no_round_trip() -> None:
    """A plan that returns before yielding gives its value and sends nothing (here: to a
    port where nothing listens, which any command would fail on)."""

    def nothing() -> Plan[int]:
        if False:
            yield Batch([])
        return 7

    store = streamq.App("redis://127.0.0.1:1/0").store
    assert store._run(nothing(), "x") == 7
    with pytest.raises(StreamqConnectionError):
        store.ping()


def test_pipelined_scripts_survive_an_empty_script_cache(app: streamq.App, queue: str) -> None:
    """After SCRIPT FLUSH (a restart or failover), a batch of script calls loads the scripts
    and runs each call exactly once."""
    keys = QueueKeys(queue)
    app.store.add([_delayed(keys, p, 1) for p in (PRIORITY_HIGH, PRIORITY_LOW)])
    app.store.client.script_flush()
    moved, nxt = app.store._run(promote_due_plan(keys, 10), "promote failed")
    assert (moved, nxt) == (2, -1)
    assert app.store.client.xlen(keys.stream_for(PRIORITY_HIGH)) == 1
    assert app.store.client.xlen(keys.stream_for(PRIORITY_LOW)) == 1


def test_a_tolerant_batch_hands_refusals_to_the_plan(app: streamq.App, queue: str) -> None:
    """In a tolerant batch a refused command is a value in its place; the others still run."""
    keys = QueueKeys(queue)

    def plan() -> Plan[list[bool]]:
        replies = yield Batch(
            [cmd("SET", keys.dead + "x", "v"), cmd("XINFO GROUPS", keys.stream)], tolerant=True
        )
        return [refused(r) for r in replies]

    assert app.store._run(plan(), "probe failed") == [False, True]
    assert app.store.client.get(keys.dead + "x") == b"v"


def test_a_strict_batch_raises_the_refusal(app: streamq.App, queue: str) -> None:
    """Outside a tolerant batch a refused command raises RedisCommandError naming the verb."""
    keys = QueueKeys(queue)

    def plan() -> Plan[None]:
        yield Batch([cmd("PING"), cmd("XINFO GROUPS", keys.stream)])

    with pytest.raises(RedisCommandError, match="probe failed"):
        app.store._run(plan(), "probe failed")
