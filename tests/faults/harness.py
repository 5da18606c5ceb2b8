"""Pools, producers and measurements shared by the fault scenarios."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

import streamq
from streamq import QueueKeys
from streamq.errors import StreamqError
from streamq.settings import AppSettings
from streamq.store import Store
from streamq.testing import wait_until
from tests.faults.ledger import Ledger
from tests.helpers import Pool

FAULT_APP = "tests.faults.app:app"


def new_queue(prefix: str) -> str:
    """A queue name of its own for one scenario run."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def server_label(binary: str) -> str:
    """``valkey`` or ``redis``: which server a binary path is, for the summary table."""
    return "valkey" if "valkey" in Path(binary).name else "redis"


def fault_env(redis_url: str, queue: str, ledger_url: str, **settings: object) -> dict[str, str]:
    """Environment of a pool running ``tests.faults.app``; ``settings`` become ``SQ_FAULT_*``."""
    env = dict(os.environ)
    env.update(
        STREAMQ_REDIS_URL=redis_url,
        SQ_FAULT_QUEUE=queue,
        SQ_FAULT_LEDGER_URL=ledger_url,
        PYTHONUNBUFFERED="1",
    )
    env.update({f"SQ_FAULT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


# The fault app's task bodies: sync (tests/faults/app.py) or async (async_app.py, run by
# asyncio workers at ASYNC_CONCURRENCY jobs per process).
APP_KINDS = {"sync": FAULT_APP, "async": "tests.faults.async_app:app"}
ASYNC_CONCURRENCY = 20


def start_pool(env: dict[str, str], processes: int, *args: str, kind: str = "sync") -> Pool:
    """A supervised pool running the fault app (a later ``--app`` wins in argparse)."""
    extra = ["--concurrency", str(ASYNC_CONCURRENCY)] if kind == "async" else []
    argv = ["--app", APP_KINDS[kind], "--grace-s", "10", *extra, *args]
    return Pool(env, argv, processes=processes)


def scenario(name: str, kind: str) -> str:
    """The summary table's scenario label: the async runs are marked."""
    return f"{name} (async x{ASYNC_CONCURRENCY})" if kind == "async" else name


def events(pool: Pool, name: str | None = None) -> list[dict[str, Any]]:
    """The pool's JSON log events; lines that are not JSON are skipped (see :func:`noise`)."""
    out = []
    for line in list(pool.lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and (name is None or doc.get("event") == name):
            out.append(doc)
    return out


def noise(pool: Pool) -> list[str]:
    """Output lines that are not JSON events (tracebacks, warnings): there should be none."""
    bad = []
    for line in list(pool.lines):
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    return bad


def children(pool: Pool) -> list[int]:
    """Worker pids alive now according to the supervisor's spawn and exit events."""
    alive: dict[int, bool] = {}
    for e in events(pool):
        if e.get("event") == "worker.spawned":
            alive[e["child_pid"]] = True
        elif e.get("event") == "worker.exited":
            alive[e["child_pid"]] = False
    return [pid for pid, up in alive.items() if up and rss_kb(pid) > 0]


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (0 once it is gone or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sigkill(pid: int) -> bool:
    """SIGKILL one process; False if it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def wait_for_workers(pool: Pool, count: int, timeout_s: float = 20.0) -> list[int]:
    """Wait until ``count`` workers of ``pool`` announced themselves; return their pids."""
    wait_until(lambda: len(events(pool, "worker.started")) >= count, timeout_s, 0.05, "workers")
    return children(pool)


def producer_app(redis_url: str, queue: str, socket_timeout_s: float = 1.0) -> streamq.App:
    """A producer that enqueues by task name, without importing the task code."""
    return streamq.App(
        redis_url, AppSettings(default_queue=queue, socket_timeout_s=socket_timeout_s)
    )


def poll(fn: Callable[[], bool]) -> Callable[[], bool]:
    """``fn`` for :func:`wait_until`, reading False while the system under test is away."""

    def safe() -> bool:
        try:
            return fn()
        except (StreamqError, redis.RedisError, OSError):
            return False

    return safe


def settle(pred: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``pred()`` holds (Redis errors read as False); TimeoutError past the limit."""
    start = time.monotonic()
    wait_until(poll(pred), timeout_s, 0.05, "settled")
    return time.monotonic() - start


def settle_or_none(pred: Callable[[], bool], timeout_s: float) -> float | None:
    """:func:`settle`, or None past the limit, where the scenario tolerates loss."""
    try:
        return settle(pred, timeout_s)
    except TimeoutError:
        return None


@dataclass(frozen=True, slots=True)
class Residue:
    """What a queue still holds in Redis: all zero after every job is accounted for."""

    xlen: int
    pending: int
    delayed: int
    consumers: dict[str, int]  # name -> pending entries

    @property
    def clean(self) -> bool:
        """Nothing queued, held or delayed, and no consumer holding an entry."""
        return self.xlen == self.pending == self.delayed == 0 and not any(self.consumers.values())

    def __str__(self) -> str:
        return (
            f"left in Redis: XLEN {self.xlen}, pending {self.pending}, delayed {self.delayed},"
            f" consumers {len(self.consumers)}"
        )


def residue(store: Store, queue: str, group: str = "default") -> Residue:
    """The :class:`Residue` of ``queue`` for ``group``."""
    s = store.stats(QueueKeys(queue), group)
    return Residue(s.queued + s.pending, s.pending, s.delayed, s.consumers)


def drained(store: Store, queue: str) -> Callable[[], bool]:
    """A condition for ``settle``: nothing queued or held (a late duplicate copy is queued)."""

    def empty() -> bool:
        left = residue(store, queue)
        return left.xlen == left.pending == left.delayed == 0

    return empty


def first_done_after(led: Ledger, since: float, timeout_s: float = 30) -> float:
    """Seconds from ``since`` (unix time) until some job finished after it."""

    def first() -> float:
        return min((r.at for rs in led.runs().values() for r in rs if r.at > since), default=0)

    return wait_until(first, timeout_s, 0.05, "a job finished after the fault") - since


@dataclass
class Produced:
    """What a :class:`Producer` sent: accepted tags (with the time), rejected, unexpected."""

    accepted: dict[str, float]
    rejected: dict[str, str]
    unexpected: list[str]


class Producer:
    """Enqueues ``work`` jobs one by one from a thread at a steady rate, as a web app would."""

    def __init__(self, app: streamq.App, prefix: str, ms: float, rate_per_s: float) -> None:
        self.app = app
        self.prefix = prefix
        self.ms = ms
        self.interval_s = 1 / rate_per_s
        self.out = Produced({}, {}, [])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Producer:
        """Start producing."""
        self._thread.start()
        return self

    def stop(self) -> Produced:
        """Stop producing and return the record."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.out

    def _run(self) -> None:
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            i += 1
            tag = f"{self.prefix}{i}"
            try:
                self.app.enqueue("work", args=[tag, self.ms])
                self.out.accepted[tag] = time.time()
            except streamq.EnqueueError as e:
                self.out.rejected[tag] = str(e)
            except Exception as e:  # the contract is EnqueueError only: record, fail later
                self.out.unexpected.append(f"{type(e).__name__}: {e}")
            next_at = max(next_at + self.interval_s, time.monotonic() - 1)
            self._stop.wait(max(0.0, next_at - time.monotonic()))
