"""The dead-letter workflow: list, show, replay and purge what could not be run."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from streamq import codec
from streamq.clock import now_ms
from streamq.errors import DecodeError
from streamq.job import PRIORITY_NORMAL, Envelope
from streamq.keys import QueueKeys
from streamq.store import DeadLetter, Store, field_text


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A dead letter with its job decoded when possible."""

    id: str
    reason: str
    task: str
    job_id: str
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    payload: bytes
    fields: dict[str, str]

    @classmethod
    def from_letter(cls, letter: DeadLetter) -> DeadJob:
        """Read a raw dead-letter entry; undecodable payloads keep their bytes."""
        f = letter.fields

        def text(name: str) -> str:
            return field_text(f, name)

        return cls(
            id=letter.id,
            reason=text("reason"),
            task=text("task"),
            job_id=text("job_id"),
            error_type=text("error_type"),
            error_message=text("error_message"),
            traceback=text("traceback"),
            attempts=int(f.get("attempts", b"0") or 0),
            payload=f.get("j", b""),
            fields={k: text(k) for k in f if k not in ("j", "traceback")},
        )

    def matches(self, task: str | None, reason: str | None) -> bool:
        """True if this letter is of ``task`` and ``reason`` (None matches any)."""
        return (task is None or self.task == task) and (reason is None or self.reason == reason)


@dataclass(frozen=True, slots=True)
class DeadPage:
    """One page of dead letters, newest first; ``next`` is where the following page starts
    (None: nothing older), ``scanned`` how many letters were read to fill it."""

    jobs: list[DeadJob]
    next: str | None
    scanned: int


class DeadLetters:
    """Dead letters of one queue."""

    def __init__(self, store: Store, queue: str) -> None:
        self.store = store
        self.keys = QueueKeys(queue)

    def iter(
        self, task: str | None = None, page: int = 500, reason: str | None = None
    ) -> Iterator[DeadJob]:
        """Every dead letter, oldest first, optionally of one task and reason; reads page by
        page."""
        start = "-"
        while True:
            letters = self.store.dead_list(self.keys, start, page)
            for letter in letters:
                job = DeadJob.from_letter(letter)
                if job.matches(task, reason):
                    yield job
            if len(letters) < page:
                return
            start = "(" + letters[-1].id

    def page(
        self,
        before: str | None = None,
        count: int = 50,
        task: str | None = None,
        reason: str | None = None,
        scan: int = 2000,
    ) -> DeadPage:
        """Up to ``count`` letters older than ``before`` (None: the newest), newest first.

        Reads at most ``scan`` letters, so a filter that matches little costs a bounded time
        per page (the page then holds fewer than ``count``; ``next`` carries on the scan).
        """
        out: builtins.list[DeadJob] = []
        end, scanned = "+" if before is None else "(" + before, 0
        wanted = {k: v.encode() for k, v in (("task", task), ("reason", reason)) if v is not None}
        while scanned < scan:
            want = min(500 if wanted else count, scan - scanned)
            letters = self.store.dead_recent(self.keys, end, want)
            for i, letter in enumerate(letters, 1):
                # Compared as bytes first: a filter that matches little decodes little.
                if all(letter.fields.get(k, b"") == v for k, v in wanted.items()):
                    job = DeadJob.from_letter(letter)
                    out.append(job)
                    if len(out) == count:
                        more = i < len(letters) or len(letters) == want
                        return DeadPage(out, job.id if more else None, scanned + i)
            scanned += len(letters)
            if len(letters) < want:
                return DeadPage(out, None, scanned)
            end = "(" + letters[-1].id
        return DeadPage(out, end[1:], scanned)

    def list(self, task: str | None = None, limit: int = 100) -> builtins.list[DeadJob]:
        """The first ``limit`` dead letters."""
        out: builtins.list[DeadJob] = []
        for job in self.iter(task):
            out.append(job)
            if len(out) >= limit:
                break
        return out

    def get(self, dead_id: str) -> DeadJob | None:
        """One dead letter by its entry id."""
        letters = self.store.dead_list(self.keys, dead_id, 1)
        if letters and letters[0].id == dead_id:
            return DeadJob.from_letter(letters[0])
        return None

    def replay(
        self,
        ids: builtins.list[str] | None = None,
        task: str | None = None,
        progress: Callable[[int], None] | None = None,
        batch: int = 200,
        reason: str | None = None,
    ) -> int:
        """Put dead jobs back on the stream with a fresh attempt count; return how many.

        ``ids=None`` replays all (of ``task`` and ``reason``, if given). Each batch moves
        atomically, and only entries this call removed are re-added, so concurrent replays
        never duplicate.
        """
        chosen = self._select(ids, task, reason)
        done = 0
        for start in range(0, len(chosen), batch):
            by_priority: dict[int, list[tuple[bytes, bytes, str, str]]] = {}
            for j in chosen[start : start + batch]:
                payload, env = self._fresh(j.payload)
                priority = env.priority if env else PRIORITY_NORMAL
                by_priority.setdefault(priority, []).append(
                    (j.id.encode(), payload, env.id if env else "", env.task if env else "")
                )
            for priority, moves in by_priority.items():
                done += self.store.dead_replay(self.keys, priority, now_ms(), moves)
            if progress:
                progress(done)
        return done

    def purge(
        self,
        ids: builtins.list[str] | None = None,
        task: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Delete dead letters (all, of ``task`` and ``reason``, or by id); return how many."""
        chosen = self._select(ids, task, reason)
        return sum(
            self.store.dead_delete(self.keys, [j.id for j in chosen[i : i + 500]])
            for i in range(0, len(chosen), 500)
        )

    def _select(
        self, ids: builtins.list[str] | None, task: str | None, reason: str | None = None
    ) -> builtins.list[DeadJob]:
        if ids is None:
            return list(self.iter(task, reason=reason))
        found = [self.get(i) for i in ids]
        return [j for j in found if j is not None and j.matches(task, reason)]

    @staticmethod
    def _fresh(payload: bytes) -> tuple[bytes, Envelope | None]:
        """The payload with attempt 1; undecodable bytes go back as they were."""
        try:
            env = codec.decode(payload, max(len(payload), 1))
        except DecodeError:
            return payload, None
        fresh = env.fresh()
        return codec.encode(fresh, max(len(payload) * 2, 1024)), fresh
