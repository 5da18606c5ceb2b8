"""The worker pool: N forked worker processes, restarted when they die, drained on signals.

The supervisor also runs the pool's scheduler, periodic schedules and reaper, and refreshes
the leases of its live children's entries, so a long job is never reclaimed while its process
is alive.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import time
from dataclasses import dataclass, field

import structlog

from streamq.clock import now_ms
from streamq.errors import RedisSetupError
from streamq.keys import QueueKeys
from streamq.ops.doctor import diagnose
from streamq.ops.metrics import PoolMetrics
from streamq.pool.child import child_main, uses_asyncio
from streamq.pool.codes import (  # re-exported: the CLI and scripts import them from here
    EXIT_ERROR,
    EXIT_FORCED,
    EXIT_OK,
    EXIT_REDIS_REFUSED,
    EXIT_START_FAILED,
    EXIT_USAGE,
)
from streamq.pool.guard import Guard
from streamq.pool.watch import JobWatch
from streamq.producer.app import App
from streamq.settings import WorkerSettings
from streamq.upkeep.periodic import Periodic
from streamq.upkeep.reaper import Reaper
from streamq.upkeep.scheduler import Scheduler
from streamq.worker.loop import claim_queue, consumer_name
from streamq.worker.slots import Slots

log = structlog.get_logger("streamq.supervisor")

__all__ = [
    "EXIT_ERROR",
    "EXIT_FORCED",
    "EXIT_OK",
    "EXIT_REDIS_REFUSED",
    "EXIT_START_FAILED",
    "EXIT_USAGE",
    "PoolSettings",
    "Supervisor",
]


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Size and shutdown behaviour of the pool."""

    processes: int = 2
    grace_s: float = 30.0
    restart_backoff_max_s: float = 30.0
    reap_interval_s: float = 1.0
    prune_interval_s: float = 60.0
    metrics_port: int | None = None  # serve /metrics here (needs the metrics extra)


@dataclass
class _Child:
    slot: int
    pid: int
    consumer: str
    started: float
    failures: int = 0


@dataclass
class _State:
    stopping: bool = False
    signals: int = 0
    deadline: float = 0.0
    restarts: dict[int, float] = field(default_factory=dict)  # slot -> restart at (monotonic)
    failures: dict[int, int] = field(default_factory=dict)


