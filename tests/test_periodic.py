"""Periodic schedules against a real Redis: the tick script's races, guards and policies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from structlog.testing import capture_logs

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.keys import keys_of
from streamq.producer import schedule as sched
from streamq.scripts import Tick
from streamq.testing import RedisServer
from streamq.upkeep.periodic import Periodic
from tests.helpers import ROOT, entries

HOUR_MS = 3_600_000


def job_ids(client: redis.Redis, queue: str) -> list[str]:
    """Ids of the jobs in the queue's normal stream, in order."""
    return [codec.decode(f[b"j"]).id for _, f in entries(client, keys_of(queue).stream)]


def periodic(app: streamq.App, tasks: set[str] | None = None) -> Periodic:
    """A pool's periodic loop over the app's default queue, on a connection of its own."""
    specs = [s.spec for s in app.schedules.values()]
    names = {s.spec.task for s in app.schedules.values()} if tasks is None else tasks
    return Periodic(app.new_store(), [keys_of(app.settings.default_queue)], names, specs)


def written_in_past(app: streamq.App, schedule_id: str, back_ms: int = 10_000) -> int:
    """Store the schedule as if written ``back_ms`` ago; return its first (past) tick.

    Past ticks, so the tick script's check against the server's clock lets them fire.
    """
    spec = app.schedules[schedule_id].spec
    at = now_ms() - back_ms
    sched.save(app.store, spec, "code", at)
    return spec.timing.next_after(at)


def run_until_idle(p: Periodic, now: int) -> None:
    """Step at ``now`` until nothing more is due at that time."""
    for _ in range(500):
        if p.run_once(now) > now:
            return
    raise AssertionError("still due after 500 steps")


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    """Captured structlog events of one name."""
    return [e for e in logs if e["event"] == name]


@pytest.fixture
def client(app: streamq.App) -> redis.Redis:
    """The test's raw client."""
    return app.client()


def test_racing_pools_fire_each_tick_exactly_once(app: streamq.App, client: redis.Redis) -> None:
    """Four loops racing on a 1-second schedule for 3 s enqueue each tick once, none missed."""
    app.schedule("beat", every_s=1, missed="all")
    loops = [periodic(app) for _ in range(4)]
    stop = time.monotonic() + 3.2

    def run(p: Periodic) -> None:
        while time.monotonic() < stop:
            wake = p.run_once(now_ms())
            time.sleep(max(0.0, min(wake - now_ms(), 50) / 1000))

    threads = [threading.Thread(target=run, args=(p,)) for p in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = job_ids(client, app.settings.default_queue)
    ticks = [int(i.rsplit(":", 1)[1]) for i in ids]
    assert len(ids) >= 3
    assert len(set(ids)) == len(ids)
    assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000))
    info = sched.read(app.store, app.settings.default_queue, "beat")
    assert info is not None
    assert info.fired == len(ids)


def test_a_stale_read_loses_the_race(app: streamq.App, client: redis.Redis) -> None:
    """A pool acting on state another pool already advanced changes nothing."""
    s = app.schedule("beat", every_s=1)
    p = periodic(app)
    due = written_in_past(app, "beat")
    keys = keys_of(app.settings.default_queue)
    rec = app.store.schedule_record(keys, "beat")
    run_until_idle(p, due + 10)
    env = s.spec.envelope(s.spec.job_id(due), due, due)
    stale = Tick("beat", due, due + 1000, due, s.spec.job_id(due), codec.encode(env), 0,
                 "beat", False, rec["hash"].decode(), "")  # fmt: skip
    assert app.store.schedule_ticks(keys, [(stale, 1)], due + 20, 1000) == [("stale", "")]
    assert job_ids(client, keys.queue) == [f"sched:beat:{due}"]


def test_rolled_back_state_never_enqueues_a_tick_twice(
    app: streamq.App, client: redis.Redis
) -> None:
    """If the schedule's state goes back (a failover), the tick's job record stops a refire."""
    app.schedule("beat", every_s=1)
    p = periodic(app)
    due = written_in_past(app, "beat")
    keys = keys_of(app.settings.default_queue)
    run_until_idle(p, due + 5)
    client.zadd(keys.schedules_next, {"beat": due})  # the state a lost write leaves behind
    client.hset(keys.schedule("beat"), "last_job", "")
    with capture_logs() as logs:
        run_until_idle(p, due + 10)
    (dup,) = events(logs, "schedule.skipped")
    assert dup["reason"] == "duplicate"
    assert dup["job_id"] == f"sched:beat:{due}"
    assert job_ids(client, keys.queue) == [f"sched:beat:{due}"]


def test_a_pool_whose_clock_runs_ahead_fires_nothing_early(
    app: streamq.App, client: redis.Redis
) -> None:
    """A tick the Redis server's clock has not reached is refused and reported once."""
    app.schedule("beat", every_s=1)
    p = periodic(app)
    with capture_logs() as logs:
        p.run_once(now_ms())
        ahead = now_ms() + HOUR_MS
        for _ in range(3):
            p.run_once(ahead)
    assert job_ids(client, app.settings.default_queue) == []
    (warned,) = events(logs, "schedule.clock_ahead")
    assert warned["ahead_ms"] > HOUR_MS - 5000


