"""The store on one Redis server for asyncio (``redis.asyncio``): the same plans as
:mod:`streamq.store.node`, sent without blocking the event loop.

Only how a batch is sent differs: one awaited call, or one pipeline, NOSCRIPT reloads of the
refused calls only. Every verb's rules are the plan's, shared with the blocking store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from streamq.errors import ConfigError
from streamq.plan import Batch, Op, Plan
from streamq.scripts import SCRIPT_NAMES, source
from streamq.settings import TlsSettings
from streamq.store import inspect, queue, records, schedules, upkeep
from streamq.store.node import judge, noscript, wrapped

P = ParamSpec("P")
T = TypeVar("T")


def connect(
    url: str,
    socket_timeout_s: float = 10.0,
    tls: TlsSettings | None = None,
    max_connections: int = 50,
) -> aioredis.Redis:
    """An asyncio client for ``url`` (no I/O yet), set up as :func:`streamq.store.base.connect`
    sets up the blocking one: timeouts, no hidden retries, a bounded pool that waits."""
    if socket_timeout_s <= 0:
        raise ConfigError("socket_timeout_s must be positive")
    if max_connections < 1:
        raise ConfigError("max_connections must be at least 1")
    extra: dict[str, Any] = {}
    if url.startswith("rediss://") and tls is not None:
        extra = {
            "ssl_ca_certs": tls.ca_certs,
            "ssl_certfile": tls.certfile,
            "ssl_keyfile": tls.keyfile,
            "ssl_check_hostname": tls.check_hostname,
        }
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        **extra,
        max_connections=max_connections,
        timeout=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=min(socket_timeout_s, 5.0),
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


class AsyncExecutor:
    """Runs plans against one ``redis.asyncio.Redis`` client, on the loop that created it."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in SCRIPT_NAMES
        }

    async def run(self, plan: Plan[T], what: str) -> T:
        """Drive ``plan`` to its result; ``what`` prefixes any error ("enqueue failed")."""
        with wrapped(what):
            try:
                batch = next(plan)
                while True:
                    batch = plan.send(await self._send(batch, what))
            except StopIteration as stop:
                result: T = stop.value
                return result

    async def _send(self, batch: Batch, what: str) -> list[Any]:
        ops = batch.ops
        if len(ops) == 1:
            try:
                replies = [await self._call(ops[0])]
            except redis.ResponseError as e:
                if not batch.tolerant:
                    raise
                replies = [e]
        else:
            replies = await self._pipeline(ops)
        return judge(replies, batch.tolerant, what)

    async def _call(self, op: Op) -> Any:
        if op.script:
            return await self._scripts[op.script](keys=list(op.keys), args=list(op.args))
        return await self.client.execute_command(*op.args)  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def _pipeline(self, ops: Sequence[Op]) -> list[Any]:
        replies = await self._pipe(ops)
        missing = noscript(replies)
        if missing:
            for name in {ops[i].script for i in missing}:
                await self.client.script_load(self._scripts[name].script)
            again = await self._pipe([ops[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipe(self, ops: Sequence[Op]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for op in ops:
            if op.script:
                sha = self._scripts[op.script].sha
                pipe.evalsha(sha, len(op.keys), *op.keys, *op.args)
            else:
                pipe.execute_command(*op.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies


class _Base:
    """One asyncio client and its executor."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._exec = AsyncExecutor(client)

    async def _run(self, plan: Plan[T], what: str) -> T:
        return await self._exec.run(plan, what)


def _verb(plan: Callable[P, Plan[T]], what: str) -> Callable[Concatenate[_Base, P], Awaitable[T]]:
    """A coroutine method that runs ``plan`` with the caller's arguments."""

    async def method(self: _Base, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(plan(*args, **kwargs), what)

    method.__name__ = plan.__name__.removesuffix("_plan")
    method.__doc__ = plan.__doc__
    return method


class AsyncStore(_Base):
    """Every queue verb over one asyncio Redis client, awaitable; one per event loop.

    The twin of :class:`streamq.store.node.Store`: the same verbs over the same plans.
    """

    # producing and consuming
    enqueue = _verb(queue.enqueue_plan, "enqueue failed")
    add = _verb(queue.add_plan, "enqueue failed")
    ensure_group = _verb(queue.ensure_group_plan, "group create failed")
    read = _verb(queue.read_plan, "read failed")
    entry = _verb(queue.entry_plan, "entry read failed")
    start = _verb(queue.start_plan, "start failed")
    ack = _verb(queue.ack_plan, "ack failed")
    bury = _verb(queue.bury_plan, "bury failed")
    touch = _verb(queue.touch_plan, "lease refresh failed")
    release = _verb(queue.release_plan, "release failed")
    # upkeep
    promote_due = _verb(upkeep.promote_due_plan, "promote failed")
    reclaim_idle = _verb(upkeep.reclaim_idle_plan, "reclaim failed")
    settle = _verb(upkeep.settle_plan, "settle failed")
    prune_consumers = _verb(upkeep.prune_consumers_plan, "prune failed")
    # job records and dead letters
    job_record = _verb(records.job_record_plan, "job lookup failed")
    set_progress = _verb(records.set_progress_plan, "progress failed")
    cancel = _verb(records.cancel_plan, "cancel failed")
    cancels = _verb(records.cancels_plan, "cancel list failed")
    forget_cancel = _verb(records.forget_cancel_plan, "cancel cleanup failed")
    dead_list = _verb(records.dead_list_plan, "dead-letter read failed")
    dead_replay = _verb(records.dead_replay_plan, "replay failed")
    dead_delete = _verb(records.dead_delete_plan, "dead-letter purge failed")
    # inspection
    stats = _verb(inspect.stats_plan, "stats failed")
    due_before = _verb(inspect.due_before_plan, "delayed count failed")
    server_info = _verb(inspect.server_info_plan, "info failed")
    config = _verb(inspect.config_plan, "config failed")
    has_command = _verb(inspect.has_command_plan, "command info failed")
    ping = _verb(inspect.ping_plan, "ping failed")
    # periodic schedules
    define_schedule = _verb(schedules.define_schedule_plan, "schedule write failed")
    schedules_due = _verb(schedules.schedules_due_plan, "schedule poll failed")
    schedule_record = _verb(schedules.schedule_record_plan, "schedule read failed")
    schedule_records = _verb(schedules.schedule_records_plan, "schedule read failed")
    schedule_ids = _verb(schedules.schedule_ids_plan, "schedule list failed")
    schedule_queues = _verb(schedules.schedule_queues_plan, "schedule list failed")
    schedule_ticks = _verb(schedules.schedule_ticks_plan, "schedule tick failed")
    pause_schedule = _verb(schedules.pause_schedule_plan, "schedule pause failed")
    undefine_schedule = _verb(schedules.undefine_schedule_plan, "schedule removal failed")

    async def aclose(self) -> None:
        """Close this store's connections (before its event loop ends)."""
        await self.client.aclose()
