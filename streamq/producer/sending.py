"""How one batch of envelopes is sent: the resend rule, without I/O.

:func:`send` (blocking) and :func:`asend` (asyncio) drive the same generator, :func:`sending`:
it yields what to do next (:class:`Enqueue` rows with a dedup floor, :class:`Add` untracked
rows, or :class:`Sleep` before a resend), receives each store reply (or has the store's
error thrown in), and returns the ``(created, state-or-entry-id)`` reply of every job id. The
drivers differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from streamq.clock import now_ms
from streamq.errors import (
    EnqueueError,
    RedisCommandError,
    RedisSetupError,
    StreamqConnectionError,
    StreamqError,
)
from streamq.job import Envelope
from streamq.store import NewJob, Store
from streamq.store.aio import AsyncStore

TRIES = 3  # a lost connection is resent twice, with the same job ids


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Send tracked rows through the enqueue script (``store.enqueue(rows, now, floor)``)."""

    rows: list[NewJob]
    now_ms: int
    floor_ms: int


@dataclass(frozen=True, slots=True)
class Add:
    """Send untracked rows (``store.add(rows)``): no record, so never resent."""

    rows: list[NewJob]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this long, then go on (a resend after a lost connection)."""

    seconds: float


Step = Enqueue | Add | Sleep
Replies = dict[str, tuple[bool, str]]  # job id -> (created, entry id or the live job's state)


def sending(
    batch: list[Envelope],
    rows: list[NewJob],
    done: int | None,
    clock: Callable[[], int] = now_ms,
) -> Generator[Step, Any, Replies]:
    """The steps that send one script call's worth of jobs.

    Args:
        batch: the envelopes, for error messages and their ``tracked`` flag.
        rows: what the store sends, one per envelope, in the same order.
        done: None for a single send, else how many jobs of this bulk call are already
            enqueued (said in the error).
        clock: epoch milliseconds (passed in so the rule is tested without waiting).

    Raises:
        EnqueueError: the connection failed on every try, or failed while untracked rows
            were unsent, or Redis refused the call (no resend can help).
    """
    tracked = [n for n, e in zip(rows, batch, strict=True) if e.tracked]
    plain = [n for n, e in zip(rows, batch, strict=True) if not e.tracked]
    by_id: Replies = {}
    first_try = clock()
    for attempt in range(TRIES):
        try:
            if tracked:
                # On a resend, a record created since the first try is our own lost
                # reply's doing (even if that job already finished): not a new job.
                floor = 0 if attempt == 0 else clock() - first_try + 1000
                got = yield Enqueue(tracked, clock(), floor)
                by_id.update(zip((n.job_id for n in tracked), got, strict=True))
                tracked = []  # sent: a retry after a later failure must not resend
            if plain:
                # No record, so no dedup: never resent, or a retry could duplicate.
                ids = yield Add(plain)
                by_id.update((n.job_id, (True, i)) for n, i in zip(plain, ids, strict=True))
            break
        except StreamqConnectionError as e:
            if attempt == TRIES - 1 or plain:
                what = (
                    f"job {batch[0].id} ({batch[0].task}) was not enqueued"
                    if done is None
                    else f"bulk enqueue stopped after {done} jobs"
                )
                raise EnqueueError(f"{what}: {e}") from e
            yield Sleep(0.05 * 4**attempt)
        except (RedisCommandError, RedisSetupError) as e:
            # OOM (maxmemory reached), READONLY replica after a failover; or credentials,
            # a permission or a server that is not Redis: resending cannot help.
            what = "not enqueued" if done is None else f"bulk enqueue stopped after {done} jobs"
            raise EnqueueError(f"{what}: {e}") from e
    return by_id


def batches(envelopes: Iterable[Envelope], size: int) -> Iterator[list[Envelope]]:
    """``envelopes`` in lists of ``size`` (the last may be shorter), one script call each."""
    batch: list[Envelope] = []
    for env in envelopes:
        batch.append(env)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def send(store: Store, steps: Generator[Step, Any, Replies]) -> Replies:
    """Drive ``steps`` against a blocking store."""
    reply: Any = None
    error: StreamqError | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as stop:
            replies: Replies = stop.value
            return replies
        reply = error = None
        try:
            if isinstance(step, Enqueue):
                reply = store.enqueue(step.rows, step.now_ms, step.floor_ms)
            elif isinstance(step, Add):
                reply = store.add(step.rows)
            else:
                time.sleep(step.seconds)
        except StreamqError as e:
            error = e


async def asend(store: AsyncStore, steps: Generator[Step, Any, Replies]) -> Replies:
    """Drive ``steps`` against an asyncio store: the same steps, awaited."""
    reply: Any = None
    error: StreamqError | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as stop:
            replies: Replies = stop.value
            return replies
        reply = error = None
        try:
            if isinstance(step, Enqueue):
                reply = await store.enqueue(step.rows, step.now_ms, step.floor_ms)
            elif isinstance(step, Add):
                reply = await store.add(step.rows)
            else:
                await asyncio.sleep(step.seconds)
        except StreamqError as e:
            error = e
