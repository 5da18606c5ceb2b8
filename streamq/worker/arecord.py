"""How the asyncio worker records outcomes: buffered as jobs end, written by one flusher task.

The rules are the sync worker's (``outcomes.py`` decides retry or bury, ``acks.py`` holds the
rows and writes one ``ack`` per stream per flush); only the waiting differs: jobs end on the
loop (or on the sync thread, for progress), and a flusher writes every ``ack_flush_ms`` while
jobs run, at once when none does. It also keeps the set of entries read and not yet written,
which an asyncio worker must skip when it re-reads its own pending entries after an outage
(other jobs kept running meanwhile).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streamq.clock import monotonic_ms, now_ms
from streamq.errors import DecodeError, RedisCommandError, StreamqConnectionError
from streamq.job import Envelope
from streamq.outage import Outage
from streamq.producer.app import App
from streamq.settings import WorkerSettings
from streamq.store import Entry
from streamq.store.aio import AsyncStore
from streamq.worker.acks import (
    AckBuffer,
    DeferredProgress,
    check_acked,
    log_finished,
    log_lease_lost,
    log_lost,
    retry_delay_s,
)
from streamq.worker.arun import Run
from streamq.worker.loop import OutcomeHook
from streamq.worker.middleware import DEAD, RETRYING
from streamq.worker.outcomes import Burial, Outcomes, Retrying

CONN_ERRORS = (StreamqConnectionError, RedisCommandError)


class Link:
    """One process's view of Redis (the outage tracker shared by its reader and flusher)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.outage = Outage()
        self._rng = random.Random()

    async def lost(self, error: Exception) -> None:
        """Log the loss (first, then reminders) and back off with jitter."""
        log_lost(self.log, self.outage.failed(monotonic_ms()), error)
        down_ms = monotonic_ms() - (self.outage.down_since_ms or 0)
        await asyncio.sleep(retry_delay_s(down_ms, self._rng))

    def back(self) -> None:
        """``redis.reconnected`` once, when an outage ends."""
        down_ms = self.outage.succeeded(monotonic_ms())
        if down_ms is not None:
            self.log.info("redis.reconnected", pid=os.getpid(), down_ms=down_ms)


class Recorder:
    """Outcomes of one asyncio worker's jobs, until Redis has them."""

    def __init__(
        self,
        app: App,
        settings: WorkerSettings,
        consumer: str,
        log: Any,
        on_outcome: OutcomeHook | None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.outcomes = Outcomes(app, settings.group, consumer, log, settings.log_args)
        self.held: set[tuple[str, bytes]] = set()  # (stream, entry id) read, not yet written
        self.busy: Callable[[], bool] = lambda: False  # jobs running: batch the acks
        self._app = app
        self._acks = AckBuffer()
        self._burials: list[tuple[Burial, str | None]] = []
        self._on_outcome = on_outcome
        self._closing = False
        # Told after each flush (middleware's after_batch: metrics write their counts then).
        self.after_flush: Callable[[], Awaitable[None]] | None = None

    def open(self, store: AsyncStore, link: Link) -> DeferredProgress:
        """Bind to the running loop and the store outcomes go through; return the progress
        writer tasks' ``current_job()`` uses."""
        self._loop = asyncio.get_running_loop()
        self._store, self._link = store, link
        self._due, self._lock = asyncio.Event(), asyncio.Lock()
        self.progress = DeferredProgress(self._app.store, self.wake)
        return self.progress

    # -- outcomes ----------------------------------------------------------------------------
    def finished(self, run: Run, state: str, result: bytes) -> None:
        """A run that ended ``succeeded`` or ``cancelled``."""
        self._acks.finished(run.entry, run.env, state, result, run.task.options.record_ttl_ms)
        if self._on_outcome:
            self._on_outcome(state, run.env, None)
        log_finished(self.log, run.env, state, ms_since(run.started), self.settings)
        self.wake()

    def failed(self, run: Run, exc: BaseException) -> str:
        """A run that raised: its next attempt, or its dead letter, by the shared policy;
        returns which (``retrying`` or ``dead``)."""
        outcome = self.outcomes.failed(run.entry, run.env, exc, ms_since(run.started))
        if self._on_outcome:
            self._on_outcome("retry" if isinstance(outcome, Retrying) else "dead", run.env, exc)
        if isinstance(outcome, Retrying):
            self._acks.retry(run.entry, outcome.row())
            self.wake()
            return RETRYING
        self.bury(outcome, run.env.id)
        return DEAD

    def unrunnable(self, entry: Entry, env: Envelope | DecodeError) -> None:
        """An entry no worker can run (undecodable, unknown task): dead-lettered."""
        burial, job_id = self.outcomes.unrunnable(entry, env)
        self.bury(burial, job_id)
        if self._on_outcome:
            self._on_outcome(
                "dead", None if job_id is None or isinstance(env, Exception) else env, None
            )

    def bury(self, burial: Burial, job_id: str | None) -> None:
        """Queue a dead-letter write for the flusher."""
        self._burials.append((burial, job_id))
        self.wake()

    def wake(self) -> None:
        """Ask for a flush; safe from any thread (progress is set from the sync thread)."""
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here:
            self._due.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._due.set)

    # -- writing -----------------------------------------------------------------------------
    async def flusher(self) -> None:
        """Write outcomes every ``ack_flush_ms`` while jobs run, at once when idle; ended by
        :meth:`close` (a flag: a cancel can be lost inside redis-py's own timeouts)."""
        while not self._closing:
            await self._due.wait()
            if self.busy():
                await asyncio.sleep(self.settings.ack_flush_ms / 1000)
            self._due.clear()
            try:
                await self.flush()
                self._link.back()
                if self.after_flush is not None:
                    await self.after_flush()
            except CONN_ERRORS as e:
                self._due.set()
                await self._link.lost(e)

    def close(self) -> None:
        """End :meth:`flusher` (after its current flush)."""
        self._closing = True
        self._due.set()

    async def flush(self) -> None:
        """Progress first (the records still exist), then acks, then dead letters."""
        async with self._lock:
            await self.progress.write(self._store)
            group = self.settings.group
            while self._acks:
                keys, priority, rows = self._acks.take()
                try:
                    acked, lost = await self._store.ack(keys, priority, group, now_ms(), *rows)
                except BaseException:
                    self._acks.restore(keys, priority, rows)
                    raise
                check_acked(self.log, keys, rows, acked, lost)
                stream = keys.stream_for(priority)
                done, retries = rows
                self.held.difference_update((stream, f.entry_id) for f in done)
                self.held.difference_update((stream, r.entry_id) for r in retries)
            while self._burials:
                burial, job_id = self._burials[0]
                if not await self._store.bury(*burial):
                    log_lease_lost(self.log, job_id)
                self._burials.pop(0)
                self.held.discard((burial.entry.stream, burial.entry.id))


def ms_since(start: float) -> float:
    """Milliseconds since the perf_counter time ``start``, as job lines show them."""
    return round((time.perf_counter() - start) * 1000, 3)
