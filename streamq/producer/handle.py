"""The handle of an enqueued job: its status, details, result and cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, cast

from streamq import codec
from streamq.clock import now_ms
from streamq.errors import JobFailed, JobNotFound, ResultTimeout
from streamq.job import Envelope
from streamq.keys import QueueKeys, keys_of
from streamq.settings import DEFAULT_RECORD_TTL_MS
from streamq.store import field_text

if TYPE_CHECKING:
    from streamq.producer.app import App
    from streamq.store.aio import AsyncStore

R = TypeVar("R")

STATUSES = (
    "scheduled",
    "queued",
    "running",
    "retrying",
    "succeeded",
    "dead",
    "cancelled",
    "unknown",
)
FINAL = frozenset({"succeeded", "dead", "cancelled"})


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What Redis knows about a job, for people and dashboards.

    ``attempt`` is the number of the latest attempt started: 0 until a worker first starts
    the job (queued, scheduled), 1 during and after the first run, and so on. ``progress``,
    ``note`` and ``worker`` belong to the current or last run; they are cleared when the job
    waits again (a retry, a requeue after a lost worker).
    """

    id: str
    status: str
    task: str
    attempt: int
    enqueued_ms: int | None
    due_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    worker: str
    reason: str
    error_type: str
    error_message: str
    traceback: str
    progress: float | None
    note: str
    cancel_requested: bool


