"""Scheduler, reaper, lease refresh and consumer pruning, driven step by step."""

from __future__ import annotations

import threading
import time

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.job import PRIORITY_NORMAL
from streamq.keys import QueueKeys
from streamq.settings import AppSettings, QueueSettings
from streamq.store import NewJob, Store
from streamq.testing import RedisServer, wait_until
from streamq.upkeep.reaper import Reaper
from streamq.upkeep.scheduler import Scheduler
from tests.helpers import entries


def _fill_delayed(app: streamq.App, n: int, due_ms: int) -> None:
    keys = QueueKeys(app.settings.default_queue)
    envs = [app.envelope("t", [i]) for i in range(n)]
    app.store.enqueue(
        [NewJob(keys, e.id, e.task, e.priority, codec.encode(e), due_ms) for e in envs], now_ms()
    )


def test_concurrent_schedulers_promote_each_job_once(app: streamq.App, queue: str) -> None:
    """Four schedulers racing over 1,000 due jobs move each exactly once."""
    _fill_delayed(app, 1000, now_ms() - 1)
    keys = QueueKeys(queue)
    stores = [app.new_store() for _ in range(4)]
    start = threading.Barrier(4)

    def run(store: Store) -> None:
        sched = Scheduler(store, [keys], batch=7)
        start.wait()
        while store.client.zcard(keys.delayed):
            sched.run_once(now_ms())

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    args = [codec.decode(f[b"j"]).args[0] for _, f in entries(app.client(), keys.stream)]
    assert sorted(args) == list(range(1000))


def test_scheduler_reports_next_due_time(app: streamq.App, queue: str) -> None:
    """run_once returns the earliest due time so the caller can sleep exactly until then."""
    now = now_ms()
    _fill_delayed(app, 1, now + 40)
    sched = Scheduler(app.store, [QueueKeys(queue)], max_sleep_ms=10_000)
    assert sched.run_once(now) == now + 40
    assert sched.run_once(now + 40) == now + 40 + 10_000
    assert app.client().xlen(QueueKeys(queue).stream) == 1


def _held_by(app: streamq.App, queue: str, consumer: str, n: int) -> None:
    """Enqueue n jobs and let ``consumer`` read them without finishing (a worker that died)."""
    keys = QueueKeys(queue)
    app.store.ensure_group(keys, "default")
    app.enqueue_many([app.envelope("t", [i]) for i in range(n)])
    assert len(app.store.read([(keys, PRIORITY_NORMAL)], "default", consumer, n, 10)) == n


def _reaped(reaper: Reaper, app: streamq.App, keys: QueueKeys) -> bool:
    reaper.run_once(now_ms())
    return app.store.stats(keys, "default").pending == 0


def test_reaper_requeues_idle_entries_and_counts_deliveries(app: streamq.App, queue: str) -> None:
    """Entries idle past the visibility timeout are requeued with their delivery count."""
    keys = QueueKeys(queue)
    _held_by(app, queue, "dead-worker", 5)
    reaper = Reaper(app.store, [keys], "default", app.settings)
    assert not reaper.run_once(now_ms())  # not idle long enough yet (VT is 1 s here)
    assert app.store.stats(keys, "default").pending == 5
    wait_until(lambda: _reaped(reaper, app, keys), 5)
    s = app.store.stats(keys, "default")
    assert (s.queued, s.pending, s.dead) == (5, 0, 0)
    ns = [f[b"n"] for _, f in entries(app.client(), keys.stream)]
    assert ns == [b"1"] * 5


def test_reaper_buries_after_max_deliveries(app: streamq.App, queue: str) -> None:
    """An entry that keeps being abandoned ends in dead letters as max_deliveries (3 here)."""
    keys = QueueKeys(queue)
    reaper = Reaper(app.store, [keys], "default", app.settings, count=10)
    _held_by(app, queue, "w", 1)
    for round_ in range(3):
        wait_until(lambda: _reaped(reaper, app, keys), 5)
        if round_ < 2:
            assert len(app.store.read([(keys, PRIORITY_NORMAL)], "default", "w", 10, 10)) == 1
    (dead,) = streamq.DeadLetters(app.store, queue).list()
    assert dead.reason == "max_deliveries"
    assert dead.fields["deliveries"] == "3"
    assert (dead.task, dead.attempts, dead.error_type) == ("t", 1, "WorkerLost")
    assert dead.job_id
    assert app.client().xlen(keys.stream) == 0


def test_reaper_cursor_walks_past_a_long_healthy_head(
    redis_server: RedisServer, queue: str
) -> None:
    """With many fresh entries first, the cursor still reaches idle ones behind them."""
    app = streamq.App(
        redis_server.url,
        AppSettings(
            default_queue=queue, default_queue_settings=QueueSettings(visibility_timeout_s=0.3)
        ),
    )
    keys = QueueKeys(queue)
    _held_by(app, queue, "crashed", 3)  # oldest entries: will be idle
    wait_until(
        lambda: app.client().xpending_range(keys.stream, "default", "-", "+", 1, idle=300), 5
    )
    _held_by(app, queue, "busy", 2000)  # newer: always fresh (touched below)
    reaper = Reaper(app.store, [keys], "default", app.settings, count=10)

    def step() -> bool:
        app.store.touch(keys, "default", "busy", 0)
        reaper.run_once(now_ms())
        return app.store.stats(keys, "default").consumers.get("crashed", 0) == 0

    wait_until(step, 20, interval_s=0)
    assert app.store.stats(keys, "default").consumers["busy"] == 2000


def test_touch_keeps_a_live_lease(app: streamq.App, queue: str) -> None:
    """A consumer whose entries are touched is never reclaimed, however long it holds them."""
    keys = QueueKeys(queue)
    _held_by(app, queue, "alive", 3)
    reaper = Reaper(app.store, [keys], "default", app.settings)
    deadline = now_ms() + 2500  # 2.5 visibility timeouts
    while now_ms() < deadline:
        app.store.touch(keys, "default", "alive", 0)
        reaper.run_once(now_ms())
        time.sleep(0.1)  # pacing the loop, not waiting for a condition
    assert app.store.stats(keys, "default").consumers["alive"] == 3


def test_prune_removes_only_idle_consumers_owning_nothing(app: streamq.App, queue: str) -> None:
    """Gone consumers with no entries are deleted; one that owns entries is kept."""
    keys = QueueKeys(queue)
    _held_by(app, queue, "owner", 1)
    _held_by(app, queue, "empty", 1)
    ((entry_id,),) = [
        [
            e.id
            for e in app.store.read([(keys, PRIORITY_NORMAL)], "default", "empty", 1, 10, own=True)
        ]
    ]
    app.store.client.xack(keys.stream, "default", entry_id)

    def idle_ms(name: str) -> int:
        info = app.client().xinfo_consumers(keys.stream, "default")
        return next(int(c["idle"]) for c in info if c["name"] == name.encode())

    wait_until(lambda: idle_ms("empty") >= 50 and idle_ms("owner") >= 50, 5)
    gone = app.store.prune_consumers(keys, "default", 50)
    assert gone == ["empty"]
    assert list(app.store.stats(keys, "default").consumers) == ["owner"]