class Supervisor:
    """Runs the pool until told to stop; :meth:`run` returns the exit code."""

    def __init__(self, app: App, worker: WorkerSettings, pool: PoolSettings) -> None:
        self.app = app
        self.worker_settings = worker
        self.pool = pool
        self.children: dict[int, _Child] = {}
        self.state = _State()
        self.queues = [QueueKeys(q) for q in worker.queues]
        # One shared-memory slot per job a child runs at once: an asyncio child runs up to
        # `concurrency`, a sync child one.
        self.per_child = worker.concurrency if uses_asyncio(app) else 1
        self.slots = Slots(pool.processes * self.per_child)
        self._log = log.bind(group=worker.group, pid=os.getpid())
        self._guard = Guard(self._log, lambda e: self._refused(str(e), cause=e.cause))
        self._metrics: PoolMetrics | None = None

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        """Start the pool and supervise it; blocks until it has stopped."""
        self._sel, self._rfd, wfd = self._install_signals()
        try:
            code = self._start()
            if code is None:
                self._supervise()
                code = self._fatal or (
                    EXIT_FORCED if self.state.signals > 1 or self._killed else EXIT_OK
                )
        finally:
            signal.set_wakeup_fd(-1)
            os.close(self._rfd)
            os.close(wfd)
            if self._metrics is not None:
                self._metrics.close()
        self._log.info("supervisor.stopped", exit_code=code)
        return code

    _killed = False
    # EXIT_REDIS_REFUSED once Redis refused us, EXIT_START_FAILED once a start hook failed:
    # the pool stops, nothing restarts
    _fatal = 0

    def _start(self) -> int | None:
        """Create the groups and fork the workers; an exit code if the pool never came up."""
        try:
            self._ensure_groups()
        except RedisSetupError as e:
            self._refused(str(e), cause=e.cause)
            return EXIT_REDIS_REFUSED
        if self.state.stopping:
            return EXIT_OK  # stopped while waiting for Redis: nothing started, nothing to drain
        self._guard("settings", self._warn_settings, None, fatal=False)
        if self.pool.metrics_port is not None:
            self._metrics = PoolMetrics(
                self.app,
                self.worker_settings.queues,
                self.worker_settings.group,
                self.pool.metrics_port,
                lambda: len(self.children),
            )
            self._metrics.start()  # before the first fork: children inherit its directory
        self._log.info(
            "supervisor.started",
            processes=self.pool.processes,
            queues=list(self.worker_settings.queues),
        )
        for slot in range(self.pool.processes):
            self._spawn(slot)
        return None

    def _supervise(self) -> None:
        """Run the upkeep ticks and restart dead children until the pool has stopped."""
        scheduler = Scheduler(self.app.store, self.queues)
        periodic = self._periodic()
        self._reaper = Reaper(
            self.app.store, self.queues, self.worker_settings.group, self.app.settings
        )
        watch = JobWatch(self.app, self.worker_settings, self.queues, self.slots, self._log)
        touch_every = min(self._vt_s() / 3, 5.0)
        now = time.monotonic()
        next_sched = next_reap = next_touch = next_prune = next_watch = now
        leases_fresh = False
        while True:
            self._reap_children()
            if self._finished():
                return
            self._escalate()
            now = time.monotonic()
            self._restart_due(now)
            if not self.state.stopping and now >= next_sched:
                # Periodic ticks first: their lateness is what users see. After a failure,
                # try again in a second.
                wake_ms = min(
                    self._guard(
                        "periodic",
                        lambda: periodic.run_once(now_ms()),
                        now_ms() + 1000,
                        event="periodic.failed",
                    ),
                    self._guard(
                        "scheduler",
                        lambda: scheduler.run_once(now_ms()),
                        now_ms() + 1000,
                        event="scheduler.failed",
                    ),
                )
                next_sched = now + max(0, wake_ms - now_ms()) / 1000
            if now >= next_touch:
                leases_fresh = self._touch_leases()
                next_touch = now + touch_every
            if not self.state.stopping and now >= next_reap:
                # After an outage our children's leases lapsed with everyone's: renew them
                # before taking anything back, or a live worker's finished (not yet acked)
                # jobs would go to another worker and run twice.
                if not leases_fresh:
                    leases_fresh = self._touch_leases()
                    next_touch = now + touch_every
                more = leases_fresh and self._guard(
                    "reaper", lambda: self._reaper.run_once(now_ms()), False, event="reaper.failed"
                )
                next_reap = now + (0.01 if more else self.pool.reap_interval_s)
            if now >= next_prune:
                self._guard("prune", self._reaper.prune, None)
                next_prune = now + self.pool.prune_interval_s
            if now >= next_watch:
                self._guard(
                    "watch",
                    lambda: watch.check(self._running_slots()),
                    None,
                )
                next_watch = now + 0.1
            timeout = max(0.0, min(next_sched, next_reap, next_touch, next_watch) - now)
            self._wait(timeout)

    def _periodic(self) -> Periodic:
        """The periodic loop; it writes our code's schedules to Redis on its first step."""
        specs = [s.spec for s in self.app.schedules.values()]
        return Periodic(
            self.app.store, self.queues, self.app.tasks, specs, self.app.settings.max_payload_bytes
        )

    def _ensure_groups(self) -> None:
        """Create the groups before anything reads them; wait out a Redis that is not up yet.

        A signal ends the wait at once (the selector wakes on it).
        """
        delay = 0.1

        def create() -> bool:
            for keys in self.queues:
                claim_queue(self.app.store, keys, self.worker_settings.group)
            return True

        while not self.state.stopping:
            if self._guard("start", create, False, retry_s=delay, fatal=False):
                return
            self._wait(delay)
            delay = min(delay * 2, 5.0)

    def _warn_settings(self) -> None:
        for f in diagnose(self.app.store, self.app.settings, self.worker_settings.block_ms):
            if f.level != "ok":
                self._log.warning("redis.settings_warning", check=f.check, message=f.message)

    def _finished(self) -> bool:
        if self.children:
            return False
        if self.state.stopping:
            return True
        # burst: children exit 0 once the queues are drained; nothing left to restart
        return self.worker_settings.burst and not self.state.restarts

    def _wait(self, timeout: float) -> None:
        """Sleep up to ``timeout``; a signal (through the wakeup fd) ends it early."""
        for _key, _ in self._sel.select(timeout):
            with contextlib.suppress(BlockingIOError):
                os.read(self._rfd, 512)

    # -- signals ---------------------------------------------------------------------------
    def _install_signals(self) -> tuple[selectors.BaseSelector, int, int]:
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        sel = selectors.DefaultSelector()
        sel.register(rfd, selectors.EVENT_READ)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        return sel, rfd, wfd

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.state.signals += 1
        if self.state.signals == 1:
            self.state.stopping = True
            self.state.deadline = time.monotonic() + self.pool.grace_s
            self.state.restarts.clear()
            self._log.info(
                "supervisor.stopping", signal=signal.Signals(signum).name, grace_s=self.pool.grace_s
            )
            self._signal_children(signal.SIGTERM)
        else:
            self._log.warning("supervisor.killing", signal=signal.Signals(signum).name)
            self._signal_children(signal.SIGKILL)

    def _escalate(self) -> None:
        if self.state.stopping and self.children and time.monotonic() >= self.state.deadline:
            if not self._killed:
                self._log.warning("supervisor.grace_expired", children=len(self.children))
                self._killed = True
            self._signal_children(signal.SIGKILL)

    def _signal_children(self, sig: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- children --------------------------------------------------------------------------
    def _running_slots(self) -> list[tuple[int, int]]:
        """(shared-memory slot, pid) of every slot of every live child."""
        n = self.per_child
        return [(c.slot * n + i, c.pid) for c in list(self.children.values()) for i in range(n)]

    def _spawn(self, slot: int) -> None:
        consumer = consumer_name() + f":{slot}"
        first = slot * self.per_child
        for i in range(first, first + self.per_child):
            self.slots.clear(i)
        # A child cancels (and hands back) jobs still running a little before we SIGKILL it.
        grace_s = max(0.0, self.pool.grace_s - min(2.0, self.pool.grace_s / 5))
        pid = os.fork()
        if pid == 0:  # child
            metrics = self._metrics is not None
            os._exit(
                child_main(
                    self.app, self.worker_settings, consumer, self.slots, first, metrics, grace_s
                )
            )
        self.children[pid] = _Child(slot, pid, consumer, time.monotonic())
        self._log.info("worker.spawned", slot=slot, child_pid=pid, consumer=consumer)

    def _reap_children(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._on_exit(child, status)

    def _on_exit(self, child: _Child, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        lived = time.monotonic() - child.started
        if self._metrics is not None:
            self._metrics.child_exited(child.pid)
        self._log.log(
            20 if code == 0 else 40,
            "worker.exited",
            slot=child.slot,
            child_pid=child.pid,
            consumer=child.consumer,
            exit_code=code,
            lived_s=round(lived, 3),
        )
        if code == EXIT_REDIS_REFUSED:
            self._refused(
                "a worker exited because Redis refused it (see its worker.redis_refused line)",
                child_pid=child.pid,
            )
        elif code == EXIT_START_FAILED:
            self._stop_pool(
                EXIT_START_FAILED,
                "supervisor.start_failed",
                error_message="a worker start hook failed (see its worker.start_failed line)",
                child_pid=child.pid,
            )
        if code != 0:
            # Its process is gone, so nothing it held can finish: requeue it now rather
            # than after the visibility timeout (counted as a delivery).
            self._guard("requeue", lambda: self._reaper.abandon(child.consumer, now_ms()), None)
        if self.state.stopping or (self.worker_settings.burst and code == 0):
            return
        failures = self.state.failures.get(child.slot, 0)
        failures = failures + 1 if lived < 10 else 0
        self.state.failures[child.slot] = failures
        delay = (
            0.0
            if failures <= 1
            else min(self.pool.restart_backoff_max_s, 0.5 * 2 ** (failures - 2))
        )
        self.state.restarts[child.slot] = time.monotonic() + delay
        if delay:
            self._log.warning("worker.restart_delayed", slot=child.slot, delay_s=delay)

    def _restart_due(self, now: float) -> None:
        for slot, at in list(self.state.restarts.items()):
            if at <= now and not self.state.stopping:
                del self.state.restarts[slot]
                self._spawn(slot)

    # -- leases ----------------------------------------------------------------------------
    def _vt_s(self) -> float:
        return min(
            self.app.settings.for_queue(q).visibility_timeout_s for q in self.worker_settings.queues
        )

    def _touch_leases(self) -> bool:
        """Refresh the entries every live child holds, so the reaper never takes them.

        Returns:
            False if Redis could not be reached: the leases may be lapsing.
        """
        min_idle = int(self._vt_s() * 1000 / 3)

        def touch() -> bool:
            for child in list(self.children.values()):
                for keys in self.queues:
                    self.app.store.touch(keys, self.worker_settings.group, child.consumer, min_idle)
            return True

        return self._guard("lease", touch, False)

    def _refused(self, message: str, **fields: object) -> None:
        """Redis refused us (credentials, permissions, not Redis): stop the pool, once."""
        self._stop_pool(
            EXIT_REDIS_REFUSED, "supervisor.redis_refused", error_message=message, **fields
        )

    def _stop_pool(self, code: int, event: str, **fields: object) -> None:
        """A mistake restarting cannot fix: one line, stop the pool, exit with ``code``."""
        if self._fatal:
            return
        self._fatal = code
        self._log.error(event, exit_code=code, **fields)
        if not self.state.stopping:
            self.state.stopping = True
            self.state.deadline = time.monotonic() + self.pool.grace_s
            self.state.restarts.clear()
            self._signal_children(signal.SIGTERM)
