"""The pieces of one job's run in the asyncio worker that are not about Redis.

- :class:`Run`: a job holding one of the process's ``concurrency`` slots.
- :class:`SyncThread`: the one thread on which a process runs its *sync* tasks, one at a
  time, so they never stall the event loop (reads, acks, other jobs' time limits go on).
  A time limit or a cancel stops such a task by raising in that thread at its next Python
  instruction; a task blocked inside one C call (``time.sleep``, a socket read) stops when
  the call returns, or is killed with its process by the supervisor after ``cancel_grace_s``.
- :class:`LoopWatchdog`: a thread that notices the event loop has not ticked for a while
  (sync code inside an ``async def`` task) and logs ``worker.loop_blocked`` naming the task.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streamq.clock import now_ms
from streamq.errors import TimeLimitExceeded
from streamq.job import Envelope
from streamq.producer.task import Task
from streamq.store import Entry
from streamq.worker.slots import Running, Slots

# The loop is reported blocked once it has not ticked for this long.
BLOCKED_MS = 1000
_TICK_S = 0.1


@dataclass(eq=False, slots=True)
class Run:
    """A job that holds a slot: from its start to its recorded (or handed back) outcome."""

    entry: Entry
    env: Envelope
    task: Task[Any, Any]
    seat: int  # index among the process's slots (also its shared-memory slot, offset)
    started: float  # perf_counter
    handle: asyncio.Task[None] | None = None
    stop: str = ""  # why we stopped it: "cancel" (the job ends cancelled) or "shutdown"
    in_thread: bool = False  # a sync task on the SyncThread (stopped there, not by asyncio)


class SyncThread:
    """One thread for a process's sync tasks, one task at a time."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamq-sync")
        self._lock = threading.Lock()
        self._ident: int | None = None
        self._job: str | None = None
        self._early: dict[str, type[BaseException]] = {}  # stopped before it began

    async def call(
        self, job_id: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Any:
        """Run ``fn`` on the thread with the caller's context (``current_job()`` included)."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, ctx.run, self._call, job_id, fn, args, kwargs)

    def _call(
        self, job_id: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Any:
        with self._lock:
            early = self._early.pop(job_id, None)
            self._ident, self._job = threading.get_ident(), job_id
        try:
            if early is not None:
                raise early(f"job {job_id} was stopped before it began")
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._job = None

    def interrupt(self, job_id: str, exc: type[BaseException]) -> None:
        """Raise ``exc`` in the thread if it runs ``job_id`` (else as soon as it begins)."""
        with self._lock:
            if self._job != job_id or self._ident is None:
                self._early[job_id] = exc
                return
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._ident), ctypes.py_object(exc)
            )

    async def run(self, run: Run, limit_ms: int | None) -> Any:
        """Run a sync task's job on the thread, stopped by TimeLimitExceeded at its limit."""
        env = run.env
        loop = asyncio.get_running_loop()
        timer = (
            loop.call_later(limit_ms / 1000, self.interrupt, env.id, TimeLimitExceeded)
            if limit_ms
            else None
        )
        try:
            return await self.call(env.id, run.task.fn, env.args, env.kwargs)
        finally:
            self.forget(env.id)
            if timer is not None:
                timer.cancel()

    def forget(self, job_id: str) -> None:
        """Drop a stop request for a job that never reached the thread."""
        with self._lock:
            self._early.pop(job_id, None)

    def close(self) -> None:
        """Stop taking work; a task still running is left to finish (or to the process exit)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def call_async(run: Run, limit_ms: int | None) -> Any:
    """Await an async task's job; past its limit asyncio cancels it: TimeLimitExceeded."""
    coro = run.task.fn(*run.env.args, **run.env.kwargs)
    if not limit_ms:
        return await coro
    timeout = asyncio.timeout(limit_ms / 1000)
    try:
        async with timeout:
            return await coro
    except TimeoutError as e:
        if timeout.expired():  # else the task's own TimeoutError
            raise TimeLimitExceeded(f"job {run.env.id} ran past its time limit") from e
        raise


def publish(slots: Slots | None, first: int, run: Run, limit_ms: int | None) -> None:
    """Show a running job in its shared-memory slot, for the supervisor (a cancel needs a
    tracked job, a time limit a deadline); nothing without a supervisor."""
    if slots is None or not (run.env.tracked or limit_ms):
        return
    env, entry, start = run.env, run.entry, now_ms()
    deadline = start + limit_ms if limit_ms else 0
    running = Running(env.id, env.queue, entry.priority, entry.id.decode(), start, deadline)
    slots.set(first + run.seat, running)


class LoopWatchdog:
    """Logs ``worker.loop_blocked`` when the loop stalls, with the task that holds it."""

    def __init__(self, log: Any, runs: Mapping[asyncio.Task[None], Run]) -> None:
        self.log = log
        self.runs = runs  # read from the watchdog thread only while the loop is stuck
        self._tick = time.monotonic()
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._watch, name="streamq-watchdog", daemon=True)

    async def heartbeat(self, go_on: Callable[[], bool]) -> None:
        """Tick while the loop runs and ``go_on()``; start the watching thread at once."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        while go_on():
            self._tick = time.monotonic()
            await asyncio.sleep(_TICK_S)

    def stop(self) -> None:
        """End the watching thread."""
        self._stopped.set()

    def _watch(self) -> None:
        blocked_since: float | None = None
        while not self._stopped.wait(_TICK_S):
            lag = time.monotonic() - self._tick
            if lag * 1000 < BLOCKED_MS:
                if blocked_since is not None:
                    self.log.info("worker.loop_unblocked", blocked_ms=int(lag_ms(blocked_since)))
                    blocked_since = None
                continue
            if blocked_since is None:
                blocked_since = self._tick
                self.log.warning("worker.loop_blocked", blocked_ms=int(lag * 1000), **self._who())

    def _who(self) -> dict[str, object]:
        """The task holding the loop (the asyncio task running now), and every running job."""
        current = asyncio.current_task(self._loop) if self._loop else None
        run = self.runs.get(current) if current is not None else None
        jobs = [f"{r.env.task}:{r.env.id}" for r in list(self.runs.values())]
        fields: dict[str, object] = {"running": jobs}
        if run is not None:
            fields.update(task=run.env.task, job_id=run.env.id, queue=run.env.queue)
        elif current is not None:
            fields["asyncio_task"] = current.get_name()
        return fields


def lag_ms(since: float) -> float:
    """Milliseconds from the monotonic time ``since`` to now."""
    return (time.monotonic() - since) * 1000
