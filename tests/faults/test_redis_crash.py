"""Scenario 2: Redis is SIGKILLed mid-run and restarted on the same port from its AOF."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis

from streamq.testing import RedisServer, find_server, wait_until
from tests.faults.harness import (
    Producer,
    drained,
    events,
    fault_env,
    first_done_after,
    new_queue,
    producer_app,
    residue,
    settle_or_none,
    start_pool,
    wait_for_workers,
)
from tests.faults.ledger import Ledger, accounted, tally
from tests.faults.report import Row

DOWN_S = 2.0


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_redis_crash_keeps_accepted_jobs(
    server_kind: str,
    fsync: str,
    ledger_server: RedisServer,
    ledger_client: redis.Redis,
    report: Callable[[Row], None],
) -> None:
    """With appendfsync always, every enqueue that returned runs after Redis is kill -9ed."""
    t0 = time.monotonic()
    args = ["--appendonly", "yes", "--appendfsync", fsync]
    with RedisServer(find_server(server_kind), args=args) as sut:
        queue = new_queue("crash")
        # A visibility timeout longer than the outage: no lease can expire while Redis is away.
        env = fault_env(sut.url, queue, ledger_server.url, vt_s=5)
        led = Ledger(ledger_client, queue)
        app = producer_app(sut.url, queue)
        with start_pool(env, 2, "--log-jobs", "failures") as pool:
            wait_for_workers(pool, 2)
            producer = Producer(app, "c", ms=5, rate_per_s=150).start()
            wait_until(led.reached(150), 20, 0.05, "work flowing")
            killed_at = time.time()
            sut.kill()
            time.sleep(DOWN_S)  # the outage itself, not a wait for a condition
            sut.restart()
            up_at = time.time()
            before = {tag for tag, at in list(producer.out.accepted.items()) if at <= killed_at}
            # everysec may lose jobs: then the backlog never settles and the wait ends unmet.
            settle_s = settle_or_none(accounted(led, app.store, queue, before), 20)
            resume_s = first_done_after(led, up_at)
            after = producer.out.accepted
            wait_until(lambda: sum(1 for t in list(after.values()) if t > up_at) >= 150, 20)
            produced = producer.stop()
            accepted = set(produced.accepted)
            settle_or_none(accounted(led, app.store, queue, accepted), 20)
            settle_or_none(drained(app.store, queue), 30)  # late copies run too
            exits_during_run = len(events(pool, "worker.exited"))
            # Worker lines only: supervisor loops log their own reconnects, with a `loop` field.
            reconnects = len([e for e in events(pool, "redis.reconnected") if "loop" not in e])
            pool.signal(signal.SIGTERM)
            assert pool.wait(30) == 0
        t = tally(led, app.store, queue, accepted)
        left = residue(app.store, queue)
        app.client().close()
    window = ""
    if t.lost:
        oldest = min(produced.accepted[tag] for tag in t.lost)
        window = f"; loss window {1000 * (killed_at - oldest):.0f} ms before the kill"
    report(
        Row(
            f"2 redis kill -9 (aof {fsync})",
            server_kind,
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            rejected=len(produced.rejected),
            resume_s=resume_s,
            settle_s=settle_s,
            wall_s=time.monotonic() - t0,
            notes=f"{left}; down {DOWN_S:.0f} s; rejected but ran: {t.unaccepted_ran};"
            f" worker reconnects: {reconnects};"
            f" worker restarts: {exits_during_run}{window}",
        )
    )
    assert not produced.unexpected, produced.unexpected[:5]
    assert produced.rejected, "the outage never reached the producer"
    assert exits_during_run == 0, "workers must ride out the outage, not die"
    assert not t.dead
    if fsync == "always":
        assert not t.lost, f"accepted jobs lost: {sorted(t.lost)[:20]}"
        assert not t.dups, f"ran twice: {sorted(t.dups)[:20]}"
        assert left.clean, left
