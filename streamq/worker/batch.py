"""Pure helpers for a worker's batches: decoding, priority order, and batch size.

No Redis and no clock: the worker passes in what was read and what it measured.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from streamq import codec
from streamq.errors import DecodeError
from streamq.job import Envelope
from streamq.keys import PRIORITY_LEVELS
from streamq.settings import TaskOptions
from streamq.store import Entry

Item = tuple[Entry, Envelope | DecodeError]


def decode_all(entries: Sequence[Entry], max_bytes: int) -> list[Item]:
    """Each entry with its envelope, or the DecodeError that will dead-letter it."""
    items: list[Item] = []
    for e in entries:
        payload = e.payload
        if payload is None:
            items.append((e, DecodeError("malformed_entry", "entry has no 'j' field", b"")))
            continue
        try:
            items.append((e, codec.decode(payload, max_bytes)))
        except DecodeError as err:
            items.append((e, err))
    return items


def weighted_order(
    items: list[Item], weights: tuple[int, int, int], rng: random.Random
) -> list[Item]:
    """Order priority levels by a weighted draw, so lower levels get a share under load."""
    by_level = dict(zip(PRIORITY_LEVELS, weights, strict=True))
    levels = sorted({e.priority for e, _ in items})
    order: list[int] = []
    while levels:
        pick = rng.choices(levels, [by_level[lv] for lv in levels])[0]
        order.append(pick)
        levels.remove(pick)
    rank = {lv: i for i, lv in enumerate(order)}
    return sorted(items, key=lambda it: rank[it[0].priority])


def next_count(handled: int, elapsed_s: float, target_ms: float, max_batch: int, now: int) -> int:
    """The read size that makes a batch take about ``target_ms``; ``now`` if nothing ran."""
    if handled == 0:
        return now
    per_job_ms = max(elapsed_s * 1000 / handled, 0.001)
    return max(1, min(max_batch, int(target_ms / per_job_ms)))


def time_limit_ms(env: Envelope, opts: TaskOptions) -> int | None:
    """A run's time limit: the job's own (set at enqueue), else its task's; None for none."""
    if env.timeout_ms is not None:
        return env.timeout_ms
    return int(opts.timeout_s * 1000) if opts.timeout_s else None


def read_room(concurrency: int, prefetch: int, running: int, waiting: int) -> int:
    """How many entries an asyncio worker may read now: free slots plus the prefetch, less
    what it already holds (running or waiting for a slot)."""
    return max(0, concurrency + prefetch - running - waiting)


def entry_s(entry_id: bytes) -> float:
    """When an entry entered its stream (its id's millisecond part), in epoch seconds."""
    return int(entry_id[: entry_id.index(b"-")]) / 1000
