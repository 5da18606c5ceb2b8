"""Scenario 1: kill -9 storm on workers, then on the supervisor, then on a whole pool."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack

import pytest
import redis

from streamq.testing import RedisServer, find_server
from tests.faults.harness import (
    ASYNC_CONCURRENCY,
    children,
    drained,
    events,
    fault_env,
    new_queue,
    noise,
    producer_app,
    residue,
    scenario,
    settle,
    settle_or_none,
    sigkill,
    start_pool,
)
from tests.faults.ledger import KILLED, Ledger, accounted, tally
from tests.faults.report import Row
from tests.helpers import Pool

JOBS = int(os.environ.get("SQ_FAULTS_STORM_JOBS", "2000"))


def _storm(pool: Pool, done: Callable[[], bool], killed: set[int], rng: random.Random) -> int:
    """SIGKILL one random live worker of ``pool`` every second until ``done()``; count kills."""
    kills = 0
    deadline = time.monotonic() + 90
    next_kill = time.monotonic() + 1
    while not done():
        assert time.monotonic() < deadline, "no progress under the kill storm"
        if time.monotonic() >= next_kill:
            live = children(pool)
            if live:
                pid = rng.choice(live)
                if sigkill(pid):
                    killed.add(pid)
                    kills += 1
            next_kill += 1
        time.sleep(0.05)
    return kills


@pytest.mark.slow
def test_kill_storm_loses_nothing(
    server_kind: str,
    ledger_server: RedisServer,
    ledger_client: redis.Redis,
    report: Callable[[Row], None],
    app_kind: str,
) -> None:
    """Under SIGKILLs of workers, of the supervisor and of a whole pool, every job finishes."""
    t0 = time.monotonic()
    rng = random.Random(1)
    with RedisServer(find_server(server_kind)) as sut, ExitStack() as stack:
        queue = new_queue("storm")
        env = fault_env(sut.url, queue, ledger_server.url, vt_s=1, max_deliveries=10)
        producer = producer_app(sut.url, queue)
        stack.callback(producer.client().close)
        tags = [f"j{i}" for i in range(JOBS)]
        producer.enqueue_many(producer.envelope("work", [t, rng.randint(10, 30)]) for t in tags)
        led = Ledger(ledger_client, queue)
        killed: set[int] = set()
        pools = [stack.enter_context(start_pool(env, 3, "--log-jobs", "failures", kind=app_kind))]

        def reached(fraction: float) -> Callable[[], bool]:
            return led.reached(int(JOBS * fraction))

        one_by_one = _storm(pools[-1], reached(1 / 3), killed, rng)
        # kill -9 the supervisor alone: its workers drain on PDEATHSIG; a new pool takes over.
        sigkill(pools[-1].proc.pid)
        pools[-1].wait(10)
        pools.append(
            stack.enter_context(start_pool(env, 3, "--log-jobs", "failures", kind=app_kind))
        )
        one_by_one += _storm(pools[-1], reached(2 / 3), killed, rng)
        # The whole pool at once (OOM killer, lost VM): the next pool's reaper recovers its jobs.
        victims = children(pools[-1])
        os.killpg(pools[-1].proc.pid, signal.SIGKILL)
        pools[-1].wait(10)
        killed.update(victims)
        pools.append(
            stack.enter_context(start_pool(env, 3, "--log-jobs", "failures", kind=app_kind))
        )
        one_by_one += _storm(pools[-1], reached(0.9), killed, rng)
        settle_s = settle(accounted(led, producer.store, queue, tags), 60)
        settle_or_none(drained(producer.store, queue), 30)  # late copies run too
        pools[-1].signal(signal.SIGTERM)
        assert pools[-1].wait(30) == 0
        t = tally(led, producer.store, queue, tags)
        left = residue(producer.store, queue)
        causes = t.why(killed)
        crashed = sum(len(events(p, "worker.crashed")) for p in pools)
        junk = sum(len(noise(p)) for p in pools)
    report(
        Row(
            scenario("1 kill -9 storm", app_kind),
            server_kind,
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            settle_s=settle_s,
            wall_s=time.monotonic() - t0,
            notes=f"{len(killed)} workers SIGKILLed ({one_by_one} one by one, {len(victims)} with"
            f" their pool) + 1 supervisor; dups: {dict(causes) or 0}; runs restarted:"
            f" {t.reruns}; {left} (killed workers', pruned later); non-JSON lines: {junk}",
        )
    )
    assert not t.lost, f"lost jobs: {sorted(t.lost)[:20]}"
    assert not t.dead, f"dead-lettered: {t.dead}"
    assert set(causes) <= {KILLED}, f"duplicates not caused by a killed worker: {causes}"
    # A SIGKILLed process loses the acks of at most one flush window (ack_flush_ms, 10 ms):
    # about one 10-30 ms job for a sync worker; for an asyncio worker, every slot may have
    # finished a job in that window, so up to its concurrency.
    per_kill = 3 if app_kind == "sync" else ASYNC_CONCURRENCY
    assert len(t.dups) <= per_kill * len(killed)
    assert crashed == 0
    assert left.clean, left
