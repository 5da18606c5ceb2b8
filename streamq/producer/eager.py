"""Eager mode's job records: the Redis job hashes, kept in memory instead.

Handles and tasks read and write these through the same :class:`~streamq.producer.handle.Records`
verbs as the Redis store, so status, info, result and cancel keep one implementation. The
state moves mirror the Lua scripts named on each method; nothing here talks to Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from streamq.clock import now_ms
from streamq.keys import QueueKeys

LIVE = frozenset({"queued", "scheduled", "running", "retrying"})
_SWEEP_EVERY = 1024  # new records between sweeps of expired ones


@dataclass(frozen=True, slots=True, eq=False)
class EagerMode:
    """One ``app.eager()`` setting; compared by identity, so a block removes its own."""

    propagate: bool = False


class EagerSwitch:
    """Whether an App runs jobs inline: from construction (``eager=True``) or in a block.

    App-wide rather than per thread (a contextvar would be per thread): code under test often
    enqueues from another thread (a pool, a web test client serving in its own thread), and
    that enqueue must not quietly go to Redis. A lock guards changes; a read is one attribute
    load of an immutable tuple. Blocks nest and may end in any order: each removes its own
    setting, also on an exception, and the innermost live one wins.
    """

    def __init__(self, on: bool) -> None:
        self._base = EagerMode() if on else None
        self._stack: tuple[EagerMode, ...] = ()
        self._lock = threading.Lock()
        self.records = EagerRecords()

    def mode(self) -> EagerMode | None:
        """The setting in force, None when jobs go to Redis."""
        stack = self._stack
        return stack[-1] if stack else self._base

    @contextmanager
    def on(self, propagate: bool) -> Iterator[None]:
        """Run jobs inline until the block ends."""
        mode = EagerMode(propagate)
        with self._lock:
            self._stack = (*self._stack, mode)
        try:
            yield
        finally:
            with self._lock:
                self._stack = tuple(m for m in self._stack if m is not mode)


def _bytes(value: object) -> bytes:
    """A field value as Redis stores it (redis-py writes numbers as their repr)."""
    if isinstance(value, bytes):
        return value
    return (repr(value) if isinstance(value, float) else str(value)).encode()


class EagerRecords:
    """Job records in memory, with Redis's expiry; safe to use from several threads."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, bytes]] = {}
        self._expires_ms: dict[tuple[str, str], int] = {}
        self._changed = threading.Condition(threading.RLock())
        self._created = 0

    # -- the Records verbs a handle and a task use -----------------------------------------
    def job_record(self, keys: QueueKeys, job_id: str) -> dict[str, bytes]:
        """A copy of the job's record (empty when it expired or never existed)."""
        with self._changed:
            return dict(self._live(keys.queue, job_id) or {})

    def set_progress(self, keys: QueueKeys, job_id: str, progress: float, note: str) -> None:
        """Store a running job's progress and note (as HSET does, even on no record)."""
        self.update(keys.queue, job_id, {"progress": float(progress), "note": note})

    def cancel(self, keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> str:
        """As ``lua/cancel.lua``: cancel a job not yet running, flag a running one."""
        with self._changed:
            record = self._live(keys.queue, job_id)
            if record is None:
                return "unknown"
            state = record["state"].decode()
            if state in ("queued", "scheduled", "retrying"):
                self.finish(
                    keys.queue, job_id, {"state": "cancelled", "finished_ms": now_ms}, ttl_ms
                )
                return "cancelled"
            if state == "running":
                self.update(keys.queue, job_id, {"cancel_requested_ms": now_ms})
                return "cancelling"
            return state

    def wait_done(
        self, keys: QueueKeys, job_id: str, timeout_s: float, is_done: Callable[[], bool]
    ) -> bool:
        """Wait until ``is_done()`` (checked on each record change) or ``timeout_s`` passes."""
        with self._changed:
            return self._changed.wait_for(is_done, timeout_s)

    # -- the writes eager mode makes, one per script of a real run -------------------------
    def create(
        self, queue: str, job_id: str, fields: Mapping[str, object], window_ms: int
    ) -> tuple[bool, str]:
        """As ``lua/enqueue.lua``: (True, '') for a new record, else (False, its state)
        when a job with that id is live, or was enqueued less than ``window_ms`` ago."""
        now = now_ms()
        with self._changed:
            old = self._live(queue, job_id)
            if old is not None:
                state = old["state"].decode()
                if state in LIVE or now - int(old.get("enqueued_ms", b"0")) < window_ms:
                    return False, state
            self._records[queue, job_id] = {k: _bytes(v) for k, v in fields.items()}
            self._expires_ms.pop((queue, job_id), None)
            self._created += 1
            if self._created % _SWEEP_EVERY == 0:
                self._sweep(now)
            self._changed.notify_all()
        return True, ""

    def update(self, queue: str, job_id: str, fields: Mapping[str, object]) -> None:
        """Set fields of a record (HSET): creates it if missing, keeps its expiry."""
        with self._changed:
            record = self._live(queue, job_id)
            if record is None:
                record = self._records[queue, job_id] = {}
            record.update((k, _bytes(v)) for k, v in fields.items())
            self._changed.notify_all()

    def finish(self, queue: str, job_id: str, fields: Mapping[str, object], ttl_ms: int) -> None:
        """Write a final state and start the record's expiry (HSET + PEXPIRE + PUBLISH)."""
        with self._changed:
            self.update(queue, job_id, fields)
            self._expires_ms[queue, job_id] = now_ms() + ttl_ms

    # -- expiry ----------------------------------------------------------------------------
    def _live(self, queue: str, job_id: str) -> dict[str, bytes] | None:
        """The record if it has not expired (an expired one is dropped, as Redis would)."""
        key = (queue, job_id)
        expires = self._expires_ms.get(key)
        if expires is not None and expires <= now_ms():
            del self._expires_ms[key]
            self._records.pop(key, None)
            return None
        return self._records.get(key)

    def _sweep(self, now: int) -> None:
        """Drop expired records, so a long-lived eager App does not grow without bound."""
        for key in [k for k, t in self._expires_ms.items() if t <= now]:
            del self._expires_ms[key]
            self._records.pop(key, None)
