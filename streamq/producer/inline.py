"""Eager mode's runner: an enqueue runs the job here and now, as a worker would run it.

The job still goes through the codec (its arguments, each retry, its result), gets a real job
context (``current_job()``, progress) and retries by the worker's own rule
(:func:`streamq.policy.on_failure`), only without waiting out the backoff. Its record lives in
memory (:class:`~streamq.producer.eager.EagerRecords`); nothing talks to Redis.

:func:`attempts` holds the rules of a run; :func:`run_inline` and :func:`arun_inline` only
make the call (the async one awaits an ``async def`` task in the caller's loop).
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from streamq import codec
from streamq.clock import now_ms
from streamq.errors import Cancelled, ConfigError, JobFailed, TimeLimitExceeded
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.policy import Bury, on_failure, result_bytes
from streamq.producer.context import Progress, _current
from streamq.producer.eager import EagerMode, EagerRecords
from streamq.producer.handle import Job
from streamq.producer.task import Task
from streamq.settings import DEFAULT_RECORD_TTL_MS

if TYPE_CHECKING:
    from streamq.producer.app import App

log = structlog.get_logger("streamq.eager")
_rng = random.Random()
WORKER = "eager"  # the record's worker field: this process, running the job inline


def send_inline(app: App, envs: list[Envelope], mode: EagerMode, due_ms: int) -> list[Job[Any]]:
    """Enqueue in eager mode: each job runs to its end before its handle is returned.

    Every envelope is encoded first, so one that cannot be sent fails the call before any
    runs, as a real batch does. A delayed job runs at once (``due_ms`` stays in its record).
    An ``async def`` task runs in ``asyncio.run``, so not while a loop runs in this thread.
    """
    records = app.eager_records
    created = []
    for env, payload in zip(envs, _encode(app, envs, blocking=True), strict=True):
        created.append(enqueue_inline(records, env, due_ms))
        if created[-1]:
            run_inline(app, records, payload, mode)
    return _handles(app, envs, created, due_ms)


async def asend_inline(
    app: App, envs: list[Envelope], mode: EagerMode, due_ms: int
) -> list[Job[Any]]:
    """:func:`send_inline` for ``aenqueue``: an ``async def`` task is awaited in this loop."""
    records = app.eager_records
    created = []
    for env, payload in zip(envs, _encode(app, envs, blocking=False), strict=True):
        created.append(enqueue_inline(records, env, due_ms))
        if created[-1]:
            await arun_inline(app, records, payload, mode)
    return _handles(app, envs, created, due_ms)


def _encode(app: App, envs: list[Envelope], blocking: bool) -> list[bytes]:
    """Every envelope's bytes, before any job runs.

    Raises:
        ConfigError: a blocking enqueue of an ``async def`` task while an event loop runs in
            this thread (running the coroutine would block that loop).
    """
    if blocking and _loop_running() and any(_is_async(app, env) for env in envs):
        raise ConfigError(
            "an async task cannot run inline from a sync enqueue while an event loop is "
            "running in this thread: use `await task.aenqueue(...)` in eager mode"
        )
    return [app.encode(env) for env in envs]


def _handles(app: App, envs: list[Envelope], created: list[bool], due_ms: int) -> list[Job[Any]]:
    records = app.eager_records
    return [
        Job(env.id, env.queue, app, env.task, env, None, due_ms or None, new, records)
        for env, new in zip(envs, created, strict=True)
    ]


def _is_async(app: App, env: Envelope) -> bool:
    task = app.tasks.get(env.task)
    return task is not None and task.is_async


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def enqueue_inline(records: EagerRecords, env: Envelope, due_ms: int) -> bool:
    """Record a new job as ``lua/enqueue.lua`` would (dedup window: the envelope's
    ``unique_ms``); False if its id is a duplicate."""
    fields: dict[str, object] = {
        "id": env.id,
        "state": "scheduled" if due_ms else "queued",
        "task": env.task,
        "attempt": 0,
        "enqueued_ms": env.enqueued_ms,
    }
    if due_ms:
        fields["due_ms"] = due_ms  # kept to show what was asked; it runs at once all the same
    if not env.tracked:
        return True  # no record to keep, nor to deduplicate against (as for real)
    created, _ = records.create(env.queue, env.id, fields, env.unique_ms)
    return created


@dataclass(frozen=True, slots=True)
class Returned:
    """An attempt's value (what :func:`attempts` is sent when the call returned)."""

    value: object


def attempts(
    app: App, records: EagerRecords, payload: bytes, mode: EagerMode
) -> Generator[tuple[Task[Any, Any], Envelope], Returned | BaseException, None]:
    """A job's attempts until it succeeds, is cancelled or ends dead: yields each call to
    make (with ``current_job()`` set), is sent what it returned or raised.

    Raises:
        BaseException: with ``mode.propagate``, what made the job dead.
    """
    next_payload: bytes | None = payload
    while next_payload is not None:
        env = codec.decode(next_payload, app.settings.max_payload_bytes)
        task = begin(app, records, env, mode)
        if task is None:
            return
        started = time.perf_counter()
        token = _current.set((env, Progress(records)))
        try:
            outcome = yield task, env
        finally:
            _current.reset(token)
        if isinstance(outcome, Cancelled):
            finish(records, env, task, "cancelled", b"")
            return
        if isinstance(outcome, BaseException):
            next_payload = failed(app, records, env, task, outcome, mode, _ms_since(started))
            continue
        succeeded(records, env, task, outcome.value, _ms_since(started))
        return


