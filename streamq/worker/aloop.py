"""The asyncio worker: one process runs up to ``concurrency`` jobs at once on an event loop.

It follows every rule of the sync worker (:mod:`streamq.worker.loop`) through the same
code: decoding and priority order (``batch.py``), retry or bury (``outcomes.py``), the ack
buffer and its flush shape (``acks.py``), the outage tracker, ``current_job()`` (a
contextvar, so each asyncio task sees its own job), the canonical lines. It differs in how
it waits:

- one reader task blocks in XREADGROUP on a connection of its own, asking for at most the
  free slots plus a small prefetch; start, acks and dead letters go over another connection;
- read entries wait in a heap, highest priority first: when a slot frees, the highest starts
  (after a quick look for newly arrived higher-priority work, as the sync worker does);
- a flusher task writes outcomes every ``ack_flush_ms`` (one ``ack`` per stream);
- ``async def`` tasks run as asyncio tasks under ``asyncio.timeout``; sync tasks run one at a
  time on one thread (:class:`streamq.worker.arun.SyncThread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog

from streamq.clock import now_ms
from streamq.errors import Cancelled, TimeLimitExceeded
from streamq.job import PRIORITY_HIGH, Envelope
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.policy import result_bytes
from streamq.producer.app import App
from streamq.producer.context import _current
from streamq.settings import WorkerSettings
from streamq.store import Entry
from streamq.store.aio import AsyncStore
from streamq.store.base import aconnect
from streamq.worker.acks import (
    log_skipped,
)
from streamq.worker.arecord import CONN_ERRORS, Link, Recorder
from streamq.worker.arun import LoopWatchdog, Run, SyncThread, call_async, publish
from streamq.worker.batch import (
    Item,
    decode_all,
    entry_s,
    read_room,
    time_limit_ms,
    weighted_order,
)
from streamq.worker.loop import OutcomeHook, consumer_name, group_taken
from streamq.worker.middleware import (
    CANCELLED,
    SUCCEEDED,
    Chain,
    Outcome,
    arun_start_hooks,
    arun_stop_hooks,
)
from streamq.worker.slots import Slots

log = structlog.get_logger("streamq.worker")


class AsyncWorker:
    """Runs jobs of one consumer group on an event loop; one instance per process.

    The constructor has no side effects; :meth:`run` connects. ``slots``/``slot`` are the
    shared-memory slots ``slot`` .. ``slot + concurrency - 1`` through which a supervisor
    sees the running jobs (time limits, cancellation); None when run alone. On :meth:`stop`
    running jobs get ``grace_s`` to finish, then are cancelled and handed back.
    """

    def __init__(
        self,
        app: App,
        settings: WorkerSettings,
        consumer: str | None = None,
        slots: Slots | None = None,
        slot: int = 0,
        on_outcome: OutcomeHook | None = None,
        grace_s: float = 30.0,
    ) -> None:
        self.app = app
        self.settings = settings
        self.consumer = consumer or consumer_name()
        self.queues = [QueueKeys(q) for q in settings.queues]
        self.streams = [(k, p) for k in self.queues for p in PRIORITY_LEVELS]
        self.grace_s = grace_s
        self.processed = 0
        self._slots, self._slot = slots, slot
        self._log = log.bind(group=settings.group, consumer=self.consumer)
        self._record = Recorder(app, settings, self.consumer, self._log, on_outcome)
        self._record.busy = lambda: bool(self._runs)
        self._link = Link(self._log)
        self._ready: list[tuple[int, int, Item]] = []  # heap: (-priority, arrival, item)
        self._arrival = itertools.count()
        self._runs: dict[asyncio.Task[None], Run] = {}
        self._seats = list(range(settings.concurrency - 1, -1, -1))  # pop() hands out 0 first
        self._is_async: dict[str, bool] = {}
        self._stopping = False
        self._recover = False
        self._checking = False
        self._taking = 0  # reads whose start (mark running) is in flight
        self._last_check = 0.0
        self._rng = random.Random()
        self._reader: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        self._closing = False  # ends the heartbeat
        self._chain: Chain | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, should_continue: Callable[[], bool] = lambda: True) -> int:
        """Serve until stopped (or, in burst mode, until nothing is left); return exit code.

        The App's ``on_worker_start`` hooks run first (awaited here when async) and its
        ``on_worker_stop`` hooks last. Outages are waited out; a :class:`RedisSetupError`
        (credentials, permissions, not Redis) is raised, and so is :class:`WorkerStartFailed`.
        """
        await arun_start_hooks(self.app.start_hooks)
        try:
            return await self._serve(should_continue)
        finally:
            await arun_stop_hooks(self.app.stop_hooks)

    async def _serve(self, should_continue: Callable[[], bool]) -> int:
        self._loop = asyncio.get_running_loop()
        self._chain = Chain.of(self.app.middleware)
        if self._chain is not None:
            self._record.after_flush = self._chain.aafter_batch
        self._space, self._sync_turn = asyncio.Event(), asyncio.Lock()
        timeout_s = self.app.settings.socket_timeout_s
        self._ops = self._new_store(timeout_s)
        self._reads = self._new_store(max(timeout_s, self.settings.block_ms / 1000 + 5))
        self._progress = self._record.open(self._ops, self._link)
        self._sync = SyncThread()
        watchdog = LoopWatchdog(self._log, self._runs)
        beat = watchdog.heartbeat(lambda: not self._closing)
        helpers = [
            self._loop.create_task(self._record.flusher()),
            self._loop.create_task(beat),
        ]
        try:
            self._reader = self._loop.create_task(self._read_loop(should_continue))
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            await self._wind_down()
            await asyncio.gather(*self._checks, return_exceptions=True)
            # Ended by flags, not cancel(): a cancel can be lost inside redis-py's own
            # timeouts, and the flusher would then wait forever.
            self._closing = True
            watchdog.stop()
            self._record.close()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._shutdown()
        finally:
            watchdog.stop()
            self._sync.close()
            await self._ops.aclose()
            await self._reads.aclose()
            if self._chain is not None:
                self._chain.close()
        return 0

    def _new_store(self, timeout_s: float) -> AsyncStore:
        s = self.app.settings
        return AsyncStore(aconnect(self.app.redis_url, timeout_s, s.tls, s.max_connections))

    def install_signals(self) -> None:
        """SIGTERM stops (with the grace), SIGUSR1 cancels the job the supervisor named."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGTERM, self.stop)
        self._loop.add_signal_handler(signal.SIGUSR1, self.on_cancel_signal)

    async def start(self) -> None:
        """Create the consumer groups (idempotent) and announce the worker."""
        for keys in self.queues:
            others = await self._ops.ensure_group(keys, self.settings.group)
            if others:
                raise group_taken(keys, others)
        self._log.info(
            "worker.started",
            queues=list(self.settings.queues),
            pid=os.getpid(),
            tasks=sorted(self.app.tasks),
            concurrency=self.settings.concurrency,
            loop="asyncio",
        )

    def stop(self) -> None:
        """Stop reading; running jobs get ``grace_s`` to finish (see :meth:`_wind_down`)."""
        if self._stopping:
            return
        self._stopping = True
        self._log.info("worker.stopping", running=len(self._runs), grace_s=self.grace_s)
        if self._reader is not None:
            self._reader.cancel()

    def on_cancel_signal(self) -> None:
        """SIGUSR1 from the supervisor: cancel the running job named in its slot."""
        if self._slots is None:
            return
        for run in list(self._runs.values()):
            target = self._slots.cancel_target(self._slot + run.seat)
            if target == run.env.id and not run.stop:
                self._stop_run(run, "cancel")

    def _stop_run(self, run: Run, why: str) -> None:
        run.stop = why
        if run.in_thread:
            self._sync.interrupt(run.env.id, Cancelled)
        elif run.handle is not None:
            run.handle.cancel()

    async def _wind_down(self) -> None:
        """Let running jobs finish within the grace, then cancel them (handed back later)."""
        self._stopping = True
        self._ready.clear()  # read, never started: released with the rest
        if not self._runs:
            return
        _, late = await asyncio.wait(list(self._runs), timeout=self.grace_s)
        if late:
            self._log.warning("worker.grace_expired", cancelled=len(late))
            for handle in late:
                self._stop_run(self._runs[handle], "shutdown")
            await asyncio.wait(late, timeout=1.0)

    async def _shutdown(self) -> None:
        """Record finished work, hand back everything else we hold, and leave the group."""
        released = 0
        try:
            await self._record.flush()
            for keys in self.queues:
                released += await self._ops.release(keys, self.settings.group, self.consumer)
        except CONN_ERRORS as e:
            # Whatever we hold stays pending; the reaper recovers it after the timeout.
            self._log.warning("worker.release_failed", error_message=str(e))
        self._log.info("worker.stopped", processed=self.processed, released=released)

    # -- reading ---------------------------------------------------------------------------
    async def _read_loop(self, should_continue: Callable[[], bool]) -> None:
        first = True
        while not self._stopping and should_continue():
            try:
                if first or self._link.outage.down:
                    await (self.start() if first else self._ops.ping())
                    first = False
                    self._link.back()
                room = read_room(
                    self.settings.concurrency,
                    self.settings.read_ahead,
                    len(self._runs),
                    len(self._ready),
                )
                if room == 0:
                    self._space.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._space.wait(), self.settings.block_ms / 1000)
                    continue
                got = await self._read(room)
                if not got and self.settings.burst and await self._drained():
                    return
            except CONN_ERRORS as e:
                self._recover = True  # a read whose reply was lost still delivered to us
                await self._link.lost(e)

    async def _read(self, room: int) -> int:
        """Read up to ``room`` entries (after an outage, first our own unseen pending ones)."""
        own = self._recover
        held = self._record.held
        count = room + len(held) if own else room
        block = None if own else (100 if self.settings.burst else self.settings.block_ms)
        entries = await self._reads.read(
            self.streams, self.settings.group, self.consumer, count, block, own=own
        )
        if own:
            entries = [e for e in entries if (e.stream, e.id) not in held]
            self._recover = bool(entries)
        await self._take(entries)
        return len(entries)

    async def _take(self, entries: list[Entry]) -> None:
        """Decode, mark started (dropping jobs cancelled meanwhile), queue by priority."""
        items = decode_all(entries, self.app.settings.max_payload_bytes)
        jobs = [(e, env) for e, env in items if isinstance(env, Envelope) and env.tracked]
        if jobs:
            self._taking += 1
            try:
                go = await self._ops.start(
                    self.settings.group,
                    self.consumer,
                    now_ms(),
                    [e for e, _ in jobs],
                    [env.id for _, env in jobs],
                    [env.attempt for _, env in jobs],
                )
            finally:
                self._taking -= 1
            skipped = {e.id for (e, env), ok in zip(jobs, go, strict=True) if not ok}
            for e, env in jobs:
                if e.id in skipped:
                    log_skipped(self._log, env, self.settings)
            items = [item for item in items if item[0].id not in skipped]
        weights = self.settings.priority_weights
        if weights:
            items = weighted_order(items, weights, self._rng)
        for item in items:
            self._record.held.add((item[0].stream, item[0].id))
            rank = 0 if weights else -item[0].priority  # weighted: the draw's order
            heapq.heappush(self._ready, (rank, next(self._arrival), item))
        self._dispatch()

    def _dispatch(self) -> None:
        """Start the highest-priority waiting entries while slots are free.

        Not while a look for higher-priority work or another read's start is in flight: a
        low entry could otherwise start just before a higher one joins the queue; whichever
        of them ends last dispatches.
        """
        if self._checking or self._taking:
            return
        while self._ready and self._seats and not self._stopping:
            _, _, (entry, env) = heapq.heappop(self._ready)
            if not isinstance(env, Envelope) or env.task not in self.app.tasks:
                self._record.unrunnable(entry, env)
                continue
            run = Run(entry, env, self.app.tasks[env.task], self._seats.pop(), time.perf_counter())
            run.handle = self._loop.create_task(self._run(run), name=f"{env.task}:{env.id}")
            self._runs[run.handle] = run

    def _after_run(self) -> None:
        """A slot freed: look for newly arrived higher-priority work first (at most once per
        ms, as the sync worker does), then start the highest waiting entry."""
        self._space.set()
        head = -self._ready[0][0] if self._ready else PRIORITY_HIGH
        now = time.perf_counter()
        if (
            head < PRIORITY_HIGH
            and not self.settings.priority_weights
            and not self._checking
            and not self._stopping
            and now - self._last_check >= 0.001
        ):
            self._checking = True
            self._last_check = now
            check = self._loop.create_task(self._preempt(head))
            self._checks.add(check)  # the loop keeps only weak references to tasks
            check.add_done_callback(self._checks.discard)
            return
        self._dispatch()

    async def _preempt(self, head: int) -> None:
        try:
            higher = [(k, p) for k, p in self.streams if p > head]
            entries = await self._ops.read(
                higher, self.settings.group, self.consumer, max(1, len(self._seats)), None
            )
            await self._take(entries)
        except CONN_ERRORS:
            self._recover = True  # the reader notices the outage and re-reads what we own
        finally:
            self._checking = False
            self._dispatch()

    # -- running ---------------------------------------------------------------------------
    async def _run(self, run: Run) -> None:
        env, opts = run.env, run.task.options
        limit_ms = time_limit_ms(env, opts)
        _current.set((env, self._progress))  # this asyncio task's own context
        if self._chain is not None:
            await self._chain.abefore(env)
        state: str = SUCCEEDED
        error: BaseException | None = None
        try:
            if self._async(run):
                publish(self._slots, self._slot, run, limit_ms)
                value = await call_async(run, limit_ms)
            else:
                value = await self._call_sync(run, limit_ms)
        except (asyncio.CancelledError, Cancelled) as exc:
            error = exc
            if run.stop == "cancel":
                state = CANCELLED
                self._record.finished(run, CANCELLED, b"")
            elif run.stop != "shutdown":
                state = self._record.failed(run, exc)  # a Cancelled the task raised itself
            else:
                return  # handed back, not settled: it runs again elsewhere
        except (Exception, TimeLimitExceeded) as exc:  # noqa: BLE001 - recorded, never fatal
            error = exc
            state = self._record.failed(run, exc)
        else:
            result, unencodable = result_bytes(value, opts, env.tracked)
            if unencodable:
                self._log.warning(
                    "job.result_unencodable",
                    job_id=env.id,
                    task=env.task,
                    error_message=unencodable,
                )
            self._record.finished(run, SUCCEEDED, result)
        finally:
            self._release_seat(run)
        if self._chain is not None:
            duration_s = time.perf_counter() - run.started
            wait_s = max(0.0, time.time() - duration_s - entry_s(run.entry.id))
            await self._chain.aafter(env, Outcome(state, error, duration_s, wait_s))

    def _async(self, run: Run) -> bool:
        name = run.env.task
        if name not in self._is_async:
            self._is_async[name] = inspect.iscoroutinefunction(run.task.fn)
        return self._is_async[name]

    async def _call_sync(self, run: Run, limit_ms: int | None) -> Any:
        """One sync task at a time on the sync thread; its slot is shown once it runs."""
        async with self._sync_turn:
            run.in_thread = True
            publish(self._slots, self._slot, run, limit_ms)
            try:
                return await self._sync.run(run, limit_ms)
            finally:
                run.in_thread = False

    def _release_seat(self, run: Run) -> None:
        if self._slots is not None:
            self._slots.clear(self._slot + run.seat)
        if run.handle is not None:
            self._runs.pop(run.handle, None)
        self._seats.append(run.seat)
        self.processed += 1
        self._after_run()

    # -- burst -----------------------------------------------------------------------------
    async def _drained(self) -> bool:
        """Burst mode: nothing running or held, and no job queued, pending or due soon."""
        if self._runs or self._ready:
            return False
        await self._record.flush()
        horizon = now_ms() + self.settings.burst_horizon_ms
        # One atomic count per queue (lua/busy.lua): a job moving between two reads must not
        # escape both.
        for keys in self.queues:
            if await self._ops.busy(keys, horizon):
                return False
        return True
