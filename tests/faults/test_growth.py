"""Scenario 7: after many jobs with retries and dead letters, nothing is left behind or leaking."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from streamq import Envelope, QueueKeys
from streamq.store import REAPER_CONSUMER
from streamq.testing import RedisServer, wait_until
from tests.faults.harness import (
    children,
    drained,
    events,
    fault_env,
    new_queue,
    producer_app,
    rss_kb,
    server_label,
    settle,
    settle_or_none,
    start_pool,
    wait_for_workers,
)
from tests.faults.ledger import Ledger, accounted, tally
from tests.faults.report import Row

# 20,000 by default; SQ_FAULTS_N=100000 scripts/faults -k growth for the long run.
N = int(os.environ.get("SQ_FAULTS_N", "20000"))
FLAKY_EVERY = 20  # 5 % fail once, then succeed on a retry
DOOMED_EVERY = 100  # 1 % fail every attempt and end in the dead-letter stream


def _jobs(app: Any) -> Iterator[tuple[str, Envelope]]:
    for i in range(N):
        tag = f"m{i}"
        if i % DOOMED_EVERY == 1:
            yield tag, app.envelope("doomed", [tag], max_retries=1)
        elif i % FLAKY_EVERY == 2:
            yield tag, app.envelope("flaky", [tag, 1], max_retries=3)
        else:
            yield tag, app.envelope("work", [tag, 0])


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What the server under test still holds after the pool stopped."""

    xlen: int
    pending: int
    delayed: int
    consumers: list[str]
    held: int  # entries pending for any consumer
    lasting: list[str]  # keys with no TTL
    used_mb: float

    @property
    def orphans(self) -> list[str]:
        """Consumers left behind (Valkey's XAUTOCLAIM creates the reaper's, Redis 7.0 not)."""
        return [c for c in self.consumers if c != REAPER_CONSUMER]

    def __str__(self) -> str:
        return (
            f"XLEN {self.xlen}, pending {self.pending}, delayed {self.delayed}, consumers left"
            f" {self.consumers or 0}; keys with no TTL: {self.lasting}; Redis used_memory"
            f" {self.used_mb:.0f} MB (job records expire after result_ttl_s)"
        )


def _leftovers(client: redis.Redis, keys: QueueKeys) -> Leftovers:
    pending: Any = client.xpending(keys.stream, "default")
    consumers: Any = client.xinfo_consumers(keys.stream, "default")
    return Leftovers(
        xlen=int(client.xlen(keys.stream)),
        pending=int(pending["pending"]),
        delayed=int(client.zcard(keys.delayed)),
        consumers=[c["name"].decode() for c in consumers],
        held=sum(int(c["pending"]) for c in consumers),
        lasting=_keys_without_ttl(client),
        used_mb=int(client.info("memory")["used_memory"]) / 2**20,
    )


def _keys_without_ttl(client: redis.Redis) -> list[str]:
    """Every key of the server under test that never expires."""
    names: list[bytes] = list(client.scan_iter(count=1000))
    out: list[str] = []
    for i in range(0, len(names), 1000):
        chunk = names[i : i + 1000]
        pipe = client.pipeline(transaction=False)
        for name in chunk:
            pipe.pttl(name)
        out += [n.decode() for n, ttl in zip(chunk, pipe.execute(), strict=True) if ttl == -1]
    return sorted(out)


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_many_jobs_leave_nothing_behind(
    ledger_server: RedisServer, ledger_client: redis.Redis, report: Callable[[Row], None]
) -> None:
    """After N jobs the stream, pending list and consumers are empty and worker RSS is flat."""
    t0 = time.monotonic()
    with RedisServer() as sut:
        queue = new_queue("mem")
        keys = QueueKeys(queue)
        env = fault_env(sut.url, queue, ledger_server.url, vt_s=5)
        led = Ledger(ledger_client, queue)
        app = producer_app(sut.url, queue, socket_timeout_s=10)
        jobs = dict(_jobs(app))
        with start_pool(env, 2, "--log-jobs", "failures") as pool:
            pids = wait_for_workers(pool, 2)
            app.enqueue_many(jobs.values())
            # Baseline once every code path (success, retry, dead letter) has run a while.
            wait_until(led.reached(N // 10), 120, 0.1, "warm-up")
            early = {pid: rss_kb(pid) for pid in pids}
            peak = dict(early)
            deadline = time.monotonic() + 300
            doomed = len([t for t in jobs if int(t[1:]) % DOOMED_EVERY == 1])
            while led.done() < N - doomed:
                assert time.monotonic() < deadline, "jobs did not finish in time"
                peak = {pid: max(peak[pid], rss_kb(pid)) for pid in pids}
                time.sleep(0.25)
            settle(accounted(led, app.store, queue, jobs), 60)
            settle_or_none(drained(app.store, queue), 30)  # late copies run too
            late = {pid: rss_kb(pid) for pid in pids}
            exits = len(events(pool, "worker.exited"))
            live = sorted(children(pool))
            pool.signal(signal.SIGTERM)
            assert pool.wait(30) == 0
        t = tally(led, app.store, queue, jobs)
        left = _leftovers(app.client(), keys)
        app.client().close()
    growth = {pid: late[pid] - early[pid] for pid in pids}
    report(
        Row(
            "7 growth after many jobs",
            server_label(sut.binary),
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            wall_s=time.monotonic() - t0,
            notes=f"N={N}: {left}; worker RSS MB at 10% -> end (peak):"
            f" {', '.join(f'{_mb(early[p])}->{_mb(late[p])} ({_mb(peak[p])})' for p in pids)}",
        )
    )
    assert not t.lost
    assert not t.dups
    assert set(t.dead.values()) == {"max_retries"}
    assert len(t.dead) == doomed
    assert (left.xlen, left.pending, left.delayed, left.held) == (0, 0, 0, 0)
    assert not left.orphans, f"consumers left after a clean shutdown: {left.orphans}"
    assert (exits, live) == (0, sorted(pids))
    # Only the queue's own fixed keys may live forever: nothing per job without a TTL.
    assert len(left.lasting) <= 8, f"{len(left.lasting)} keys without a TTL: {left.lasting[:10]}"
    # Flat: within 4 MB or 10 % of the warm baseline, whichever is larger.
    for pid in pids:
        assert growth[pid] <= max(4096, early[pid] // 10), f"worker {pid} RSS grew {growth}"