def run_inline(app: App, records: EagerRecords, payload: bytes, mode: EagerMode) -> None:
    """Run a job's attempts here; an ``async def`` task in ``asyncio.run``.

    Raises:
        BaseException: with ``mode.propagate``, what made the job dead; and whatever a task
            raises that a worker would not catch either (KeyboardInterrupt, SystemExit).
    """
    steps = attempts(app, records, payload, mode)
    outcome: Returned | BaseException | None = None
    try:
        while True:
            try:
                task, env = steps.send(outcome)  # type: ignore[arg-type]  # None starts it
            except StopIteration:
                return
            try:
                value = task.fn(*env.args, **env.kwargs)
                if task.is_async:
                    value = asyncio.run(value)
                outcome = Returned(value)
            except (Exception, Cancelled, TimeLimitExceeded) as exc:  # noqa: BLE001 - recorded
                outcome = exc
    finally:
        steps.close()


async def arun_inline(app: App, records: EagerRecords, payload: bytes, mode: EagerMode) -> None:
    """:func:`run_inline` with an ``async def`` task awaited in this loop."""
    steps = attempts(app, records, payload, mode)
    outcome: Returned | BaseException | None = None
    try:
        while True:
            try:
                task, env = steps.send(outcome)  # type: ignore[arg-type]  # None starts it
            except StopIteration:
                return
            try:
                value = task.fn(*env.args, **env.kwargs)
                if task.is_async:
                    value = await value
                outcome = Returned(value)
            except (Exception, Cancelled, TimeLimitExceeded) as exc:  # noqa: BLE001 - recorded
                outcome = exc
    finally:
        steps.close()


def begin(app: App, records: EagerRecords, env: Envelope, mode: EagerMode) -> Task[Any, Any] | None:
    """Mark the attempt running (as ``lua/start.lua``); None when it must not run."""
    task = app.tasks.get(env.task)
    if task is None:
        bury(records, env, "unknown_task", None, f"no task named {env.task!r}", mode)
        return None
    if env.tracked:
        record = records.job_record(_keys(env), env.id)
        if record.get("state") == b"cancelled" or "cancel_requested_ms" in record:
            finish(records, env, task, "cancelled", b"")
            return None
        fields = {"state": "running", "started_ms": now_ms(), "worker": WORKER}
        records.update(env.queue, env.id, {**fields, "attempt": env.attempt})
    return task


def succeeded(
    records: EagerRecords, env: Envelope, task: Task[Any, Any], value: object, duration_ms: float
) -> None:
    """Store the result through the codec, as a worker's ack does."""
    result, unencodable = result_bytes(value, task.options, env.tracked)
    if unencodable:
        log.warning(
            "job.result_unencodable", job_id=env.id, task=env.task, error_message=unencodable
        )
    finish(records, env, task, "succeeded", result)
    log.info("job.succeeded", **_fields(env), duration_ms=duration_ms, outcome="succeeded")


def failed(
    app: App,
    records: EagerRecords,
    env: Envelope,
    task: Task[Any, Any],
    exc: BaseException,
    mode: EagerMode,
    duration_ms: float,
) -> bytes | None:
    """Apply the worker's retry rule; return the next attempt's payload, None if it ended."""
    verdict = on_failure(env, task.options, exc, app.settings.max_payload_bytes, _rng)
    if isinstance(verdict, Bury):
        bury(records, env, verdict.reason, verdict.error, "", mode, task)
        return None
    log.warning(
        "job.failed",
        **_fields(env),
        duration_ms=duration_ms,
        outcome="retry",
        retry_in_ms=0,
        reason=verdict.reason,
        error_type=type(exc).__name__,
        error_message=str(exc),
    )
    if not env.tracked:
        return verdict.payload
    if "cancel_requested_ms" in records.job_record(_keys(env), env.id):
        finish(records, env, task, "cancelled", b"")  # as lua/ack.lua: it ends, not retried
        return None
    # No backoff wait: the record says queued, due now, as a retry that came due would.
    fields = {"state": "queued", "due_ms": now_ms(), **_error(exc)}
    records.update(env.queue, env.id, fields)
    return verdict.payload


def bury(
    records: EagerRecords,
    env: Envelope,
    reason: str,
    exc: BaseException | None,
    message: str,
    mode: EagerMode,
    task: Task[Any, Any] | None = None,
) -> None:
    """Mark the job dead (as ``lua/bury.lua``); with ``propagate``, raise what killed it."""
    err = _error(exc) if exc else {"error_type": "", "error_message": message, "traceback": ""}
    ttl = task.options.record_ttl_ms if task else DEFAULT_RECORD_TTL_MS
    if env.tracked:
        fields = {"state": "dead", "finished_ms": now_ms(), "reason": reason, **err}
        records.finish(env.queue, env.id, fields, ttl)
    log.error(
        "job.dead_lettered",
        **_fields(env),
        outcome="dead",
        reason=reason,
        error_type=err["error_type"],
        error_message=err["error_message"],
    )
    if mode.propagate:
        if exc is not None:
            raise exc
        raise JobFailed(env.id, "dead", reason, error_message=message)


def finish(
    records: EagerRecords, env: Envelope, task: Task[Any, Any], state: str, result: bytes
) -> None:
    """Write a final state, with its result, as ``lua/ack.lua`` does for a finished entry."""
    if not env.tracked:
        return
    fields: dict[str, object] = {"state": state, "finished_ms": now_ms()}
    if result:
        fields["result"] = result
    records.finish(env.queue, env.id, fields, task.options.record_ttl_ms)


def _keys(env: Envelope) -> QueueKeys:
    return QueueKeys(env.queue)


def _fields(env: Envelope) -> dict[str, object]:
    return {"job_id": env.id, "task": env.task, "queue": env.queue, "attempt": env.attempt}


def _error(exc: BaseException) -> dict[str, str]:
    tb = "".join(traceback.format_exception(exc))
    return {"error_type": type(exc).__name__, "error_message": str(exc), "traceback": tb}


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
