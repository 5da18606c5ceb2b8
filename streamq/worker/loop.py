"""One worker process's loop: read a batch, run each job, record each outcome in Redis.

``run_once()`` is one step (read, run, acknowledge); ``run()`` repeats it and rides out Redis
outages. Supervision (processes, signals, restarts) lives in :mod:`streamq.pool.supervisor`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

import structlog

from streamq.clock import monotonic_ms, now_ms
from streamq.errors import (
    Cancelled,
    ConfigError,
    DecodeError,
    RedisCommandError,
    StreamqConnectionError,
    TimeLimitExceeded,
)
from streamq.job import PRIORITY_HIGH, Envelope
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.outage import Outage
from streamq.policy import result_bytes
from streamq.producer.app import App
from streamq.producer.context import Progress, _current
from streamq.settings import WorkerSettings
from streamq.store import Entry, Store
from streamq.worker.acks import (
    AckBuffer,
    check_acked,
    log_finished,
    log_lease_lost,
    log_lost,
    log_skipped,
    retry_delay_s,
)
from streamq.worker.batch import (
    Item,
    decode_all,
    entry_s,
    next_count,
    time_limit_ms,
    weighted_order,
)
from streamq.worker.middleware import (
    CANCELLED,
    DEAD,
    RETRYING,
    SUCCEEDED,
    Chain,
    Outcome,
    run_start_hooks,
    run_stop_hooks,
)
from streamq.worker.outcomes import Burial, Outcomes, Retrying, reseed
from streamq.worker.slots import Running, Slots

log = structlog.get_logger("streamq.worker")


# A forked child inherits the parent's random state: reseed, or every worker of a pool draws
# the same jitter and their retries fire in lockstep.
os.register_at_fork(after_in_child=reseed)


class Interrupted(Exception):
    """Raised by a stop request while the worker is blocked in a read, to unblock it."""


def claim_queue(store: Store, keys: QueueKeys, group: str) -> None:
    """Create ``group`` on the queue, or raise ConfigError (creating nothing) if another
    group serves it: entries are deleted once processed, so a second group would miss jobs.
    """
    others = store.ensure_group(keys, group)
    if others:
        raise group_taken(keys, others)


def group_taken(keys: QueueKeys, others: list[str]) -> ConfigError:
    """The error for a queue another consumer group serves (nothing was created)."""
    return ConfigError(
        f"queue {keys.queue!r} already has consumer group(s) {others}; streamq deletes "
        f"entries once processed, so each queue serves one group. Use that group, or "
        f"remove it with XGROUP DESTROY {keys.stream} <group> if it is stale."
    )


def consumer_name() -> str:
    """A consumer name unique per process: host, pid and random bits (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


# Told each job's outcome as it is decided: "succeeded", "retry", "dead" or "cancelled", the
# job (None for bytes that did not decode) and what the task raised (None if nothing).
OutcomeHook = Callable[[str, Envelope | None, BaseException | None], None]


class Worker:
    """Runs jobs from one consumer group; one instance per process.

    The constructor has no side effects; :meth:`start` connects. ``slots``/``slot`` publish
    the running job to a supervisor (time limits, cancellation); None when run alone.
    ``on_outcome`` is told each outcome as it is decided (``streamq.testing.drain`` counts
    with it); it runs in the loop, so it must be quick and must not raise. The App's
    middleware hangs off the same decision points (``_settled``).
    """

    def __init__(
        self,
        app: App,
        settings: WorkerSettings,
        consumer: str | None = None,
        slots: Slots | None = None,
        slot: int = 0,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.consumer = consumer or consumer_name()
        self.queues = [QueueKeys(q) for q in settings.queues]
        self.streams = [(k, p) for k in self.queues for p in PRIORITY_LEVELS]
        self.processed = 0
        self._slots, self._slot = slots, slot
        self._store: Store | None = None
        self._outcomes: Outcomes | None = None
        self._progress: Progress | None = None
        self._count = 1
        # Outcomes waiting for the next flush, per stream: finished entries, and failed
        # ones' next attempts (both written by one ack script call).
        self._acks = AckBuffer()
        self._buffer: deque[Item] = deque()
        self._recover = False
        self._deferred: list[tuple[Burial, str | None]] = []
        self._last_flush = 0.0
        self._last_check = 0.0
        self._last_job_s = 0.0
        self._stopping = False
        self._reading = False
        self._running: str | None = None  # job id while its task runs (signals check it)
        self._skipped = 0  # entries of this step dropped as cancelled
        self._log = log.bind(group=settings.group, consumer=self.consumer)
        self._rng = random.Random()
        self._outage = Outage()
        self._on_outcome = on_outcome
        self._chain: Chain | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """This worker's own connection; its socket timeout outlasts the blocking read."""
        if self._store is None:
            timeout = max(self.app.settings.socket_timeout_s, self.settings.block_ms / 1000 + 5)
            self._store = self.app.new_store(timeout)
        return self._store

    @property
    def outcomes(self) -> Outcomes:
        """The failure policy, writing through this worker's store."""
        if self._outcomes is None:
            self._outcomes = Outcomes(
                self.app,
                self.settings.group,
                self.consumer,
                self._log,
                self.settings.log_args,
            )
        return self._outcomes

    @property
    def progress(self) -> Progress:
        """Progress writes of the jobs this worker runs (kept while Redis is away)."""
        if self._progress is None:
            self._progress = Progress(self.store)
        return self._progress

    def start(self) -> None:
        """Create the consumer groups (idempotent), arm time limits, announce the worker.

        Raises:
            ConfigError: another consumer group serves one of the queues.
        """
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGALRM, self._on_alarm)
        self._chain = Chain.of(self.app.middleware)
        for keys in self.queues:
            claim_queue(self.store, keys, self.settings.group)
        self._log.info(
            "worker.started",
            queues=list(self.settings.queues),
            pid=os.getpid(),
            tasks=sorted(self.app.tasks),
        )

    def stop(self) -> None:
        """Ask the loop to stop after the job in hand; unblocks a waiting read at once."""
        self._stopping = True
        if self._reading:
            self._reading = False
            raise Interrupted

    def on_cancel_signal(self) -> None:
        """SIGUSR1 from the supervisor: stop the running task if it is the one to cancel."""
        if self._running and self._slots and self._slots.cancel_target(self._slot) == self._running:
            raise Cancelled(f"job {self._running} was cancelled")

    def _on_alarm(self, _sig: int, _frame: object) -> None:
        if self._running:
            raise TimeLimitExceeded(f"job {self._running} ran past its time limit")

    def run(self, should_continue: Callable[[], bool] = lambda: True) -> int:
        """Loop until stopped (or, in burst mode, until there is nothing left); return exit code.

        The App's ``on_worker_start`` hooks run first and its ``on_worker_stop`` hooks last.
        Outages (timeouts, refused or reset connections, a refused command) are waited out;
        a :class:`RedisSetupError` (credentials, permissions, not Redis) is raised, and so is
        :class:`WorkerStartFailed` (a start hook raised; no job ran).
        """
        run_start_hooks(self.app.start_hooks)
        try:
            self._connect_with_retry(self.start)
            while not self._stopping and should_continue():
                try:
                    if self._outage.down:
                        self.store.ping()
                        self._back()
                    done = self.run_once()
                    if done == 0 and self.settings.burst and self._queues_drained():
                        break
                except Interrupted:
                    break
                except (StreamqConnectionError, RedisCommandError) as e:
                    # A refused command is retried like an outage: after a failover the new
                    # primary may answer READONLY or LOADING for a while.
                    self._lost(e)
                    self._buffer.clear()  # re-read from our pending list after reconnecting
                    self._recover = True
            self.shutdown()
        finally:
            run_stop_hooks(self.app.stop_hooks)
        return 0

    def shutdown(self) -> None:
        """Record finished work, hand back entries not started, and leave the group."""
        released = 0
        try:
            self._run_deferred()
            for keys in self.queues:
                released += self.store.release(keys, self.settings.group, self.consumer)
        except (StreamqConnectionError, RedisCommandError) as e:
            # Whatever we hold stays pending; the reaper recovers it after the timeout.
            self._log.warning("worker.release_failed", error_message=str(e))
        if self._chain is not None:
            self._chain.close()
        self._log.info("worker.stopped", processed=self.processed, released=released)

    # -- one step --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Read one batch (unless one is in hand) and run it; return entries handled
        (cancelled ones dropped unrun included)."""
        self._run_deferred()
        self._skipped = 0
        if not self._buffer:
            self._fill(self.streams, self.settings.block_ms)
        if not self._buffer:
            if self._skipped and self._chain is not None:
                self._chain.after_batch()
            return self._skipped
        started = time.perf_counter()
        self._last_flush = self._last_check = started
        handled = 0
        buffer, flush_s = self._buffer, self.settings.ack_flush_ms / 1000
        preempt = not self.settings.priority_weights
        while buffer and not self._stopping:
            if preempt and buffer[0][0].priority < PRIORITY_HIGH:
                self._maybe_preempt()
            # Popped only once its outcome is recorded (or deferred), so an outage mid-batch
            # leaves the rest in hand for after the reconnect.
            self._handle(buffer[0])
            buffer.popleft()
            handled += 1
            if time.perf_counter() - self._last_flush >= flush_s:
                self._flush()
        self._flush()
        if self._chain is not None:
            self._chain.after_batch()
        self._count = next_count(
            handled,
            time.perf_counter() - started,
            self.settings.batch_target_ms,
            self.settings.max_batch,
            self._count,
        )
        self.processed += handled
        return handled + self._skipped

    def _fill(self, streams: list[tuple[QueueKeys, int]], block_ms: int | None) -> list[Item]:
        """Read a batch, mark it running, and queue it highest priority first.

        After an outage, re-read what we already own first: a read whose reply was lost still
        delivered its entries to our pending list, where our own lease refresh would keep them
        from the reaper forever (outcomes were flushed just before, so none runs twice).
        """
        own = self._recover
        block = 100 if self.settings.burst else block_ms
        self._reading = block is not None
        try:
            entries = self.store.read(
                streams, self.settings.group, self.consumer, self._count, block, own=own
            )
        except Interrupted:
            # The reply may be half read: drop the connection so no later command reads it.
            self.store.reset()
            raise
        finally:
            self._reading = False
        if own and not entries:
            self._recover = False
        items = self._decode_and_start(entries)
        if self.settings.priority_weights:
            items = weighted_order(items, self.settings.priority_weights, self._rng)
        self._buffer.extend(items)
        return items

    def _decode_and_start(self, entries: list[Entry]) -> list[Item]:
        items = decode_all(entries, self.app.settings.max_payload_bytes)
        # Untracked jobs have no record to mark (nor a cancel to honour before they start).
        jobs = [(e, env) for e, env in items if isinstance(env, Envelope) and env.tracked]
        if not jobs:
            return items
        run = self.store.start(
            self.settings.group,
            self.consumer,
            now_ms(),
            [e for e, _ in jobs],
            [env.id for _, env in jobs],
            [env.attempt for _, env in jobs],
        )
        skipped = {e.id for (e, env), go in zip(jobs, run, strict=True) if not go}
        self._skipped += len(skipped)
        for e, env in jobs:
            if e.id in skipped:
                log_skipped(self._log, env, self.settings)
                self._settled(CANCELLED, e, env, None, None, hook=False)
        return [item for item in items if item[0].id not in skipped]

    def _maybe_preempt(self) -> None:
        """Before a lower-priority job, look for newly arrived higher-priority work.

        Checked at most once per max(1 ms, last job's run time), so prefetched low-priority
        work delays an urgent job by about one job, without a round trip per fast job.
        """
        head = self._buffer[0][0].priority
        now = time.perf_counter()
        if now - self._last_check < max(0.001, self._last_job_s):
            return
        self._last_check = now
        higher = [(k, p) for k, p in self.streams if p > head]
        front = self._fill_front(higher)
        for item in reversed(front):
            self._buffer.appendleft(item)

    def _fill_front(self, streams: list[tuple[QueueKeys, int]]) -> list[Item]:
        entries = self.store.read(streams, self.settings.group, self.consumer, self._count, None)
        return self._decode_and_start(entries)

    def _handle(self, item: Item) -> None:
        entry, env = item
        if isinstance(env, DecodeError) or env.task not in self.app.tasks:
            self._unrunnable(entry, env)
            return
        # current_job() and the job fields of log lines: set until its outcome is recorded,
        # so middleware's after_job sees them too.
        token = _current.set((env, self.progress))
        try:
            self._run(entry, env)
        finally:
            _current.reset(token)

    def _run(self, entry: Entry, env: Envelope) -> None:
        """Run one job's task and record its outcome."""
        task = self.app.tasks[env.task]
        opts = task.options
        timeout_ms = time_limit_ms(env, opts)
        if self._chain is not None:
            self._chain.before(env)
        started = time.perf_counter()
        # The supervisor needs the slot to cancel (tracked jobs) or time out a job; an
        # untracked job without a limit skips it, the cheapest path for high volume.
        watched = self._slots is not None and (env.tracked or timeout_ms)
        if watched:
            assert self._slots is not None
            start = now_ms()
            self._slots.set(
                self._slot,
                Running(
                    env.id,
                    env.queue,
                    entry.priority,
                    entry.id.decode(),
                    start,
                    start + timeout_ms if timeout_ms else 0,
                ),
            )
        error: BaseException | None = None
        value = None
        self._running = env.id
        if timeout_ms:
            signal.setitimer(signal.ITIMER_REAL, timeout_ms / 1000)
        try:
            value = task.fn(*env.args, **env.kwargs)
            if inspect.iscoroutine(value):
                # An async task in a sync worker (in-process runs, streamq.testing.drain): one
                # at a time, on a loop of its own. Pools run async tasks in worker/aloop.py.
                value = asyncio.run(value)
        except (Exception, TimeLimitExceeded, Cancelled) as exc:  # noqa: BLE001 - recorded
            error = exc
        finally:
            self._running = None
            if timeout_ms:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if watched:
                assert self._slots is not None
                self._slots.clear(self._slot)
            self._last_job_s = time.perf_counter() - started
        if isinstance(error, Cancelled):
            self._finish(entry, env, opts.record_ttl_ms, CANCELLED, b"", started, error)
        elif error is not None:
            self._failed(entry, env, error, started)
        else:
            result, unencodable = result_bytes(value, opts, env.tracked)
            if unencodable:
                self._log.warning(
                    "job.result_unencodable",
                    job_id=env.id,
                    task=env.task,
                    error_message=unencodable,
                )
            self._finish(entry, env, opts.record_ttl_ms, SUCCEEDED, result, started)

    def _unrunnable(self, entry: Entry, env: Envelope | DecodeError) -> None:
        """Dead-letter an entry that cannot run: undecodable, or for a task we do not know."""
        self._record(*self.outcomes.unrunnable(entry, env))
        self._settled(DEAD, entry, env if isinstance(env, Envelope) else None, None, None)

    def _failed(self, entry: Entry, env: Envelope, exc: BaseException, started: float) -> None:
        """Bury now, or queue the next attempt to be written with the next batched ack."""
        outcome = self.outcomes.failed(entry, env, exc, _ms_since(started))
        if not isinstance(outcome, Retrying):
            self._record(outcome, env.id)
            self._settled(DEAD, entry, env, exc, started)
            return
        self._acks.retry(entry, outcome.row())
        self._settled(RETRYING, entry, env, exc, started)

    def _finish(
        self,
        entry: Entry,
        env: Envelope,
        ttl_ms: int,
        state: str,
        result: bytes,
        started: float,
        error: BaseException | None = None,
    ) -> None:
        self._acks.finished(entry, env, state, result, ttl_ms)
        log_finished(self._log, env, state, _ms_since(started), self.settings)
        self._settled(state, entry, env, error, started)

    def _settled(
        self,
        state: str,
        entry: Entry,
        env: Envelope | None,
        exc: BaseException | None,
        started: float | None,
        hook: bool = True,
    ) -> None:
        """Tell ``on_outcome`` and the middleware how a job ended: the one decision point.

        ``started`` (perf_counter) is None for a job settled without running; ``env`` None for
        bytes that did not decode (no job to show middleware). ``hook=False``: a job cancelled
        before it started, which ``on_outcome`` (drain's counts) has never been told of.
        """
        if hook and self._on_outcome:
            self._on_outcome("retry" if state == RETRYING else state, env, exc)
        if self._chain is None or env is None:
            return
        duration_s = 0.0 if started is None else time.perf_counter() - started
        wait_s = time.time() - duration_s - entry_s(entry.id)
        self._chain.after(
            env, Outcome(state, exc, duration_s, max(wait_s, 0.0), started is not None)
        )

    # -- recording -------------------------------------------------------------------------
    def _record(self, burial: Burial, job_id: str | None = None) -> None:
        """Write a dead letter now; it stays queued for after reconnecting if Redis is away."""
        self._deferred.append((burial, job_id))
        self._run_deferred()

    def _flush(self) -> None:
        """Record finished and failed entries: one script call per stream.

        Progress kept during an outage is written first, while the jobs are still running.
        """
        self._last_flush = time.perf_counter()
        if self._progress is not None:
            self._progress.flush()
        while self._acks:
            keys, priority, rows = self._acks.take()
            try:
                acked, lost = self.store.ack(keys, priority, self.settings.group, now_ms(), *rows)
            except BaseException:
                self._acks.restore(keys, priority, rows)  # an outage keeps them for the retry
                raise
            check_acked(self._log, keys, rows, acked, lost)

    def _run_deferred(self) -> None:
        """Flush successes, then outcome writes, oldest first; each leaves only once done."""
        self._flush()
        while self._deferred:
            burial, job_id = self._deferred[0]
            if not self.store.bury(*burial):
                log_lease_lost(self._log, job_id)
            self._deferred.pop(0)

    # -- outages and burst -----------------------------------------------------------------
    def _connect_with_retry(self, fn: Callable[[], None]) -> None:
        while not self._stopping:
            try:
                fn()
            except (StreamqConnectionError, RedisCommandError) as e:
                self._lost(e)
                continue
            self._back()
            return

    def _lost(self, error: Exception) -> None:
        """Log the loss of Redis (then a reminder at most every 10 s), and back off with
        jitter before the next try."""
        log_lost(self._log, self._outage.failed(monotonic_ms()), error)
        down_ms = monotonic_ms() - (self._outage.down_since_ms or 0)
        delay = retry_delay_s(down_ms, self._rng)
        deadline = time.monotonic() + delay
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, delay))

    def _back(self) -> None:
        down_ms = self._outage.succeeded(monotonic_ms())
        if down_ms is not None:
            self._log.info("redis.reconnected", pid=os.getpid(), down_ms=down_ms)

    def _queues_drained(self) -> bool:
        """Burst mode: nothing queued or held by anyone, and no delayed job due soon (one
        atomic count per queue: a job moving between two reads must not escape both)."""
        horizon = now_ms() + self.settings.burst_horizon_ms
        return not any(self.store.busy(keys, horizon) for keys in self.queues)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
