"""The App: task registry and producer API, usable without importing any task code."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload

import redis

from streamq import codec
from streamq import options as check
from streamq.clock import now_ms
from streamq.errors import (
    ConfigError,
    EnqueueError,
    RedisCommandError,
    RedisSetupError,
    StreamqConnectionError,
)
from streamq.job import PRIORITY_NORMAL, Envelope, new_job_id
from streamq.keys import check_queue_name, keys_of
from streamq.producer.eager import EagerRecords, EagerSwitch
from streamq.producer.handle import Job
from streamq.producer.inline import send_inline
from streamq.producer.periodic import Scheduling
from streamq.producer.schedule import Schedule
from streamq.producer.task import Task
from streamq.settings import AppSettings, TaskOptions
from streamq.store import NewJob, Store, connect

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class App(Scheduling):
    """A registry of tasks and a connection to one Redis.

    Args:
        redis_url: where the queues live; default ``$STREAMQ_REDIS_URL``, else localhost.
        settings: queue and payload settings; see :class:`AppSettings`.
        eager: run every enqueued job inline, with no Redis (see :meth:`eager`).

    Nothing connects until the first call that needs Redis, and each process (after a fork)
    opens its own connection.
    """

    def __init__(
        self, redis_url: str | None = None, settings: AppSettings | None = None, eager: bool = False
    ) -> None:
        self.redis_url = redis_url or os.environ.get("STREAMQ_REDIS_URL") or DEFAULT_REDIS_URL
        self.settings = settings or AppSettings()
        check_queue_name(self.settings.default_queue)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self._eager = EagerSwitch(eager)
        self._store: Store | None = None
        self._store_pid = 0
        self._store_url = ""

    # -- registry --------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_retries: int = 3,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        priority: str | int = "normal",
        timeout_s: float | None = None,
        result_ttl_s: float = 86_400.0,
        track: bool = True,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_retries: int = 3,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        priority: str | int = "normal",
        timeout_s: float | None = None,
        result_ttl_s: float = 86_400.0,
        track: bool = True,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., ...)``.

        Raises:
            ConfigError: the name is taken or an option is invalid.
        """
        options = TaskOptions(
            queue=check_queue_name(queue or self.settings.default_queue),
            max_retries=max_retries,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            retry_on=retry_on,
            priority=check.priority(priority),
            timeout_s=timeout_s,
            result_ttl_s=result_ttl_s,
            track=track,
        )

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or func.__name__
            if task_name in self.tasks:
                raise ConfigError(f"task name {task_name!r} is already registered")
            registered: Task[Any, Any] = Task(self, func, task_name, options)
            self.tasks[task_name] = registered
            return registered

        return register(fn) if fn is not None else register

    # -- connection ------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """This process's store; reopened after a fork (no shared socket) or a URL change."""
        pid = os.getpid()
        if self._store is None or self._store_pid != pid or self._store_url != self.redis_url:
            self._store = Store(
                connect(
                    self.redis_url,
                    self.settings.socket_timeout_s,
                    self.settings.tls,
                    self.settings.max_connections,
                )
            )
            self._store_pid = pid
            self._store_url = self.redis_url
        return self._store

    def close(self) -> None:
        """Close this process's connection; the next call that needs Redis opens a new one."""
        if self._store is not None:
            self._store.client.close()
            self._store = None

    def new_store(self, socket_timeout_s: float | None = None) -> Store:
        """A store on its own connection, for a loop that blocks (worker reads)."""
        timeout = socket_timeout_s or self.settings.socket_timeout_s
        return Store(
            connect(self.redis_url, timeout, self.settings.tls, self.settings.max_connections)
        )

    def client(self) -> redis.Redis:
        """The raw redis-py client, for tests and tools that inspect Redis directly."""
        return self.store.client

    def task_queues(self) -> list[str]:
        """Every queue this App's tasks use, sorted; its default queue if it has no tasks."""
        return sorted({t.options.queue for t in self.tasks.values()}) or [
            self.settings.default_queue
        ]

    # -- eager mode ------------------------------------------------------------------------
    def eager(self, propagate: bool = False) -> AbstractContextManager[None]:
        """``with app.eager():`` each enqueue runs its job inline, with no Redis at all.

        See docs/testing.md. Applies to every thread using this App; blocks nest and restore
        on exit, also on exceptions.

        Args:
            propagate: raise what made a job dead from the enqueue call, not only record it.
        """
        return self._eager.on(propagate)

    @property
    def eager_records(self) -> EagerRecords:
        """Eager mode's job records, in memory (kept until they expire)."""
        return self._eager.records

    # -- producing -------------------------------------------------------------------------
    def envelope(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: str | int = PRIORITY_NORMAL,
        max_retries: int | None = None,
        backoff_base_ms: int | None = None,
        backoff_cap_ms: int | None = None,
        timeout_ms: int | None = None,
        job_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        tracked: bool | None = None,
        unique_ms: int = 0,
    ) -> Envelope:
        """Build a job for ``task`` by name, without sending it.

        ``job_id`` makes enqueueing idempotent: the same id is not enqueued twice while live;
        ``unique_ms`` also while a finished job with that id was enqueued that recently.

        Raises:
            ConfigError: an option out of range (the checks of ``streamq/options.py``).
        """
        ts = now_ms()
        if tracked is None:
            known = self.tasks.get(task)
            tracked = known.options.track if known else True
        return Envelope(
            id=new_job_id(ts) if job_id is None else check.job_id(job_id),
            task=task,
            queue=check_queue_name(queue or self.settings.default_queue),
            args=list(args),
            kwargs=dict(kwargs or {}),
            enqueued_ms=ts,
            priority=check.priority(priority),
            max_retries=None if max_retries is None else check.max_retries(max_retries),
            backoff_base_ms=check.envelope_ms("backoff_base_ms", backoff_base_ms, 0),
            backoff_cap_ms=check.envelope_ms("backoff_cap_ms", backoff_cap_ms, 0),
            timeout_ms=check.envelope_ms("timeout_ms", timeout_ms, 1),
            headers=dict(headers or {}),
            tracked=tracked,
            unique_ms=check.envelope_ms("unique_ms", unique_ms, 0) or 0,
        )

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: str | int | None = None,
        max_retries: int | None = None,
        backoff_base_s: float | None = None,
        backoff_cap_s: float | None = None,
        timeout_s: float | None = None,
        job_id: str | None = None,
        unique_for_s: float | None = None,
    ) -> Job[Any]:
        """Enqueue ``task`` by name, for producers that do not import the task code.

        The queue and priority default to the task's own when it is registered here. Options
        are checked as in :meth:`Task.with_options`. Arguments are checked against the
        function only when this App has the task registered: by name alone they cannot be.

        Raises:
            ConfigError: an option that cannot work (e.g. ``timeout_s=0``).
            EnqueueError: arguments that do not fit a registered task, or Redis did not
                confirm the job.
        """
        known = self.tasks.get(task)
        if known is not None:
            known.check_arguments(args, kwargs or {})
        env = self.envelope(
            task,
            args,
            kwargs,
            queue=queue or (known.options.queue if known else None),
            priority=priority
            if priority is not None
            else (known.options.priority if known else PRIORITY_NORMAL),
            max_retries=max_retries,
            backoff_base_ms=None
            if backoff_base_s is None
            else check.backoff_ms("backoff_base_s", backoff_base_s),
            backoff_cap_ms=None
            if backoff_cap_s is None
            else check.backoff_ms("backoff_cap_s", backoff_cap_s),
            timeout_ms=check.timeout_ms(timeout_s),
            job_id=job_id,
            unique_ms=check.unique_ms(unique_for_s),
        )
        return self.send(env, delay=delay, at=at)

    def enqueue_in(self, delay: float | timedelta, task: str, *a: Any, **kw: Any) -> Job[Any]:
        """Enqueue ``task`` by name to run after ``delay``."""
        return self.enqueue(task, *a, delay=delay, **kw)

    def enqueue_at(self, when: datetime, task: str, *a: Any, **kw: Any) -> Job[Any]:
        """Enqueue ``task`` by name to run at ``when``."""
        return self.enqueue(task, *a, at=when, **kw)

    def send(
        self,
        env: Envelope,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        unique_for_s: float | None = None,
    ) -> Job[Any]:
        """Send one prepared envelope, now or later.

        A lost connection is retried twice with the same job id: the enqueue script ignores
        an id that is already live, so a resend never makes a second job. ``unique_for_s``
        replaces the envelope's own window (``with_options(unique_for_s=...)``) when given.

        Raises:
            ConfigError: a negative delay, a naive ``at``, or a bad ``unique_for_s``.
            EnqueueError: Redis did not confirm it (see :class:`EnqueueError` on timeouts), or
                refused the credentials or a permission, or the URL is not Redis (no resend).
            PayloadTooLarge: the encoding is over ``max_payload_bytes``.
        """
        due = 0
        if at is not None:
            due = check.at_ms(at)
        elif delay is not None:
            due = now_ms() + check.delay_ms(delay)
        if unique_for_s is not None:
            env = env._replace(unique_ms=check.unique_ms(unique_for_s))
        mode = self._eager.mode()
        if mode is not None:
            return send_inline(self, [env], mode, due)[0]
        (job,) = self._send_batch([env], None, due)
        return job

    def enqueue_many(self, envelopes: Iterable[Envelope], batch_size: int = 1000) -> list[Job[Any]]:
        """Send many prepared envelopes, one round trip per ``batch_size`` jobs.

        Each batch is one script call: on an error, jobs of earlier batches are enqueued and
        the exception says how many.
        """
        mode = self._eager.mode()
        if mode is not None:
            return send_inline(self, list(envelopes), mode, 0)
        jobs: list[Job[Any]] = []
        batch: list[Envelope] = []
        for env in envelopes:
            batch.append(env)
            if len(batch) >= batch_size:
                jobs.extend(self._send_batch(batch, len(jobs)))
                batch = []
        if batch:
            jobs.extend(self._send_batch(batch, len(jobs)))
        return jobs

    def job(self, job_id: str, queue: str | None = None) -> Job[Any]:
        """A handle on a job by id, e.g. in another process (default queue unless given)."""
        records = self._eager.records if self._eager.mode() else None
        return Job(
            job_id, check_queue_name(queue or self.settings.default_queue), self, records=records
        )

    def _send_batch(
        self, batch: list[Envelope], done: int | None, due_ms: int = 0
    ) -> list[Job[Any]]:
        """Send one script call's worth; ``done`` is None for a single send, else the count
        of jobs of this bulk call already enqueued (for the error message)."""
        new = [
            NewJob(keys_of(e.queue), e.id, e.task, e.priority, self.encode(e), due_ms, e.unique_ms)
            for e in batch
        ]
        tracked = [n for n, e in zip(new, batch, strict=True) if e.tracked]
        plain = [n for n, e in zip(new, batch, strict=True) if not e.tracked]
        by_id: dict[str, tuple[bool, str]] = {}
        first_try = now_ms()
        for attempt in range(3):
            try:
                if tracked:
                    # On a resend, a record created since the first try is our own lost
                    # reply's doing (even if that job already finished): not a new job.
                    floor = 0 if attempt == 0 else now_ms() - first_try + 1000
                    got = self.store.enqueue(tracked, now_ms(), floor)
                    by_id.update(zip((n.job_id for n in tracked), got, strict=True))
                    tracked = []  # sent: a retry after a later failure must not resend
                if plain:
                    # No record, so no dedup: never resent, or a retry could duplicate.
                    ids = self.store.add(plain)
                    by_id.update((n.job_id, (True, i)) for n, i in zip(plain, ids, strict=True))
                break
            except StreamqConnectionError as e:
                if attempt == 2 or plain:
                    what = (
                        f"job {batch[0].id} ({batch[0].task}) was not enqueued"
                        if done is None
                        else f"bulk enqueue stopped after {done} jobs"
                    )
                    raise EnqueueError(f"{what}: {e}") from e
                time.sleep(0.05 * 4**attempt)
            except (RedisCommandError, RedisSetupError) as e:
                # OOM (maxmemory reached), READONLY replica after a failover; or credentials,
                # a permission or a server that is not Redis: resending cannot help.
                what = "not enqueued" if done is None else f"bulk enqueue stopped after {done} jobs"
                raise EnqueueError(f"{what}: {e}") from e
        replies = [by_id[e.id] for e in batch]
        return [
            Job(
                e.id,
                e.queue,
                self,
                e.task,
                e,
                what if created and not due_ms else None,
                due_ms or None,
                created,
            )
            for e, (created, what) in zip(batch, replies, strict=True)
        ]

    def encode(self, env: Envelope) -> bytes:
        """The bytes of ``env`` as sent to Redis.

        Raises:
            EnqueueError: an argument msgpack cannot encode.
            PayloadTooLarge: the encoding is over ``max_payload_bytes``.
        """
        try:
            return codec.encode(env, self.settings.max_payload_bytes)
        except (TypeError, ValueError, OverflowError) as e:
            raise EnqueueError(
                f"job {env.id} ({env.task}) has arguments msgpack cannot encode: {e}"
            ) from e
