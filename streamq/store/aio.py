"""The store on one Redis server for asyncio (``redis.asyncio``): the same plans as
:mod:`streamq.store.node`, sent without blocking the event loop.

Only how a batch is sent differs: one awaited call, or one pipeline, NOSCRIPT reloads of the
refused calls only. Every verb's rules are the plan's, shared with the blocking store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from streamq.keys import QueueKeys
from streamq.plan import Batch, Op, Plan
from streamq.scripts import SCRIPT_NAMES, source
from streamq.store import inspect, queue, records, schedules, upkeep, views
from streamq.store.alistener import AsyncDoneListener
from streamq.store.node import judge, noscript, wrapped

P = ParamSpec("P")
T = TypeVar("T")


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
        return await self.client.execute_command(*op.args, **dict(op.options))  # type: ignore[no-untyped-call]  # untyped in redis-py

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
                pipe.execute_command(*op.args, **dict(op.options))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies


class _Base:
    """One asyncio client, its executor and its result listener (started on the first wait)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._exec = AsyncExecutor(client)
        self.listener = AsyncDoneListener(client)

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
    busy = _verb(inspect.busy_plan, "busy count failed")
    gauges = _verb(views.gauges_plan, "gauges failed")
    server_info = _verb(inspect.server_info_plan, "info failed")
    config = _verb(inspect.config_plan, "config failed")
    has_command = _verb(inspect.has_command_plan, "command info failed")
    ping = _verb(inspect.ping_plan, "ping failed")
    # views for people: the dashboard, `streamq info`, the metrics exporter
    throughput = _verb(views.throughput_plan, "throughput read failed")
    depth = _verb(views.depth_plan, "depth read failed")
    pending = _verb(views.pending_plan, "pending read failed")
    delayed_page = _verb(views.delayed_page_plan, "delayed read failed")
    dead_recent = _verb(views.dead_recent_plan, "dead-letter read failed")
    job_fields = _verb(views.job_fields_plan, "job lookup failed")
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

    async def wait_done(
        self,
        keys: QueueKeys,
        job_id: str,
        timeout_s: float,
        is_done: Callable[[], Awaitable[bool]],
    ) -> bool:
        """Wait (pub/sub, no polling) until the job is final or ``timeout_s`` passes.

        Through this loop's one shared listener (:mod:`streamq.store.alistener`): many
        waiting coroutines hold one connection. ``is_done`` is awaited after registering and
        again on every wake-up, so a finish in between is not missed.
        """
        return await self.listener.wait(keys.done_channel(job_id), timeout_s, is_done)

    async def aclose(self) -> None:
        """Close this store's listener and connections (before its event loop ends)."""
        await self.listener.aclose()
        # A client given its pool does not close it by itself.
        await self.client.aclose(close_connection_pool=True)


class LoopStores:
    """One :class:`AsyncStore` per running event loop, and per process.

    A redis.asyncio connection belongs to the loop that opened it, so each loop (a thread
    with its own loop, a test's ``asyncio.run``) gets its own store and bounded pool. A
    store closes when its loop ends: a task that only waits is cancelled by ``asyncio.run``
    (and by any runner that cancels leftover tasks) and closes the store, so no connection
    outlives its loop; ``aclose`` closes it earlier. A forked child opens its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._by_loop: dict[asyncio.AbstractEventLoop, tuple[str, AsyncStore, asyncio.Task[None]]]
        self._by_loop = {}

    def current(self, url: str, open_store: Callable[[], AsyncStore]) -> AsyncStore:
        """The running loop's store for ``url``, opened on first use (no I/O yet)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pid != os.getpid():  # the parent's sockets are not ours to use or close
                self._pid, self._by_loop = os.getpid(), {}
            for gone in [lp for lp in self._by_loop if lp.is_closed()]:
                del self._by_loop[gone]  # a loop closed without cancelling its tasks
            held = self._by_loop.get(loop)
            if held is not None and held[0] == url:
                return held[1]
            store = open_store()
            closer = loop.create_task(self._close_at_end(store), name="streamq-store-closer")
            self._by_loop[loop] = (url, store, closer)
        if held is not None:  # the URL changed: the old store closes now
            held[2].cancel()
        return store

    async def aclose(self) -> None:
        """Close the running loop's store, if it has one; the next call opens a new one."""
        with self._lock:
            held = self._by_loop.pop(asyncio.get_running_loop(), None)
        if held is not None:
            held[2].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held[2]

    async def _close_at_end(self, store: AsyncStore) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_future()  # until cancelled: by aclose, or as the loop ends
        finally:
            with self._lock:
                held = self._by_loop.get(loop)
                if held is not None and held[1] is store:
                    del self._by_loop[loop]
            await store.aclose()
