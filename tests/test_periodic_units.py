"""Pure schedule math and definitions: cron, intervals, DST, missed policies, validation."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import streamq
from streamq.cron import MAX_CATCH_UP, SKIP_GRACE_MS, Plan, Timing, count_between, plan
from streamq.errors import ConfigError, DecodeError
from streamq.schedule import ScheduleSpec, decode_spec

BERLIN = ZoneInfo("Europe/Berlin")


def ms(y: int, mo: int, d: int, h: int, mi: int = 0, fold: int = 0, tz: ZoneInfo = BERLIN) -> int:
    """Epoch ms of a local time in ``tz`` (``fold=1``: the second of a repeated hour)."""
    return int(datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold).timestamp() * 1000)


def fires_between(
    timing: Timing, missed: str, start_ms: int, end_ms: int, step_ms: int
) -> list[int]:
    """Run the pool's decision with a controllable clock; return every tick that fired."""
    nxt, fired, now = timing.next_after(start_ms), [], start_ms
    while now <= end_ms:
        while 0 <= nxt <= now:
            p = plan(timing, missed, nxt, now)
            if p.fire_ms >= 0:
                fired.append(p.fire_ms)
            nxt = p.next_ms
        now += step_ms
    return fired


def test_six_fields_read_seconds_first() -> None:
    """A 6-field cron has seconds first: "*/2 * * * * *" fires every 2 s."""
    t = Timing("*/2 * * * * *")
    start = ms(2025, 1, 1, 0, tz=ZoneInfo("UTC"))
    assert t.next_after(start) == start + 2000
    assert t.next_after(start + 1999) == start + 2000
    assert t.latest_at_or_before(start + 3999) == start + 2000
    assert t.latest_at_or_before(start + 4000) == start + 4000


def test_intervals_fall_on_multiples_since_the_epoch() -> None:
    """every_s ticks are the same in every process: multiples of the interval."""
    t = Timing(every_ms=60_000)
    assert t.next_after(119_999) == 120_000
    assert t.next_after(120_000) == 180_000
    assert t.latest_at_or_before(179_999) == 120_000
    assert count_between(t, 60_000, 240_000) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "* * * *"}, "4 fields"),
        ({"cron": "* * * * * * *"}, "7 fields"),
        ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "0 3 * * *", "every_s": 5}, "exactly one"),
        ({}, "exactly one"),
        ({"every_s": 0}, "every_s must be positive"),
        ({"every_s": 1, "missed": "sometimes"}, "missed must be"),
        ({"every_s": 1, "overlap": "queue"}, "overlap must be"),
        ({"every_s": 1, "schedule_id": "a b"}, "invalid schedule id"),
        ({"every_s": 1, "args": [object()]}, "msgpack cannot encode"),
    ],
)
def test_bad_definitions_are_refused_at_definition(kwargs: dict[str, object], message: str) -> None:
    """A malformed cron, an unknown zone or a bad option raises when the schedule is defined."""
    app = streamq.App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match=message):
        app.schedule("report", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):

        @app.periodic(**kwargs)  # type: ignore[arg-type]
        def report() -> None: ...

    assert not app.schedules
    assert "report" not in app.tasks  # a refused periodic task is not left half-registered


def test_periodic_defines_task_and_schedule_in_one() -> None:
    """@app.periodic registers the task and a schedule named after it on the task's queue."""
    app = streamq.App("redis://127.0.0.1:1/0")

    @app.periodic(cron="*/5 * * * *", tz="Europe/Berlin", queue="reports", priority="high")
    def digest() -> None: ...

    (s,) = app.schedules.values()
    assert s.id == "digest"
    assert s.spec.task == "digest"
    assert s.spec.queue == "reports"
    assert s.spec.priority == 2
    assert s.spec.timing == Timing("*/5 * * * *", None, "Europe/Berlin")
    assert app.tasks["digest"] is digest
    with pytest.raises(ConfigError, match="taken"):
        app.schedule(digest, every_s=10)
    other = app.schedule(digest, every_s=10, schedule_id="digest-fast", args=[1])
    assert other.spec.args == (1,)