class Records(Protocol):
    """Where job records live: Redis (:class:`streamq.store.Store`), or memory in eager mode.

    A record is the job's hash as Redis holds it (field name to bytes), so handles and tasks
    read and write both the same way, through one implementation of their rules.
    """

    def job_record(self, keys: QueueKeys, job_id: str) -> dict[str, bytes]:
        """The job's record, empty when it expired or never existed."""
        ...

    def set_progress(self, keys: QueueKeys, job_id: str, progress: float, note: str) -> None:
        """Store a running job's progress and note."""
        ...

    def cancel(self, keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> str:
        """Cancel the job; return cancelled, cancelling, its final state, or unknown."""
        ...

    def wait_done(
        self, keys: QueueKeys, job_id: str, timeout_s: float, is_done: Callable[[], bool]
    ) -> bool:
        """Wait until ``is_done()`` or ``timeout_s`` passes; return whether it is done."""
        ...


def _status(record: dict[str, bytes], now: int) -> str:
    """A job's status from its record; a due scheduled/retrying job counts as queued."""
    state = record.get("state", b"unknown").decode()
    if state in ("scheduled", "retrying") and int(record.get("due_ms", b"0")) <= now:
        return "queued"  # due: the scheduler moves it to the stream within milliseconds
    return state


def status_of(record: dict[str, bytes], now: int) -> str:
    """The status of a job with this record (``unknown`` for none)."""
    return _status(record, now) if record else "unknown"


def is_final(record: dict[str, bytes]) -> bool:
    """True when a result waiter can stop: the job ended, or it has no record."""
    return record.get("state", b"").decode() in FINAL or not record


def info_of(job_id: str, r: dict[str, bytes], now: int) -> JobInfo:
    """A :class:`JobInfo` from a job's record."""

    def text(name: str) -> str:
        return field_text(r, name)

    def num(name: str) -> int | None:
        return int(r[name]) if name in r else None

    return JobInfo(
        id=job_id,
        status=status_of(r, now),
        task=text("task"),
        attempt=int(r.get("attempt", b"0")),
        enqueued_ms=num("enqueued_ms"),
        due_ms=num("due_ms"),
        started_ms=num("started_ms"),
        finished_ms=num("finished_ms"),
        worker=text("worker"),
        reason=text("reason"),
        error_type=text("error_type"),
        error_message=text("error_message"),
        traceback=text("traceback"),
        progress=float(r["progress"]) if r.get("progress") else None,
        note=text("note"),
        cancel_requested="cancel_requested_ms" in r,
    )


def result_of(job_id: str, queue: str, r: dict[str, bytes]) -> object:
    """The value of a finished job from its final record.

    Raises:
        JobNotFound: no record.
        JobFailed: it ended dead or cancelled.
    """
    if not r:
        raise JobNotFound(job_id, queue)
    state = r.get("state", b"unknown").decode()
    if state == "succeeded":
        raw = r.get("result")
        return codec.decode_result(raw) if raw else None
    reason = field_text(r, "reason") or state
    raise JobFailed(
        job_id,
        state,
        reason,
        field_text(r, "error_type"),
        field_text(r, "error_message"),
        field_text(r, "traceback"),
    )


def _timeout(job_id: str, start: float) -> ResultTimeout:
    waited = round(time.monotonic() - start, 3)
    return ResultTimeout(f"job {job_id} not finished after {waited}s")


@dataclass(frozen=True, slots=True)
class Job(Generic[R]):
    """A job by id. ``created`` is False when an enqueue found the same id still live.

    ``entry_id`` is the stream entry id for a job added to the stream, None for one waiting
    in the delayed set (``due_ms`` then says when it runs), for a rebuilt handle or in eager
    mode. ``records`` is where its record lives: None for the App's Redis; a handle made in
    eager mode keeps answering from memory after the ``with app.eager()`` block.
    """

    id: str
    queue: str
    app: App
    task: str = ""
    envelope: Envelope | None = None
    entry_id: str | None = None
    due_ms: int | None = None
    created: bool = True
    records: Records | None = field(default=None, repr=False, compare=False)

    def _records(self) -> Records:
        return self.records if self.records is not None else self.app.store

    def _record(self) -> dict[str, bytes]:
        return self._records().job_record(keys_of(self.queue), self.id)

    def _arecords(self) -> AsyncStore | None:
        """The running loop's store, or None when records live in memory (eager mode)."""
        return self.app.astore if self.records is None else None

    def status(self) -> str:
        """One of scheduled, queued, running, retrying, succeeded, dead, cancelled, unknown."""
        return status_of(self._record(), now_ms())

    async def astatus(self) -> str:
        """:meth:`status`, awaitable."""
        store = self._arecords()
        if store is None:
            return self.status()
        return status_of(await store.job_record(keys_of(self.queue), self.id), now_ms())

    def info(self) -> JobInfo:
        """Attempts, timestamps, worker, last error and progress."""
        return info_of(self.id, self._record(), now_ms())

    async def ainfo(self) -> JobInfo:
        """:meth:`info`, awaitable."""
        store = self._arecords()
        if store is None:
            return self.info()
        return info_of(self.id, await store.job_record(keys_of(self.queue), self.id), now_ms())

    def result(self, timeout_s: float = 60.0) -> R:
        """Wait (pub/sub, no polling) for the job to finish and return its value.

        Raises:
            JobNotFound: it has no record (wrong id or queue, expired, or untracked); a
                JobFailed, so ``except JobFailed`` catches it too.
            JobFailed: it ended dead (with the remote error) or cancelled.
            ResultTimeout: it did not finish within ``timeout_s``.
        """
        seen: dict[str, dict[str, bytes]] = {}

        def final() -> bool:
            seen["r"] = self._record()
            return is_final(seen["r"])

        start = time.monotonic()
        if not self._records().wait_done(keys_of(self.queue), self.id, timeout_s, final):
            raise _timeout(self.id, start)
        return cast(R, result_of(self.id, self.queue, seen["r"]))

    async def aresult(self, timeout_s: float = 60.0) -> R:
        """:meth:`result` without blocking the event loop: every waiting coroutine of a loop
        shares one pub/sub connection.

        Raises:
            JobNotFound, JobFailed, ResultTimeout: as :meth:`result`.
        """
        store = self._arecords()
        if store is None:  # eager mode: the job already ran, or the wait is in memory
            return await asyncio.to_thread(self.result, timeout_s)
        keys = keys_of(self.queue)
        seen: dict[str, dict[str, bytes]] = {}

        async def final() -> bool:
            seen["r"] = await store.job_record(keys, self.id)
            return is_final(seen["r"])

        start = time.monotonic()
        if not await store.wait_done(keys, self.id, timeout_s, final):
            raise _timeout(self.id, start)
        return cast(R, result_of(self.id, self.queue, seen["r"]))

    def cancel(self) -> str:
        """Cancel the job: ``cancelled`` (it will not run), ``cancelling`` (it is running and
        is being stopped), or the final state it already had, or ``unknown``."""
        return self._records().cancel(keys_of(self.queue), self.id, now_ms(), self._ttl_ms())

    async def acancel(self) -> str:
        """:meth:`cancel`, awaitable."""
        store = self._arecords()
        if store is None:
            return self.cancel()
        return await store.cancel(keys_of(self.queue), self.id, now_ms(), self._ttl_ms())

    def _ttl_ms(self) -> int:
        """How long the record of a job cancelled now is kept: its task's setting."""
        task = self.app.tasks.get(self.task) if self.task else None
        return task.options.record_ttl_ms if task else DEFAULT_RECORD_TTL_MS

    def __repr__(self) -> str:
        return f"<Job {self.id} task={self.task} queue={self.queue}>"
