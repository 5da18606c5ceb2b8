"""How a failed or unrunnable job is recorded: retried later, or buried with a reason.

Shared by the sync and asyncio workers (for jobs they ran) and the supervisor (for a job whose
process it had to kill), so all follow one policy. Each method logs the canonical line and
returns the Redis write as data (:class:`Burial`, :class:`Retrying`), which the caller sends
through its own store, blocking or awaitable, now or after Redis comes back.
"""

from __future__ import annotations

import random
import traceback
from typing import Any, NamedTuple

import msgpack

from streamq.clock import now_ms
from streamq.errors import DecodeError
from streamq.job import Envelope
from streamq.policy import Bury, on_failure
from streamq.producer.app import App
from streamq.scripts import RetryRow
from streamq.settings import DEFAULT_RECORD_TTL_MS
from streamq.store import Entry


class Burial(NamedTuple):
    """A dead-letter write: the arguments of the store's ``bury`` verb, in its order.

    ``store.bury(*burial)`` (or ``await astore.bury(*burial)``) returns False when the entry
    was no longer ours (reclaimed while it ran).
    """

    entry: Entry
    group: str
    job_id: str
    now_ms: int
    ttl_ms: int
    fields: dict[str, Any]


class Retrying(NamedTuple):
    """A failed run's next attempt, written with the next batched ack (see ``lua/ack.lua``)."""

    entry: Entry
    job_id: str
    tracked: bool
    payload: bytes
    due_ms: int
    error: tuple[str, str, str]
    ttl_ms: int

    def row(self) -> RetryRow:
        """What the ack script needs to write it."""
        job_key = self.entry.keys.job(self.job_id) if self.tracked else ""
        return RetryRow(
            self.entry.id, job_key, self.job_id, self.payload, self.due_ms, self.error, self.ttl_ms
        )


_rng = random.Random()


def reseed() -> None:
    """Give this process its own jitter (forked workers would otherwise retry in lockstep)."""
    _rng.seed()


def job_fields(env: Envelope, with_args: bool = False) -> dict[str, object]:
    """The fields every canonical job line carries.

    Arguments only with ``with_args`` (``--log-args``): they often carry personal data.
    """
    fields: dict[str, object] = {
        "job_id": env.id,
        "task": env.task,
        "queue": env.queue,
        "attempt": env.attempt,
    }
    if with_args:
        fields["args"] = env.args
        fields["kwargs"] = env.kwargs
    return fields


def error_fields(exc: BaseException | None, full: bool = True) -> dict[str, str]:
    """Type, message and traceback of ``exc``, as logged and stored.

    ``full=False`` (a failure that will be retried) keeps the frame chain but skips source
    lines, carets and chained causes: ~1 us instead of ~40 us, which made the retry path cost
    more than the jobs. The dead letter of the last attempt keeps the full traceback.
    """
    if exc is None:
        return {}
    if full:
        tb = "".join(traceback.format_exception(exc))
    else:
        frames = [
            f"{frame.f_code.co_filename}:{line} in {frame.f_code.co_name}"
            for frame, line in traceback.walk_tb(exc.__traceback__)
        ]
        tb = "\n".join([*frames, f"{type(exc).__name__}: {exc}"])
    return {"error_type": type(exc).__name__, "error_message": str(exc), "traceback": tb}


class Outcomes:
    """Failure policy of one App, for ``consumer`` of ``group``."""

    def __init__(
        self, app: App, group: str, consumer: str, log: Any, log_args: bool = False
    ) -> None:
        self.log_args = log_args
        self.app = app
        self.group = group
        self.consumer = consumer
        self.log = log

    def failed(
        self, entry: Entry, env: Envelope, exc: BaseException, duration_ms: float
    ) -> Burial | Retrying:
        """A run that raised: retry with backoff while attempts remain, else bury."""
        opts = self.app.tasks[env.task].options
        verdict = on_failure(env, opts, exc, self.app.settings.max_payload_bytes, _rng)
        if isinstance(verdict, Bury):
            return self.bury(entry, env, verdict.reason, verdict.error, duration_ms)
        now = now_ms()
        err = error_fields(exc, full=False)
        self.log.warning(
            "job.failed",
            **job_fields(env, self.log_args),
            duration_ms=duration_ms,
            outcome="retry",
            retry_in_ms=verdict.delay_ms,
            reason=verdict.reason,
            **err,
        )
        error = (err["error_type"], err["error_message"], err["traceback"])
        return Retrying(
            entry,
            env.id,
            env.tracked,
            verdict.payload,
            now + verdict.delay_ms,
            error,
            opts.record_ttl_ms,
        )

    def bury(
        self,
        entry: Entry,
        env: Envelope,
        reason: str,
        exc: BaseException | None,
        duration_ms: float,
        message: str = "",
    ) -> Burial:
        """Move a decodable job to the dead-letter stream with ``reason``."""
        err = error_fields(exc) if exc else {"error_type": "", "error_message": message}
        now = now_ms()
        fields: dict[str, Any] = {
            "j": entry.payload or b"",
            "reason": reason,
            "job_id": env.id,
            "task": env.task,
            "attempts": env.attempt,
            "entry": entry.id,
            "worker": self.consumer,
            "enqueued_ms": env.enqueued_ms,
            "dead_ms": now,
            **err,
        }
        task = self.app.tasks.get(env.task)
        ttl = task.options.record_ttl_ms if task else DEFAULT_RECORD_TTL_MS
        self.log.error(
            "job.dead_lettered",
            **job_fields(env, self.log_args),
            duration_ms=duration_ms,
            outcome="dead",
            reason=reason,
            **err,
        )
        return Burial(entry, self.group, env.id, now, ttl, fields)

    def bury_raw(
        self, entry: Entry, reason: str, message: str, job_id: str = "", task: str = ""
    ) -> Burial:
        """Dead-letter an entry we cannot run, keeping its bytes as they were.

        With ``job_id`` (the bytes still name the job, e.g. an out-of-range option) its
        record is made final too, so ``result()`` ends with JobFailed instead of waiting on a
        job that stays queued forever.
        """
        raw = entry.payload if entry.payload is not None else msgpack.packb(entry.fields)
        now = now_ms()
        fields: dict[str, Any] = {
            "j": raw,
            "reason": reason,
            "error_type": "DecodeError",
            "error_message": message,
            "entry": entry.id,
            "worker": self.consumer,
            "dead_ms": now,
        }
        if job_id:
            fields.update(job_id=job_id, task=task)
        known = self.app.tasks.get(task) if task else None
        ttl = known.options.record_ttl_ms if known else DEFAULT_RECORD_TTL_MS
        self.log.error(
            "job.dead_lettered",
            entry_id=entry.id.decode(),
            job_id=job_id or None,
            task=task or None,
            queue=entry.keys.queue,
            outcome="dead",
            reason=reason,
            error_type="DecodeError",
            error_message=message,
            payload_bytes=len(raw),
        )
        return Burial(entry, self.group, job_id, now, ttl, fields)

    def unrunnable(self, entry: Entry, env: Envelope | DecodeError) -> tuple[Burial, str | None]:
        """Dead-letter an entry no worker can run: undecodable, or for a task we do not know.

        Returns the write and the job id it concerns (None for bytes naming no job).
        """
        if isinstance(env, DecodeError):
            burial = self.bury_raw(entry, env.reason, str(env), env.job_id, env.task)
            return burial, env.job_id or None
        msg = f"no task named {env.task!r}"
        return self.bury(entry, env, "unknown_task", None, 0.0, msg), env.id
