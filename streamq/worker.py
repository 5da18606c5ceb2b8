"""One worker process's loop: read a batch, run each job, record each outcome in Redis.

``run_once()`` is one step (read, run, acknowledge); ``run()`` repeats it and rides out Redis
outages. Supervision (processes, signals, restarts) lives in :mod:`streamq.supervisor`.
"""

from __future__ import annotations

import os
import random
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import structlog

from streamq import codec
from streamq.app import App, now_ms
from streamq.backoff import compute_backoff_ms
from streamq.errors import DecodeError, RedisCommandError, Retry, StreamqConnectionError
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.settings import WorkerSettings
from streamq.store import Entry, Store

log = structlog.get_logger("streamq.worker")


class Interrupted(Exception):
    """Raised by a stop request while the worker is blocked in a read, to unblock it."""


def consumer_name() -> str:
    """A consumer name unique per process: host, pid and random bits (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Worker:
    """Runs jobs from one consumer group; one instance per process.

    The constructor has no side effects; :meth:`start` connects.
    """

    def __init__(self, app: App, settings: WorkerSettings, consumer: str | None = None) -> None:
        self.app = app
        self.settings = settings
        self.consumer = consumer or consumer_name()
        self.queues = [QueueKeys(q) for q in settings.queues]
        self.processed = 0
        self._store: Store | None = None
        self._count = 1
        self._acks: dict[QueueKeys, list[bytes]] = {}
        self._buffer: deque[Entry] = deque()
        self._recover = False
        self._deferred: list[Callable[[], object]] = []
        self._last_flush = 0.0
        self._stopping = False
        self._reading = False
        self._log = log.bind(group=settings.group, consumer=self.consumer)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """This worker's own connection; its socket timeout outlasts the blocking read."""
        if self._store is None:
            timeout = max(self.app.settings.socket_timeout_s, self.settings.block_ms / 1000 + 5)
            self._store = self.app.new_store(timeout)
        return self._store

    def start(self) -> None:
        """Create the consumer groups (idempotent) and announce the worker."""
        for keys in self.queues:
            self.store.ensure_group(keys, self.settings.group)
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

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def run(self, should_continue: Callable[[], bool] = lambda: True) -> int:
        """Loop until stopped (or, in burst mode, until there is nothing left); return exit code."""
        self._connect_with_retry(self.start)
        down_since: float | None = None
        while not self._stopping and should_continue():
            try:
                if down_since is not None:
                    self.store.ping()
                    self._log.info("redis.reconnected", down_ms=_ms_since(down_since))
                    down_since = None
                done = self.run_once()
                if done == 0 and self.settings.burst and self._queues_drained():
                    break
            except Interrupted:
                break
            except (StreamqConnectionError, RedisCommandError) as e:
                # A refused command is retried like an outage: after a failover the new
                # primary may answer READONLY or LOADING for a while.
                down_since = self._outage(down_since, e)
                self._buffer.clear()  # re-read from our pending list after reconnecting
                self._recover = True
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Record finished work, hand back entries not started, and leave the group."""
        released = 0
        try:
            self._flush()
            for keys in self.queues:
                released += self.store.release(keys, self.settings.group, self.consumer)[0]
        except (StreamqConnectionError, RedisCommandError) as e:
            # Whatever we hold stays pending; the reaper recovers it after the timeout.
            self._log.warning("worker.release_failed", error_message=str(e))
        self._log.info("worker.stopped", processed=self.processed, released=released)

    # -- one step --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Read one batch (unless one is in hand) and run it; return entries handled."""
        self._run_deferred()
        if not self._buffer:
            self._fill()
        if not self._buffer:
            return 0
        started = time.perf_counter()
        self._last_flush = started
        handled = 0
        while self._buffer and not self._stopping:
            # Popped only once its outcome is recorded (or deferred), so an outage mid-batch
            # leaves the rest in hand for after the reconnect.
            self._handle(self._buffer[0])
            self._buffer.popleft()
            handled += 1
            if (time.perf_counter() - self._last_flush) * 1000 >= self.settings.ack_flush_ms:
                self._flush()
        self._flush()
        self._adapt(handled, time.perf_counter() - started)
        self.processed += handled
        return handled

    def _fill(self) -> None:
        """Read the next batch; after an outage, first re-read what we already own.

        A read whose reply was lost still delivered its entries to our pending list, where our
        own lease refresh would keep them from the reaper forever; reading from id 0 returns
        them (entries with recorded outcomes were flushed just before, so none runs twice).
        """
        block = 100 if self.settings.burst else self.settings.block_ms
        own = self._recover
        self._reading = True
        try:
            entries = self.store.read(
                self.queues, self.settings.group, self.consumer, self._count, block, own=own
            )
        except Interrupted:
            # The reply may be half read: drop the connection so no later command reads it.
            self.store.reset()
            raise
        finally:
            self._reading = False
        if own and not entries:
            self._recover = False
        self._buffer.extend(entries)

    def _adapt(self, handled: int, elapsed_s: float) -> None:
        """Size the next read so a batch takes about ``batch_target_ms``."""
        if handled == 0:
            return
        per_job_ms = max(elapsed_s * 1000 / handled, 0.001)
        target = int(self.settings.batch_target_ms / per_job_ms)
        self._count = max(1, min(self.settings.max_batch, target))

    def _handle(self, entry: Entry) -> None:
        payload = entry.payload
        if payload is None:
            self._bury_raw(entry, "malformed_entry", "entry has no 'j' field")
            return
        try:
            env = codec.decode(payload, self.app.settings.max_payload_bytes)
        except DecodeError as e:
            self._bury_raw(entry, e.reason, str(e))
            return
        task = self.app.tasks.get(env.task)
        if task is None:
            self._bury(entry, env, "unknown_task", None, 0.0, f"no task named {env.task!r}")
            return
        started = time.perf_counter()
        try:
            task.fn(*env.args, **env.kwargs)
        except Exception as exc:  # noqa: BLE001 - any task failure is recorded, never fatal
            self._failed(entry, env, exc, _ms_since(started))
            return
        self._acks.setdefault(entry.keys, []).append(entry.id)
        if self.settings.log_jobs == "all":
            self._log.info(
                "job.succeeded",
                job_id=env.id,
                task=env.task,
                queue=env.queue,
                attempt=env.attempt,
                duration_ms=_ms_since(started),
                outcome="succeeded",
            )

    # -- outcomes --------------------------------------------------------------------------
    def _failed(self, entry: Entry, env: Envelope, exc: Exception, duration_ms: float) -> None:
        opts = self.app.tasks[env.task].options
        max_retries = opts.max_retries if env.max_retries is None else env.max_retries
        retryable = isinstance(exc, (Retry, *opts.retry_on))
        if not retryable or env.attempt > max_retries:
            reason = "max_retries" if retryable else "not_retryable"
            self._bury(entry, env, reason, exc, duration_ms)
            return
        if isinstance(exc, Retry) and exc.delay_s is not None:
            delay_ms = int(exc.delay_s * 1000)
        else:
            base = env.backoff_base_ms
            cap = env.backoff_cap_ms
            delay_ms = compute_backoff_ms(
                env.attempt,
                int(opts.backoff_base_s * 1000) if base is None else base,
                int(opts.backoff_cap_s * 1000) if cap is None else cap,
                _rng,
            )
        payload = codec.encode(env.next_attempt(), self.app.settings.max_payload_bytes)
        now = now_ms()
        self._record(
            lambda: self.store.retry_later(
                entry.keys, self.settings.group, entry.id, payload, now + delay_ms, now
            ),
            env,
        )
        self._log.warning(
            "job.failed",
            job_id=env.id,
            task=env.task,
            queue=env.queue,
            attempt=env.attempt,
            duration_ms=duration_ms,
            outcome="retry",
            retry_in_ms=delay_ms,
            **_error_fields(exc),
        )

    def _bury(
        self,
        entry: Entry,
        env: Envelope,
        reason: str,
        exc: BaseException | None,
        duration_ms: float,
        message: str = "",
    ) -> None:
        err = _error_fields(exc) if exc else {"error_type": "", "error_message": message}
        fields: dict[str, Any] = {
            "j": entry.payload or b"",
            "reason": reason,
            "job_id": env.id,
            "task": env.task,
            "attempts": env.attempt,
            "entry": entry.id,
            "worker": self.consumer,
            "enqueued_ms": env.enqueued_ms,
            "dead_ms": now_ms(),
            **err,
        }
        self._record(
            lambda: self.store.bury(entry.keys, self.settings.group, entry.id, fields), env
        )
        self._log.error(
            "job.dead_lettered",
            job_id=env.id,
            task=env.task,
            queue=env.queue,
            attempt=env.attempt,
            duration_ms=duration_ms,
            outcome="dead",
            reason=reason,
            **err,
        )

    def _bury_raw(self, entry: Entry, reason: str, message: str) -> None:
        """Dead-letter an entry we cannot decode, keeping its bytes as they were."""
        raw = entry.payload if entry.payload is not None else msgpack.packb(entry.fields)
        fields: dict[str, Any] = {
            "j": raw,
            "reason": reason,
            "error_type": "DecodeError",
            "error_message": message,
            "entry": entry.id,
            "worker": self.consumer,
            "dead_ms": now_ms(),
        }
        self._record(
            lambda: self.store.bury(entry.keys, self.settings.group, entry.id, fields), None
        )
        self._log.error(
            "job.dead_lettered",
            entry_id=entry.id.decode(),
            queue=entry.keys.queue,
            outcome="dead",
            reason=reason,
            error_type="DecodeError",
            error_message=message,
            payload_bytes=len(raw),
        )

    def _record(self, op: Callable[[], bool], env: Envelope | None) -> None:
        """Run an outcome write now; it stays queued for after reconnecting if Redis is away."""
        self._deferred.append(lambda: op() or self._lease_lost(env))
        self._run_deferred()

    def _lease_lost(self, env: Envelope | None) -> bool:
        self._log.warning(
            "job.lease_lost",
            job_id=env.id if env else None,
            message="entry was reclaimed while running; the reclaimed copy decides the outcome",
        )
        return False

    def _flush(self) -> None:
        """Acknowledge finished entries: one script call per queue."""
        self._last_flush = time.perf_counter()
        if not self._acks:
            return
        while self._acks:
            keys, ids = next(iter(self._acks.items()))
            # Removed only after Redis took them: an outage keeps them for the retry.
            acked = self.store.ack(keys, self.settings.group, ids)
            del self._acks[keys]
            if acked < len(ids):
                self._log.warning("job.lease_lost", queue=keys.queue, count=len(ids) - acked)

    def _run_deferred(self) -> None:
        """Flush successes, then outcome writes, oldest first; each leaves only once done."""
        self._flush()
        while self._deferred:
            self._deferred[0]()
            self._deferred.pop(0)

    # -- outages and burst -----------------------------------------------------------------
    def _connect_with_retry(self, fn: Callable[[], None]) -> None:
        down_since: float | None = None
        while not self._stopping:
            try:
                fn()
            except (StreamqConnectionError, RedisCommandError) as e:
                down_since = self._outage(down_since, e)
                continue
            if down_since is not None:
                self._log.info("redis.reconnected", down_ms=_ms_since(down_since))
            return

    def _outage(self, down_since: float | None, error: Exception) -> float:
        """Log the first failure of an outage, then back off (with jitter) before retrying."""
        if down_since is None:
            down_since = time.perf_counter()
            self._log.error("redis.connection_lost", error_message=str(error))
        down_s = time.perf_counter() - down_since
        delay = min(5.0, 0.05 * 2 ** min(down_s, 10)) * (0.5 + _rng.random() / 2)
        deadline = time.monotonic() + delay
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, delay))
        return down_since

    def _queues_drained(self) -> bool:
        """Burst mode: nothing queued or held by anyone, and no delayed job due soon."""
        horizon = now_ms() + self.settings.burst_horizon_ms
        for keys in self.queues:
            stats = self.store.stats(keys, self.settings.group)
            if stats.queued or stats.pending:
                return False
            if self.store.due_before(keys, horizon):
                return False
        return True


_rng = random.Random()
# A forked child inherits the parent's generator state: reseed, or every worker of a pool draws
# the same jitter and their retries fire in lockstep.
os.register_at_fork(after_in_child=_rng.seed)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _error_fields(exc: BaseException | None) -> dict[str, str]:
    if exc is None:
        return {}
    return {
        "error_type": type(exc).__name__,
        "error_message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
