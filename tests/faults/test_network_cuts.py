"""Scenario 3: every connection to Redis is cut, and new ones refused, for a few seconds."""

from __future__ import annotations

import os
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
    scenario,
    settle,
    settle_or_none,
    start_pool,
    wait_for_workers,
)
from tests.faults.ledger import Ledger, accounted, tally
from tests.faults.proxy import CutProxy
from tests.faults.report import Row

CUT_S = 2.5
# The second test: cuts longer than the visibility timeout, while 200 ms jobs are in hand.
LONG_CUT_S = 4.0
SHORT_VT_S = 2.0
LONG_CUTS = int(os.environ.get("SQ_FAULTS_LONG_CUTS", "3"))


def _blocked_readers(client: redis.Redis) -> int:
    """Clients blocked in XREADGROUP right now (CLIENT LIST flag ``b``)."""
    clients: list[dict[str, str]] = client.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))


def _cut(proxy: CutProxy, seconds: float = CUT_S) -> float:
    """Cut everything for ``seconds``; return the unix time connections were allowed again."""
    proxy.cut()
    time.sleep(seconds)  # the outage itself, not a wait for a condition
    proxy.restore()
    return time.time()


@pytest.mark.slow
def test_network_cuts_lose_nothing(
    server_kind: str,
    ledger_server: RedisServer,
    ledger_client: redis.Redis,
    report: Callable[[Row], None],
    app_kind: str,
) -> None:
    """Workers recover from cuts on their own; enqueues during a cut raise EnqueueError."""
    t0 = time.monotonic()
    with RedisServer(find_server(server_kind)) as sut, CutProxy(sut.port) as proxy:
        queue = new_queue("net")
        # A visibility timeout longer than a cut: no lease can expire while we are cut off.
        env = fault_env(proxy.url, queue, ledger_server.url, vt_s=5)
        led = Ledger(ledger_client, queue)
        app = producer_app(proxy.url, queue)
        direct = producer_app(sut.url, queue)  # the test's own view, never cut
        with start_pool(env, 2, "--log-jobs", "failures", kind=app_kind) as pool:
            wait_for_workers(pool, 2)
            producer = Producer(app, "n", ms=5, rate_per_s=150).start()
            resumed, settles = [], []
            for _ in range(2):
                wait_until(led.reached(led.done() + 150), 20, 0.05, "work flowing")
                restored = _cut(proxy)
                before = set(producer.out.accepted)
                settles.append(settle(accounted(led, direct.store, queue, before), 30))
                resumed.append(first_done_after(led, restored))
            wait_until(led.reached(led.done() + 150), 20, 0.05, "work flowing again")
            produced = producer.stop()
            accepted = set(produced.accepted)
            settle(accounted(led, direct.store, queue, accepted), 30)
            # Idle pool: both workers sit in a blocking XREADGROUP when the cut comes.
            wait_until(lambda: _blocked_readers(direct.client()) >= 2, 10, 0.02, "idle workers")
            restored = _cut(proxy)
            idle_tags = [f"idle{i}" for i in range(50)]
            app.enqueue_many(app.envelope("work", [tag, 1]) for tag in idle_tags)
            idle_s = settle(accounted(led, direct.store, queue, idle_tags), 30)
            settle_or_none(drained(direct.store, queue), 30)  # late copies run too
            resumed.append(first_done_after(led, restored))
            exits = len(events(pool, "worker.exited"))
            losses = len(events(pool, "redis.connection_lost"))
            pool.signal(signal.SIGTERM)
            assert pool.wait(30) == 0
        accepted.update(idle_tags)
        t = tally(led, direct.store, queue, accepted)
        left = residue(direct.store, queue)
        app.client().close()
        direct.client().close()
    report(
        Row(
            scenario("3 network cuts", app_kind),
            server_kind,
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            rejected=len(produced.rejected),
            resume_s=max(resumed),
            settle_s=max(settles),
            wall_s=time.monotonic() - t0,
            notes=f"{left}; 3 cuts of {CUT_S} s (2 under load, 1 idle); first job done after each:"
            f" {', '.join(f'{r:.2f}' for r in resumed)} s; idle batch of 50 done in"
            f" {idle_s:.2f} s; rejected but ran: {t.unaccepted_ran};"
            f" connection_lost events: {losses}; worker restarts: {exits}",
        )
    )
    assert not produced.unexpected, produced.unexpected[:5]
    assert produced.rejected, "the cuts never reached the producer"
    assert exits == 0, "workers must ride out the cuts, not die"
    assert not t.lost, f"accepted jobs lost: {sorted(t.lost)[:20]}"
    assert not t.dead
    assert not t.dups, f"ran twice: {sorted(t.dups)[:20]}"
    assert left.clean, left


