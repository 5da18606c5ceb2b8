"""One pub/sub connection per event loop for every ``await job.aresult()`` waiter.

The asyncio twin of :mod:`streamq.store.listener`, with the same bookkeeping
(:class:`~streamq.store.waiters.Waiters`) and the same rule: a waiter registers, then checks
the record; the listener wakes a channel's waiters on each message *and* on each confirmed
(re)subscription, so a job that finished before the SUBSCRIBE took effect is seen by the
re-check. After an outage it reconnects and subscribes again, and the confirmations make every
waiter re-check.

Two tasks share the connection: a reader that waits for replies, and a syncer that sends
SUBSCRIBE/UNSUBSCRIBE when the wanted channels change. Cancelling a read would make redis-py
drop the connection, so the reader is never interrupted to send a command; in asyncio a send
while another task reads is safe (the stream's writer and reader are independent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
import structlog

from streamq.clock import monotonic_ms
from streamq.errors import StreamqConnectionError
from streamq.outage import Outage
from streamq.store.waiters import Waiters

log = structlog.get_logger("streamq.results")


class AsyncDoneListener:
    """The shared result listener of one event loop; starts its task on the first wait."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._waiters: Waiters[asyncio.Event] = Waiters()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage()
        self.pid = os.getpid()

    async def wait(
        self, channel: str, timeout_s: float, is_done: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait until ``is_done()`` (checked now and on each wake-up) or ``timeout_s`` passes.

        Raises:
            StreamqConnectionError: Redis is away when the wait starts; during the wait an
                outage is ridden out (the record is checked again after the reconnect).
        """
        key = channel.encode()
        event = asyncio.Event()
        if self._waiters.add(key, event):
            self._kick()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        first = True
        try:
            while True:
                event.clear()  # before the check: a wake-up after it is never lost
                try:
                    if await is_done():
                        return True
                except StreamqConnectionError:
                    if first:
                        raise
                first = False
                left = deadline - loop.time()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), left)
        finally:
            if self._waiters.remove(key, event):
                self._kick()

    def _kick(self) -> None:
        """The wanted channels changed: tell the syncer; start the task the first time."""
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="streamq-results")

    async def aclose(self) -> None:
        """Stop the task and close its connection."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the task --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            pubsub: Any = self.client.pubsub()
            try:
                await self._serve(pubsub)
            except (redis.RedisError, OSError) as e:
                notice = self._outage.failed(monotonic_ms())
                if notice is not None:
                    log.warning(
                        "results.listener_failed",
                        pid=os.getpid(),
                        error_message=f"{type(e).__name__}: {e}",
                        down_ms=notice.down_ms,
                        failures=notice.failures,
                    )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            down_s = (monotonic_ms() - (self._outage.down_since_ms or 0)) / 1000
            await asyncio.sleep(min(2.0, 0.05 * 2 ** min(down_s, 10)))

    async def _serve(self, pubsub: Any) -> None:
        """Keep the subscriptions equal to what waiters want, and wake them, until an error."""
        subscribed: set[bytes] = set()
        while not subscribed:  # a first channel to subscribe (the reader needs a connection)
            await self._sync(pubsub, subscribed)
            if not subscribed:
                await self._changed.wait()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(pubsub), name="streamq-results-reader")
        changed: asyncio.Task[Any] | None = None
        try:
            while True:
                changed = loop.create_task(self._changed.wait())
                await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reader.result()  # the read's error
                await self._sync(pubsub, subscribed)
        finally:
            if changed is not None:
                changed.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, redis.RedisError, OSError):
                await reader

    async def _sync(self, pubsub: Any, subscribed: set[bytes]) -> None:
        """Make the subscriptions equal to what waiters want now."""
        self._changed.clear()
        wanted = set(self._waiters.channels())
        if wanted - subscribed:
            await pubsub.subscribe(*(wanted - subscribed))
        if subscribed - wanted:
            await pubsub.unsubscribe(*(subscribed - wanted))
        subscribed.clear()
        subscribed.update(wanted)

    async def _read(self, pubsub: Any) -> None:
        while True:
            # Blocks without a timeout (an idle subscriber gets no replies); a dead
            # connection ends the read with an error.
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] in ("message", "subscribe"):
                self._wake(message["channel"])

    def _wake(self, channel: bytes) -> None:
        """A message, or a confirmed (re)subscription: the channel's waiters check again."""
        down_ms = self._outage.succeeded(monotonic_ms())
        if down_ms is not None:
            log.info("redis.reconnected", loop="results", pid=os.getpid(), down_ms=down_ms)
        for event in self._waiters.of(channel):
            event.set()
