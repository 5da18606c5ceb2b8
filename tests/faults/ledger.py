"""Accounting for a scenario: each accepted job finished once, more than once (why), dead, lost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import redis

from streamq import DeadLetters, QueueKeys, codec
from streamq.errors import DecodeError
from streamq.store import Store

KILLED = "worker SIGKILLed before its ack"
LEASE_LOST = "lease lost while its worker lived"


@dataclass(frozen=True, slots=True)
class Run:
    """One finished run of a job, as the task recorded it in the ledger."""

    tag: str
    pid: int
    at: float


class Ledger:
    """Reads what ``tests.faults.app`` tasks wrote for one queue (same key spelling)."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client = client
        self.starts_key = f"sqfault:{queue}:starts"
        self.done_key = f"sqfault:{queue}:done"
        self.runs_key = f"sqfault:{queue}:runs"
        self.tries_key = f"sqfault:{queue}:tries"

    def done(self) -> int:
        """How many distinct jobs finished at least once."""
        return int(self.client.hlen(self.done_key))

    def reached(self, count: int) -> Callable[[], bool]:
        """A condition for ``wait_until``: at least ``count`` distinct jobs finished."""
        return lambda: self.done() >= count

    def runs(self) -> dict[str, list[Run]]:
        """Every finished run, by job tag, oldest first."""
        raw: Any = self.client.lrange(self.runs_key, 0, -1)
        out: dict[str, list[Run]] = {}
        for item in raw:
            tag, pid, at = item.decode().split()
            out.setdefault(tag, []).append(Run(tag, int(pid), float(at)))
        return out

    def starts(self) -> dict[str, int]:
        """How many runs of each job started (a SIGKILL can stop one before it finishes)."""
        raw: Any = self.client.hgetall(self.starts_key)
        return {k.decode(): int(v) for k, v in raw.items()}


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """A dead letter: job tag and id when the payload decodes, and its last stream entry id."""

    tag: str
    entry: str
    reason: str
    job_id: str = ""


def dead_letters(store: Store, queue: str) -> list[DeadEntry]:
    """Every dead letter of ``queue``; tags come from the first task argument."""
    out: list[DeadEntry] = []
    for job in DeadLetters(store, queue).iter():
        tag = job_id = ""
        try:
            env = codec.decode(job.payload, max(len(job.payload), 1))
            job_id = env.id
            if env.args and isinstance(env.args[0], str):
                tag = env.args[0]
        except DecodeError:
            pass
        out.append(DeadEntry(tag, job.fields.get("entry", ""), job.reason, job_id))
    return out


@dataclass
class Tally:
    """Where every accepted job ended up."""

    jobs: int
    once: int = 0
    dups: dict[str, list[Run]] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)  # tag -> reason
    lost: list[str] = field(default_factory=list)
    unaccepted_ran: int = 0  # enqueue raised, yet the job existed and ran (ambiguous reply)
    reruns: int = 0  # runs started more than once (includes runs killed before finishing)

    def why(self, killed: Collection[int]) -> Counter[str]:
        """Cause of each duplicate: the earlier run's worker was killed, or it lived."""
        causes: Counter[str] = Counter()
        for runs in self.dups.values():
            early = {r.pid for r in runs[:-1]}
            causes[KILLED if early & set(killed) else LEASE_LOST] += 1
        return causes


def tally(ledger: Ledger, store: Store, queue: str, accepted: Collection[str]) -> Tally:
    """Account for every job in ``accepted`` (tags)."""
    runs = ledger.runs()
    dead = {d.tag: d.reason for d in dead_letters(store, queue) if d.tag}
    t = Tally(jobs=len(accepted))
    wanted = set(accepted)
    for tag in wanted:
        done = runs.get(tag, [])
        if len(done) == 1:
            t.once += 1
        elif done:
            t.dups[tag] = done
        elif tag in dead:
            t.dead[tag] = dead[tag]
        else:
            t.lost.append(tag)
    t.unaccepted_ran = sum(1 for tag in runs if tag not in wanted)
    t.reruns = sum(1 for tag, n in ledger.starts().items() if n > 1 and tag in wanted)
    return t


def settled(ledger: Ledger, store: Store, queue: str, accepted: Collection[str]) -> bool:
    """True once every accepted job finished or was dead-lettered (cheap counts first)."""
    dead = int(store.client.xlen(QueueKeys(queue).dead))
    if ledger.done() + dead < len(accepted):
        return False
    return not tally(ledger, store, queue, accepted).lost


def accounted(
    ledger: Ledger, store: Store, queue: str, accepted: Collection[str]
) -> Callable[[], bool]:
    """A condition for ``settle``: :func:`settled` over a snapshot of ``accepted``."""
    frozen = frozenset(accepted)
    return lambda: settled(ledger, store, queue, frozen)
