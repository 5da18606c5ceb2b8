"""One pub/sub connection per process for every ``job.result()`` waiter.

A waiter per connection would exhaust the connection pool (100 threads waiting held 100
connections, and other threads' enqueues failed). Here one daemon thread owns one PubSub,
subscribes a job's ``done`` channel while someone waits on it (reference counted in
:class:`~streamq.store.waiters.Waiters`), and wakes its waiters through threading events.

Nothing is missed: a waiter registers, then checks the record; the listener wakes the waiters
of a channel on each message *and* when its SUBSCRIBE is confirmed, so a job that finished
before the subscription took effect is seen by the re-check. After an outage the listener
reconnects and subscribes again, and the confirmations make every waiter re-check.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog

from streamq.clock import monotonic_ms
from streamq.errors import StreamqConnectionError
from streamq.outage import Outage
from streamq.store.waiters import Waiters

log = structlog.get_logger("streamq.results")

_READ_S = 0.01  # lets a reply split over two TCP segments complete instead of failing


class DoneListener:
    """The shared result listener of one process; starts its thread on the first wait."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._reset()

    def _reset(self) -> None:
        """Fresh state for this process (a forked child must not share the parent's thread)."""
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._waiters: Waiters[threading.Event] = Waiters()
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._outage = Outage()

    def wait(self, channel: str, timeout_s: float, is_done: Callable[[], bool]) -> bool:
        """Block until ``is_done()`` (checked now and on each wake-up) or ``timeout_s`` passes.

        Raises:
            StreamqConnectionError: Redis is away when the wait starts; during the wait an
                outage is ridden out (the record is checked again after the reconnect).
        """
        if self.pid != os.getpid():
            self._reset()
        key = channel.encode()
        event = threading.Event()
        with self._lock:
            if self._waiters.add(key, event):
                self._kick()
        try:
            deadline = time.monotonic() + timeout_s
            first = True
            while True:
                event.clear()  # before the check: a wake-up after it is never lost
                try:
                    if is_done():
                        return True
                except StreamqConnectionError:
                    if first:
                        raise
                first = False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                event.wait(left)
        finally:
            with self._lock:
                if self._waiters.remove(key, event):
                    self._kick()

    def _kick(self) -> None:
        """Tell the thread the wanted channels changed; start it the first time (under lock)."""
        if self._thread is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._thread = threading.Thread(target=self._run, name="streamq-results", daemon=True)
            self._thread.start()
        with contextlib.suppress(BlockingIOError):  # a full pipe already says "look"
            os.write(self._wake_w, b"x")

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            pubsub: Any = self.client.pubsub()  # type: ignore[no-untyped-call]  # untyped in redis-py
            try:
                self._serve(pubsub, set())
            # Anything, not only RedisError/OSError: this thread serves every waiter of the
            # process, and must outlive redis-py's own slips (seen: a TypeError from a
            # connection whose socket a Sentinel failover had dropped).
            except Exception as e:  # noqa: BLE001 - logged, then the listener reconnects
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
                    pubsub.close()
            down_s = (monotonic_ms() - (self._outage.down_since_ms or 0)) / 1000
            time.sleep(min(2.0, 0.05 * 2 ** min(down_s, 10)))

    def _serve(self, pubsub: Any, subscribed: set[bytes]) -> None:
        """Keep the subscriptions equal to what waiters want, and wake them, until an error."""
        while True:
            with self._lock:
                wanted = set(self._waiters.channels())
            if wanted - subscribed:
                pubsub.subscribe(*(wanted - subscribed))
            if subscribed - wanted:
                pubsub.unsubscribe(*(subscribed - wanted))
            subscribed.clear()
            subscribed.update(wanted)
            while (message := pubsub.get_message(timeout=_READ_S)) is not None:
                if message["type"] in ("message", "subscribe"):
                    self._wake(message["channel"])
            watched = [self._wake_r]
            if pubsub.connection is not None:
                sock = pubsub.connection._sock
                if sock is None:
                    raise redis.ConnectionError("pub/sub connection closed")
                watched.append(sock)
            readable, _, _ = select.select(watched, [], [])
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)

    def _wake(self, channel: bytes) -> None:
        """A message, or a confirmed (re)subscription: the channel's waiters check again."""
        down_ms = self._outage.succeeded(monotonic_ms())
        if down_ms is not None:
            log.info("redis.reconnected", loop="results", pid=os.getpid(), down_ms=down_ms)
        with self._lock:
            waiters = self._waiters.of(channel)
        for event in waiters:
            event.set()