@pytest.mark.slow
def test_cut_longer_than_the_visibility_timeout_runs_nothing_twice(
    server_kind: str,
    ledger_server: RedisServer,
    ledger_client: redis.Redis,
    report: Callable[[Row], None],
    app_kind: str,
) -> None:
    """Leases lapse for all during a long cut, yet a live worker's finished jobs run only once."""
    t0 = time.monotonic()
    with RedisServer(find_server(server_kind)) as sut, CutProxy(sut.port) as proxy:
        queue = new_queue("lease")
        env = fault_env(proxy.url, queue, ledger_server.url, vt_s=SHORT_VT_S)
        led = Ledger(ledger_client, queue)
        app = producer_app(sut.url, queue)  # direct: producers are the other test's subject
        # An asyncio pool holds 2 x (concurrency + prefetch) jobs and finishes them all during
        # a cut: it needs more work, and more done between cuts, to be mid-job at each cut.
        step, count = (8, 20 * LONG_CUTS) if app_kind == "sync" else (100, 100 * (LONG_CUTS + 1))
        tags = [f"l{i}" for i in range(count)]
        app.enqueue_many(app.envelope("work", [tag, 200]) for tag in tags)
        with start_pool(env, 2, "--log-jobs", "failures", kind=app_kind) as pool:
            wait_for_workers(pool, 2)
            for i in range(LONG_CUTS):
                # Both workers are mid-job: each finishes while cut off and cannot ack.
                wait_until(led.reached(8 + step * i), 30, 0.02, "work flowing")
                restored = _cut(proxy, LONG_CUT_S)
            settle_s = settle(accounted(led, app.store, queue, tags), 60)
            settle_or_none(drained(app.store, queue), 30)  # late copies run too
            resume_s = first_done_after(led, restored)
            exits = len(events(pool, "worker.exited"))
            reclaimed = sum(e.get("count", 0) for e in events(pool, "job.reclaimed"))
            lease_lost = sum(e.get("count", 0) for e in events(pool, "job.lease_lost"))
            pool.signal(signal.SIGTERM)
            assert pool.wait(30) == 0
        t = tally(led, app.store, queue, tags)
        left = residue(app.store, queue)
        causes = t.why(killed=())
        app.client().close()
    report(
        Row(
            scenario("3b cuts > visibility timeout", app_kind),
            server_kind,
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            resume_s=resume_s,
            settle_s=settle_s,
            wall_s=time.monotonic() - t0,
            notes=f"{left}; {LONG_CUTS} cuts of {LONG_CUT_S} s, VT {SHORT_VT_S} s, 200 ms jobs;"
            f" dups: {dict(causes) or 0}; entries reclaimed from live workers: {reclaimed},"
            f" acks refused (lease lost): {lease_lost}; worker restarts: {exits}",
        )
    )
    assert not t.lost, f"accepted jobs lost: {sorted(t.lost)[:20]}"
    assert exits == 0
    assert not t.dups, (
        f"{len(t.dups)} jobs ran twice with no worker dead: the reaper took back live workers'"
        " finished jobs before their leases were refreshed (bugs-faults.md #2)"
    )
    assert left.clean, left
