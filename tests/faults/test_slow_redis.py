"""Scenario 5: Redis stops answering: DEBUG SLEEP past every socket timeout, or a busy script."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest
import redis

from streamq.settings import WorkerSettings
from streamq.testing import RedisServer, wait_until
from tests.faults.harness import (
    Producer,
    drained,
    events,
    fault_env,
    first_done_after,
    new_queue,
    producer_app,
    residue,
    server_label,
    settle,
    settle_or_none,
    start_pool,
    wait_for_workers,
)
from tests.faults.ledger import LEASE_LOST, Ledger, accounted, tally
from tests.faults.report import Row

SOCKET_TIMEOUT_S = 1.0
# worker/loop.py gives its blocking connection max(socket timeout, block + 5 s): outlast that too.
WORKER_TIMEOUT_S = max(SOCKET_TIMEOUT_S, WorkerSettings().block_ms / 1000 + 5)
FREEZE_S = int(WORKER_TIMEOUT_S) + 1
VT_S = 2.0
# A script that spins for ARGV[1] microseconds: after busy-reply-threshold, every other
# command gets a BUSY error (a RedisCommandError, not a timeout).
BUSY_SCRIPT = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
while true do
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= tonumber(ARGV[1]) then return 1 end
end
"""
BUSY_S = 3
FREEZES = {
    "debug-sleep": (["--enable-debug-command", "local"], FREEZE_S),
    "busy-script": (["--busy-reply-threshold", "100"], BUSY_S),
}


def _freeze(client: redis.Redis, freeze: str) -> None:
    """Block the server for the freeze's duration (returns when it answers again)."""
    if freeze == "debug-sleep":
        client.execute_command("DEBUG", "SLEEP", FREEZE_S)  # type: ignore[no-untyped-call]
    else:
        client.eval(BUSY_SCRIPT, 0, BUSY_S * 1_000_000)


@pytest.mark.slow
@pytest.mark.parametrize("freeze", list(FREEZES))
def test_frozen_redis_is_survived(
    freeze: str,
    ledger_server: RedisServer,
    ledger_client: redis.Redis,
    report: Callable[[Row], None],
) -> None:
    """Workers outlive a Redis that stops answering past the visibility timeout; none lost."""
    t0 = time.monotonic()
    server_args, freeze_s = FREEZES[freeze]
    with RedisServer(args=server_args) as sut:
        queue = new_queue("slow")
        env = fault_env(
            sut.url, queue, ledger_server.url, vt_s=VT_S, socket_timeout_s=SOCKET_TIMEOUT_S
        )
        led = Ledger(ledger_client, queue)
        app = producer_app(sut.url, queue, socket_timeout_s=SOCKET_TIMEOUT_S)
        tags = [f"s{i}" for i in range(400)]
        app.enqueue_many(app.envelope("work", [tag, 20]) for tag in tags)
        freezer = redis.Redis(port=sut.port, socket_timeout=freeze_s + 10)
        with start_pool(env, 2, "--log-jobs", "failures") as pool:
            pids = wait_for_workers(pool, 2)
            wait_until(led.reached(100), 20, 0.02, "work flowing")
            producer = Producer(app, "p", ms=20, rate_per_s=50).start()
            sleeper = threading.Thread(target=_freeze, args=(freezer, freeze))
            sleeper.start()
            sleeper.join(freeze_s + 10)
            thawed = time.time()
            before = set(tags) | set(producer.out.accepted)
            settle_s = settle(accounted(led, app.store, queue, before), 40)
            resume_s = first_done_after(led, thawed)
            after = producer.out.accepted
            wait_until(lambda: sum(t > thawed for t in list(after.values())) >= 50, 20)
            produced = producer.stop()
            accepted = set(tags) | set(produced.accepted)
            settle(accounted(led, app.store, queue, accepted), 40)
            settle_or_none(drained(app.store, queue), 30)  # late copies run too
            exits = len(events(pool, "worker.exited"))
            lease_lost = len(events(pool, "job.lease_lost"))
            reclaimed = sum(e.get("count", 0) for e in events(pool, "job.reclaimed"))
            pool.signal(signal.SIGTERM)
            assert pool.wait(30) == 0
        t = tally(led, app.store, queue, accepted)
        left = residue(app.store, queue)
        causes = t.why(killed=())
        app.client().close()
        freezer.close()
    report(
        Row(
            f"5 slow redis ({freeze})",
            server_label(sut.binary),
            t.jobs,
            t.once,
            len(t.dups),
            len(t.dead),
            len(t.lost),
            rejected=len(produced.rejected),
            resume_s=resume_s,
            settle_s=settle_s,
            wall_s=time.monotonic() - t0,
            notes=f"{left}; {_what(freeze)}; dups: {dict(causes) or 0}; reclaimed {reclaimed},"
            f" lease_lost events {lease_lost}; rejected but ran: {t.unaccepted_ran};"
            f" worker restarts: {exits} (pids {sorted(pids)} kept)",
        )
    )
    assert not produced.unexpected, produced.unexpected[:5]
    assert exits == 0, "workers must outlive a frozen Redis"
    assert not t.lost, f"lost: {sorted(t.lost)[:20]}"
    assert not t.dead
    assert set(causes) <= {LEASE_LOST}
    assert left.clean, left


def _what(freeze: str) -> str:
    if freeze == "debug-sleep":
        return f"frozen {FREEZE_S} s > worker socket timeout {WORKER_TIMEOUT_S:.0f} s > VT {VT_S} s"
    return f"busy script {BUSY_S} s (BUSY replies after 100 ms) > VT {VT_S} s"