@pytest.mark.parametrize(
    ("missed", "late_ms", "fired", "skipped"),
    [
        ("skip", 5_000, 1, 4),  # the latest is recent: it fires, the 4 before are skipped
        ("skip", 120_000, 0, 5),  # past the one-minute grace: nothing fires
        ("once", 120_000, 1, 4),
        ("all", 120_000, 5, 0),
    ],
)
def test_missed_ticks_follow_the_policy(
    app: streamq.App, client: redis.Redis, missed: str, late_ms: int, fired: int, skipped: int
) -> None:
    """After 5 hourly ticks passed with no pool up, the policy decides what fires."""
    last = (now_ms() // HOUR_MS - 1) * HOUR_MS  # a past hour, so the server's clock agrees
    s = app.schedule("beat", every_s=3600, missed=missed)
    sched.save(app.store, s.spec, "code", last - 5 * HOUR_MS + 1)  # next: last - 4 h
    with capture_logs() as logs:
        run_until_idle(periodic(app), last + late_ms)
    assert len(job_ids(client, app.settings.default_queue)) == fired
    assert sum(e["ticks"] for e in events(logs, "schedule.skipped")) == skipped
    assert len(events(logs, "schedule.fired")) == fired
    info = s.info()
    assert info is not None
    assert info.next_ms == last + HOUR_MS


def test_overlap_skip_passes_over_ticks_while_the_last_run_is_unfinished(
    app: streamq.App, client: redis.Redis
) -> None:
    """overlap="skip": a tick whose previous job is still queued is skipped, yet advances."""
    app.schedule("beat", every_s=1, overlap="skip")
    p = periodic(app)
    t0 = written_in_past(app, "beat")
    keys = keys_of(app.settings.default_queue)
    with capture_logs() as logs:
        run_until_idle(p, t0 + 5)
        run_until_idle(p, t0 + 1005)
        client.hset(keys.job(f"sched:beat:{t0}"), "state", "succeeded")  # as a worker would
        run_until_idle(p, t0 + 2005)
    assert job_ids(client, keys.queue) == [f"sched:beat:{t0}", f"sched:beat:{t0 + 2000}"]
    (skip,) = events(logs, "schedule.skipped")
    assert skip["reason"] == "overlap"
    assert skip["previous_state"] == "queued"
    assert skip["tick_ms"] == t0 + 1000


def test_definitions_are_written_only_when_they_change(
    app: streamq.App, client: redis.Redis
) -> None:
    """Same code writes nothing; new args keep the next tick; a new cron moves it; paused stays."""
    queue = app.settings.default_queue
    first = app.schedule("beat", cron="0 3 * * *", tz="Europe/Berlin")
    assert sched.save(app.store, first.spec, "code", 1000)[0] == "created"
    before = first.info()
    assert sched.save(app.store, first.spec, "code", 2000)[0] == "same"
    assert first.info() == before
    other = streamq.App(app.redis_url, app.settings)
    args = other.schedule("beat", cron="0 3 * * *", tz="Europe/Berlin", args=[1])
    assert sched.save(other.store, args.spec, "code", 3000) == ("updated", first.spec.content_hash)
    after = args.info()
    assert after is not None
    assert before is not None
    assert after.args == (1,)
    assert after.next_ms == before.next_ms
    assert args.pause()
    hourly = streamq.App(app.redis_url, app.settings).schedule("beat", cron="0 * * * *")
    sched.save(app.store, hourly.spec, "code", 5000)
    info = sched.read(app.store, queue, "beat")
    assert info is not None
    assert info.paused
    assert info.cron == "0 * * * *"
    assert client.zscore(keys_of(queue).schedules_next, "beat") is None
    assert args.resume()
    resumed = sched.read(app.store, queue, "beat")
    assert resumed is not None
    assert resumed.next_ms == (now_ms() // HOUR_MS + 1) * HOUR_MS
    half = streamq.App(app.redis_url, app.settings).schedule("beat", cron="30 * * * *")
    now = now_ms()
    assert sched.save(app.store, half.spec, "code", now)[0] == "updated"
    assert client.zscore(keys_of(queue).schedules_next, "beat") == half.spec.timing.next_after(now)


def test_schedules_dropped_from_code_are_reported_at_start(app: streamq.App) -> None:
    """A pool reports a stored schedule its code no longer defines, and keeps firing it."""
    app.schedule("beat", every_s=1)
    periodic(app).publish(now_ms())
    newer = streamq.App(app.redis_url, app.settings)
    newer.schedule("beat", every_s=1, schedule_id="other")
    with capture_logs() as logs:
        periodic(newer).publish(now_ms())
    (orphan,) = events(logs, "schedule.not_in_code")
    assert orphan["schedule_id"] == "beat"
    assert {e["schedule_id"] for e in events(logs, "schedule.created")} == {"other"}


def test_a_schedule_of_an_unknown_task_is_reported_not_fired(
    app: streamq.App, client: redis.Redis
) -> None:
    """A pool that lacks a schedule's task reports it once and fires the others."""
    app.schedule("ghost", every_s=1)
    app.schedule("beat", every_s=1)
    p = periodic(app, tasks={"beat"})
    written_in_past(app, "ghost")
    due = written_in_past(app, "beat")
    with capture_logs() as logs:
        for step in range(3):
            p.run_once(due + 5 + 1000 * step)
    (unknown,) = events(logs, "schedule.task_unknown")
    assert unknown["schedule_id"] == "ghost"
    assert {i.split(":")[1] for i in job_ids(client, app.settings.default_queue)} == {"beat"}
    assert len(events(logs, "schedule.fired")) == 3


def test_daily_job_on_dst_days_through_redis(app: streamq.App, client: redis.Redis) -> None:
    """Stepping a controllable clock over both 2025 DST changes, 02:30 Berlin fires once a day."""
    berlin = ZoneInfo("Europe/Berlin")
    s = app.schedule("beat", cron="30 2 * * *", tz="Europe/Berlin")
    p = periodic(app)
    fired: list[str] = []
    for day in ((2025, 3, 30), (2025, 10, 26)):
        start = int(datetime(*day, 1, 0, tzinfo=berlin).timestamp() * 1000)
        sched.save(app.store, s.spec, "code", start)
        client.zadd(keys_of(app.settings.default_queue).schedules_next,
                    {"beat": s.spec.timing.next_after(start)})  # fmt: skip
        for now in range(start, start + 4 * HOUR_MS, 20_000):
            p.run_once(now)
    for job_id in job_ids(client, app.settings.default_queue):
        tick = int(job_id.rsplit(":", 1)[1])
        fired.append(datetime.fromtimestamp(tick / 1000, berlin).isoformat())
    assert fired == ["2025-03-30T03:00:00+02:00", "2025-10-26T02:30:00+02:00"]


def cli(server: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``streamq --redis-url URL schedules ...`` without an app."""
    argv = [sys.executable, "-m", "streamq", "--redis-url", server.url, "schedules", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_cli_lists_pauses_runs_resumes_and_removes(
    app: streamq.App, client: redis.Redis, redis_server: RedisServer
) -> None:
    """The CLI works from Redis alone, and run-now enqueues even while paused."""
    queue = app.settings.default_queue
    sid = f"nightly-{queue}"  # ids are per queue: other tests' queues have a "beat" too
    app.schedule("beat", every_s=60, args=[7], schedule_id=sid).save()
    listed = [json.loads(line) for line in cli(redis_server, "list").stdout.splitlines()]
    mine = next(r for r in listed if r["id"] == sid)
    assert (mine["queue"], mine["task"], mine["every_s"], mine["args"]) == (queue, "beat", 60, [7])
    assert cli(redis_server, "pause", sid).returncode == 0
    assert client.zscore(keys_of(queue).schedules_next, sid) is None
    ran = cli(redis_server, "run-now", sid, "--queue", queue)
    assert ran.returncode == 0, ran.stderr
    job_id = json.loads(ran.stdout)["job_id"]
    assert job_ids(client, queue) == [job_id]
    assert job_id.startswith(f"sched:{sid}:now:")
    assert app.job(job_id).info().status == "queued"
    assert cli(redis_server, "resume", sid).returncode == 0
    shown = json.loads(cli(redis_server, "show", sid).stdout)
    assert shown["paused"] is False
    assert shown["last_job"] == job_id
    assert shown["next_ms"] == (now_ms() // 60_000 + 1) * 60_000
    assert cli(redis_server, "remove", sid).returncode == 0
    gone = cli(redis_server, "show", sid)
    assert gone.returncode == 1
    assert f"no schedule {sid!r}" in gone.stderr
    assert not client.exists(keys_of(queue).schedule(sid))


def test_jitter_delays_the_run_by_the_same_amount_in_every_pool(
    app: streamq.App, client: redis.Redis
) -> None:
    """A jittered tick's job waits in the delayed set, due at tick + the schedule's jitter."""
    s = app.schedule("beat", every_s=1, jitter_s=0.5)
    due = written_in_past(app, "beat")
    run_until_idle(periodic(app), due + 5)
    keys = keys_of(app.settings.default_queue)
    raw: Any = client.zrange(keys.delayed, 0, -1, withscores=True)
    ((payload, score),) = raw
    assert codec.decode(payload).id == f"sched:beat:{due}"
    assert int(score) == due + s.spec.jitter_for(due)
    assert due <= int(score) < due + 500
    assert client.hget(keys.job(f"sched:beat:{due}"), "state") == b"scheduled"