def test_spring_forward_runs_the_skipped_time_once_at_the_first_valid_time() -> None:
    """Daily 02:30 in Berlin on 2025-03-30 (02:00 jumps to 03:00) fires once, at 03:00."""
    t = Timing("30 2 * * *", tz="Europe/Berlin")
    fired = fires_between(t, "skip", ms(2025, 3, 29, 12, 0), ms(2025, 3, 31, 12, 0), 60_000)
    local = [datetime.fromtimestamp(f / 1000, BERLIN).isoformat() for f in fired]
    assert local == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
    ]


def test_fall_back_runs_the_repeated_time_once() -> None:
    """Daily 02:30 on 2025-10-26 (03:00 falls back to 02:00) fires once, the first 02:30."""
    t = Timing("30 2 * * *", tz="Europe/Berlin")
    fired = fires_between(t, "skip", ms(2025, 10, 25, 12, 0), ms(2025, 10, 27, 12, 0), 60_000)
    local = [datetime.fromtimestamp(f / 1000, BERLIN).isoformat() for f in fired]
    assert local == [
        "2025-10-26T02:30:00+02:00",
        "2025-10-27T02:30:00+01:00",
    ]
    # An hourly job does run in both real hours that read 02:30.
    hourly = Timing("30 * * * *", tz="Europe/Berlin")
    got = fires_between(hourly, "skip", ms(2025, 10, 26, 1, 0), ms(2025, 10, 26, 4, 0), 60_000)
    assert got == [
        ms(2025, 10, 26, 1, 30),
        ms(2025, 10, 26, 2, 30),
        ms(2025, 10, 26, 2, 30, fold=1),
        ms(2025, 10, 26, 3, 30),
    ]


def test_one_due_tick_fires_late_or_not() -> None:
    """The normal case: the one due tick fires, and the next is the following tick."""
    t = Timing(every_ms=1000)
    assert plan(t, "skip", 5000, 5030) == Plan(5000, 0, 6000)
    assert plan(t, "all", 5000, 5999) == Plan(5000, 0, 6000)
    assert plan(t, "skip", 5000, 4990) == Plan(-1, 0, 5000)  # not due yet: unchanged


def test_missed_policies_after_downtime() -> None:
    """skip fires only a recent tick, once fires one catch-up, all fires each (capped)."""
    hourly = Timing(every_ms=3_600_000)
    h = 3_600_000
    now = 10 * h + SKIP_GRACE_MS + 1  # ticks 3h..10h due; the latest is past the grace
    assert plan(hourly, "skip", 3 * h, now) == Plan(-1, 8, 11 * h)
    assert plan(hourly, "skip", 3 * h, 10 * h + 5) == Plan(10 * h, 7, 11 * h)
    assert plan(hourly, "once", 3 * h, now) == Plan(10 * h, 7, 11 * h)
    assert plan(hourly, "all", 3 * h, now) == Plan(3 * h, 0, 4 * h)
    second = Timing(every_ms=1000)
    behind = 1000 * (MAX_CATCH_UP + 50)  # ticks 0..MAX_CATCH_UP + 50 are due
    first = plan(second, "all", 0, behind)
    assert first == Plan(behind - 1000 * (MAX_CATCH_UP - 1), 51, behind - 1000 * (MAX_CATCH_UP - 2))


def test_definition_round_trips_and_hashes_by_content() -> None:
    """A stored definition decodes to the same spec; kwargs order does not change the hash."""
    a = ScheduleSpec("s", "t", "q", Timing("0 3 * * *", tz="Europe/Berlin"), [1], {"x": 1, "y": 2})
    b = ScheduleSpec("s", "t", "q", Timing("0 3 * * *", tz="Europe/Berlin"), [1], {"y": 2, "x": 1})
    assert a.content_hash == b.content_hash
    assert decode_spec(a.blob) == a
    c = ScheduleSpec("s", "t", "q", Timing("0 4 * * *", tz="Europe/Berlin"), [1], {"x": 1})
    assert c.content_hash != a.content_hash
    assert c.timing_key != a.timing_key
    assert a.job_id(1000) == "sched:s:1000"
    with pytest.raises(DecodeError, match="unsupported_version"):
        decode_spec(a.blob.replace(b"\xa1v\x01", b"\xa1v\x09"))
    jittered = ScheduleSpec("s", "t", "q", Timing(every_ms=1000), jitter_ms=500)
    assert jittered.jitter_for(7000) == jittered.jitter_for(7000) < 500
