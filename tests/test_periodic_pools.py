"""Periodic schedules in real pools: exactly once across pools, a killed pool, a Redis crash."""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Any

import pytest
import redis

from streamq.testing import RedisServer, find_server, wait_until
from tests.helpers import Pool

APP = ["--app", "tests.apps.periodic_app:app", "--grace-s", "5"]


def env_for(url: str, queue: str, ledger_url: str, **extra: str) -> dict[str, str]:
    """Environment of a pool running ``tests.apps.periodic_app``."""
    env = dict(os.environ)
    env.update(
        STREAMQ_REDIS_URL=url,
        SQ_TEST_QUEUE=queue,
        SQ_TEST_LEDGER_URL=ledger_url,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def ticks(ledger: redis.Redis, queue: str) -> dict[int, int]:
    """Runs per tick time of the ``tick`` schedule."""
    raw: Any = ledger.hgetall(f"sqtest:{queue}:ticks")
    return {int(k.decode().rsplit(":", 1)[1]): int(v) for k, v in raw.items()}


@pytest.mark.slow
def test_three_pools_a_killed_pool_and_a_redis_crash_fire_every_tick_once(
    redis_server: RedisServer, queue: str
) -> None:
    """Three pools, one SIGKILLed, Redis kill -9ed and restarted: each tick runs exactly once.

    The schedule is every second with missed="all", so ticks that came while Redis was down
    fire when it is back: no gap, no repeat.
    """
    ledger = redis.Redis.from_url(redis_server.url)  # the suite's server: never faulted here
    args = ["--appendonly", "yes", "--appendfsync", "always"]
    with RedisServer(find_server(), args=args) as sut:
        env = env_for(sut.url, queue, redis_server.url)
        pools = [Pool(env, APP, processes=1) for _ in range(3)]
        try:
            wait_until(lambda: len(ticks(ledger, queue)) >= 3, 20, 0.05, "first ticks")
            os.kill(pools[0].proc.pid, signal.SIGKILL)  # the supervisor; its worker follows
            wait_until(lambda: len(ticks(ledger, queue)) >= 6, 20, 0.05, "ticks after kill")
            sut.kill()
            time.sleep(2.5)  # the outage itself, not a wait for a condition
            sut.restart()
            restarted = time.time()
            wait_until(
                lambda: max(ticks(ledger, queue)) / 1000 > restarted + 3, 20, 0.05, "after restart"
            )
            for pool in pools[1:]:
                pool.signal(signal.SIGTERM)
            assert [p.wait(30) for p in pools[1:]] == [0, 0]
        finally:
            for pool in pools:
                pool.close()
    runs = ticks(ledger, queue)
    first, last = min(runs), max(runs)
    assert last - first >= 10_000, runs
    assert runs == dict.fromkeys(range(first, last + 1000, 1000), 1)
    fired = [e["job_id"] for p in pools for e in p.events("schedule.fired")]
    assert sorted(fired) == sorted(set(fired))  # no pool fired a tick another had fired
    assert {f"sched:tick:{t}" for t in runs} <= set(fired)
    assert len({e["pid"] for p in pools for e in p.events("supervisor.started")}) == 3
    caught_up = [e for p in pools for e in p.events("schedule.fired") if e["lateness_ms"] > 1000]
    assert caught_up, "the ticks of the outage fired late, after the restart"


@pytest.mark.slow
def test_overlap_skip_with_a_slow_task_and_a_foreign_schedule(
    redis_server: RedisServer, queue: str
) -> None:
    """A 2.5 s task on a 1 s overlap="skip" schedule never overlaps itself; a schedule of a
    task the pool lacks is reported, and the pool keeps firing the rest."""
    env = env_for(redis_server.url, queue, redis_server.url, SQ_TEST_SLOW="1", SQ_TEST_FOREIGN="1")
    client = redis.Redis.from_url(redis_server.url)
    with Pool(env, APP, processes=2) as pool:
        wait_until(lambda: client.llen(f"sqtest:{queue}:spans") >= 2, 30, 0.05, "slow runs")
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    raw: Any = client.lrange(f"sqtest:{queue}:spans", 0, -1)
    spans = sorted(tuple(float(x) for x in s.split()) for s in raw)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    skipped = [e for e in pool.events("schedule.skipped") if e["schedule_id"] == "slow"]
    assert skipped
    assert {e["reason"] for e in skipped} == {"overlap"}
    (unknown,) = pool.events("schedule.task_unknown")
    assert unknown["schedule_id"] == "foreign"
    assert [e for e in pool.events("schedule.fired") if e["schedule_id"] == "tick"]
    assert all(e["exit_code"] == 0 for e in pool.events("worker.exited"))
