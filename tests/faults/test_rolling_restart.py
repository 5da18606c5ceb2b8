"""Scenario 4: a rolling restart (start a new pool, SIGTERM the old one) while jobs run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import ExitStack

import pytest
import redis

from streamq import QueueKeys
from streamq.testing import RedisServer, wait_until
from tests.faults.harness import (
    drained,
    events,
    fault_env,
    new_queue,
    producer_app,
    scenario,
    server_label,
    settle,
    settle_or_none,
    start_pool,
    wait_for_workers,
)
from tests.faults.ledger import Ledger, accounted, tally
from tests.faults.report import Row

JOB_MS = 500


@pytest.mark.slow
def test_rolling_restart_drains_in_flight_jobs(
    ledger_server: RedisServer,
    ledger_client: redis.Redis,
    report: Callable[[Row], None],
    app_kind: str,
) -> None:
    """SIGTERM lets every job in hand finish and hands back the rest: none lost, none rerun."""
    t0 = time.monotonic()
    with RedisServer() as sut, ExitStack() as stack:
        queue = new_queue("roll")
        env = fault_env(sut.url, queue, ledger_server.url, vt_s=2)
        led = Ledger(ledger_client, queue)
        app = producer_app(sut.url, queue)
        stack.callback(app.client().close)
        # Enough jobs that each pool still holds running ones when it is told to stop: an
        # asyncio pool runs 3 x ASYNC_CONCURRENCY at once.
        tags = [f"r{i}" for i in range(40 if app_kind == "sync" else 1000)]
        app.enqueue_many(app.envelope("work", [tag, JOB_MS]) for tag in tags)
        pool = stack.enter_context(start_pool(env, 3, kind=app_kind))
        wait_for_workers(pool, 3)
        drains, in_flight = [], []
        for roll in range(2):
            step = 6 if app_kind == "sync" else len(tags) // 4  # async: 60 run at once
            wait_until(led.reached(step * (roll + 1)), 20, 0.02, "jobs done")
            new = stack.enter_context(start_pool(env, 3, kind=app_kind))
            wait_for_workers(new, 3)
            # Entries the old pool's workers hold right now (the job in hand, any prefetched).
            mine = {e["consumer"] for e in events(pool, "worker.spawned")}
            held = app.store.stats(QueueKeys(queue), "default").consumers
            in_flight.append(sum(n for name, n in held.items() if name in mine))
            stopped_at = time.monotonic()
            pool.signal(signal.SIGTERM)
            code = pool.wait(15)
            drains.append(time.monotonic() - stopped_at)
            assert code == 0, f"drain exit code {code}"
            assert len(events(pool, "worker.exited")) == 3
            pool = new
        settle(accounted(led, app.store, queue, tags), 30)
        settle_or_none(drained(app.store, queue), 30)  # late copies run too
        pool.signal(signal.SIGTERM)
        assert pool.wait(15) == 0
        t = tally(led, app.store, queue, tags)
        stats = app.store.stats(QueueKeys(queue), "default")
    report(
        Row(
            scenario("4 SIGTERM rolling restart", app_kind),
            server_label(sut.binary),
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            settle_s=max(drains),
            wall_s=time.monotonic() - t0,
            notes=f"{JOB_MS} ms jobs; 2 rolls, old pool holding {in_flight} entries;"
            f" drained in {', '.join(f'{d:.2f}' for d in drains)} s (exit 0); runs restarted:"
            f" {t.reruns}; left in Redis: {stats.queued} queued, {stats.pending} pending",
        )
    )
    assert not t.lost
    assert not t.dead
    assert not t.dups, f"ran twice: {sorted(t.dups)}"
    assert t.reruns == 0, "a SIGTERMed worker abandoned a job it had started"
    assert min(in_flight) > 0, "the old pool held no job when it was told to stop"
    assert (stats.queued, stats.pending, stats.consumers) == (0, 0, {})
