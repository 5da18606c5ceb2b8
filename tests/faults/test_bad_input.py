"""Scenario 6: arbitrary bytes and structures, to the decoder and straight into a live stream."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamq
from streamq import QueueKeys, codec
from streamq.errors import DecodeError
from streamq.store import Store
from streamq.testing import RedisServer, wait_until
from tests.faults.app import app as fault_app
from tests.faults.harness import (
    children,
    events,
    fault_env,
    new_queue,
    noise,
    producer_app,
    server_label,
    settle_or_none,
    start_pool,
    wait_for_workers,
)
from tests.faults.ledger import Ledger, dead_letters, tally
from tests.faults.report import Row

REASONS = {"too_large", "undecodable", "unsupported_version", "wrong_shape", "bad_option"}
REAL_TASKS = frozenset(fault_app.tasks)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))
)
# Headers of a timestamp (ext -1, which msgpack only lets us write as raw bytes) and of maps.
_PREFIXES = (b"", b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff", b"\xc7\x05\xff", b"\x81\xa1v\x01")
raw_bytes = st.tuples(st.sampled_from(_PREFIXES), st.binary(max_size=300)).map(b"".join)
_keys = st.text(max_size=4) | st.integers(-5, 5) | st.binary(max_size=4) | st.tuples(st.text())
structures = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=4),
    max_leaves=12,
)


@st.composite
def near_envelopes(draw: st.DrawFn, task: str = "no_such_task") -> dict[Any, Any]:
    """A valid envelope map with a few fields removed or replaced by anything."""
    doc: dict[Any, Any] = {
        "v": 1, "id": "x", "t": task, "q": "q", "a": [], "k": {}, "n": 1, "e": 0, "p": 1,
    }  # fmt: skip
    names = [*doc, "r", "bb", "bc", "h", "extra"]
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        if draw(st.booleans()):
            doc.pop(name, None)
        else:
            doc[name] = draw(structures)
    return doc


def _packed(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _decode(raw: bytes) -> streamq.Envelope | DecodeError:
    try:
        return codec.decode(raw)
    except DecodeError as e:
        return e


def _decodes_or_refuses(raw: bytes) -> None:
    out = _decode(raw)  # any other exception fails the test
    if isinstance(out, DecodeError):
        assert out.reason in REASONS
        assert out.raw == raw
    else:
        assert isinstance(out, streamq.Envelope)


@settings(max_examples=200, deadline=None)
@given(raw=raw_bytes)
def test_decode_of_arbitrary_bytes_is_envelope_or_decode_error(raw: bytes) -> None:
    """Any bytes decode to an Envelope or raise DecodeError, never anything else."""
    _decodes_or_refuses(raw)


@settings(max_examples=200, deadline=None)
@given(value=structures)
def test_decode_of_arbitrary_msgpack_is_envelope_or_decode_error(value: Any) -> None:
    """Any msgpack structure decodes to an Envelope or raises DecodeError."""
    _decodes_or_refuses(_packed(value))


@settings(max_examples=200, deadline=None)
@given(doc=near_envelopes(task="work"))
def test_decode_of_damaged_envelopes_is_envelope_or_decode_error(doc: dict[Any, Any]) -> None:
    """Envelopes with fields missing or of any type decode or raise DecodeError."""
    _decodes_or_refuses(_packed(doc))


def _not_runnable(doc: dict[Any, Any]) -> bool:
    task = doc.get("t")
    return not (isinstance(task, str) and task in REAL_TASKS)


def _junk_fields() -> st.SearchStrategy[dict[bytes, bytes]]:
    def in_j(raw: bytes) -> dict[bytes, bytes]:
        return {b"j": raw}

    return st.one_of(
        raw_bytes.map(in_j),
        structures.map(_packed).map(in_j),
        near_envelopes().filter(_not_runnable).map(_packed).map(in_j),
        st.dictionaries(st.binary(max_size=8), st.binary(max_size=32), min_size=1, max_size=4),
    )


def expected_reason(fields: dict[bytes, bytes]) -> str:
    """The dead-letter reason a worker must give this entry (decided here, independently)."""
    raw = fields.get(b"j")
    if raw is None:
        return "malformed_entry"
    try:
        env = codec.decode(raw, fault_app.settings.max_payload_bytes)
    except DecodeError as e:
        return e.reason
    return "unknown_task" if env.task not in REAL_TASKS else "would run"


ANY_BUT_WORKER_DEATH = "any reason but max_deliveries"


def _envelope(**fields: Any) -> dict[bytes, bytes]:
    doc = {
        "v": 1,
        "id": f"edge{len(fields)}",
        "t": "no_such_task",
        "q": "q",
        "a": [],
        "k": {},
        "n": 1,
        "e": 0,
    }
    doc.update(fields)
    return {b"j": _packed(doc)}


# Hand-picked junk a random draw rarely reaches: (fields, the reason a worker must give).
EDGES: list[tuple[dict[bytes, bytes], str]] = [
    (_envelope(v=2), "unsupported_version"),
    ({b"j": b"\x90" * (fault_app.settings.max_payload_bytes + 1)}, "too_large"),
    ({b"j": b""}, "undecodable"),
    ({b"n": b"7", b"x": b"no j field"}, "malformed_entry"),
    # A real task that fails, at an attempt whose successor msgpack cannot encode (uint64 max):
    # the worker must bury it, not die on it until the reaper gives up (bugs-faults.md #1).
    (_envelope(t="work", n=2**64 - 1, r=2**64 - 1), ANY_BUT_WORKER_DEATH),
]


@pytest.mark.slow
def test_junk_in_a_live_stream_is_dead_lettered(
    ledger_server: RedisServer, ledger_client: redis.Redis, report: Callable[[Row], None]
) -> None:
    """Junk entries between good jobs are each dead-lettered with a reason; workers stay up."""
    t0 = time.monotonic()
    with RedisServer() as sut:
        queue = new_queue("junk")
        keys = QueueKeys(queue)
        env = fault_env(sut.url, queue, ledger_server.url, max_deliveries=3)
        led = Ledger(ledger_client, queue)
        app = producer_app(sut.url, queue)
        client = app.client()
        good: list[str] = []
        junk: dict[str, str] = {}  # entry id -> expected reason
        # A requeued entry gets a new id (the reaper's requeue is a new XADD): also match by job.
        job_ids: dict[str, str] = {}
        with start_pool(env, 2) as pool:
            pids = sorted(wait_for_workers(pool, 2))

            @settings(
                max_examples=4,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(batch=st.lists(_junk_fields(), min_size=8, max_size=8))
            def feed(batch: list[dict[bytes, bytes]]) -> None:
                for fields in batch:
                    tag = f"g{len(good)}"
                    app.enqueue("work", args=[tag, 1])
                    good.append(tag)
                    reason = expected_reason(fields)
                    assert reason != "would run"
                    entry: Any = client.xadd(keys.stream, fields)  # type: ignore[arg-type]
                    junk[entry.decode()] = reason
                wait_until(lambda: _buried(app.store, queue, {}) >= set(junk), 20, 0.05, "junk")
                wait_until(led.reached(len(good)), 20, 0.05, "good jobs")

            feed()
            for fields, reason in EDGES:
                added: Any = client.xadd(keys.stream, fields)  # type: ignore[arg-type]
                junk[added.decode()] = reason
                decoded = _decode(fields.get(b"j", b""))
                if isinstance(decoded, streamq.Envelope):
                    job_ids[added.decode()] = decoded.id
            settle_or_none(lambda: _buried(app.store, queue, job_ids) >= set(junk), 30)
            crashed = len(events(pool, "worker.crashed"))
            exits = len(events(pool, "worker.exited"))
            live = sorted(children(pool))
            bad_lines = noise(pool)
        by_job = {job: entry for entry, job in job_ids.items()}
        dead = {
            by_job.get(d.job_id, d.entry): d.reason
            for d in dead_letters(app.store, queue)
            if by_job.get(d.job_id, d.entry) in junk
        }
        t = tally(led, app.store, queue, good)
        stats = app.store.stats(keys, "default")
        app.client().close()
    wrong = {e: (junk[e], dead.get(e)) for e in junk if not _as_expected(junk[e], dead.get(e))}
    reasons = Counter(dead.values())
    report(
        Row(
            "6 junk entries in a live stream",
            server_label(sut.binary),
            t.jobs + len(junk),
            t.once,
            len(t.dups),
            len(dead),
            len(t.lost) + len(set(junk) - set(dead)),
            wall_s=time.monotonic() - t0,
            notes=f"{len(good)} good jobs, {len(junk)} junk entries ({len(EDGES)} hand-picked);"
            f" dead-letter reasons: {dict(reasons)}; worker crashes: {crashed};"
            " decoder fuzz: 3 x 200 examples",
        )
    )
    assert crashed == 0, f"{crashed} worker crashes on junk input (see bugs-faults.md #1)"
    assert not wrong, f"entry -> (expected, got): {wrong}"
    assert t.once == len(good), f"good jobs not done exactly once: {t}"
    assert (exits, live) == (0, pids), "workers must stay up"
    assert not bad_lines, bad_lines[:5]
    assert (stats.queued, stats.pending) == (0, 0)


def _as_expected(expected: str, got: str | None) -> bool:
    if expected == ANY_BUT_WORKER_DEATH:
        return got not in (None, "", "max_deliveries")
    return got == expected


def _buried(store: Store, queue: str, job_ids: dict[str, str]) -> set[str]:
    """Entry ids (first ids, for the jobs in ``job_ids``) in the dead-letter stream so far."""
    by_job = {job: entry for entry, job in job_ids.items()}
    return {by_job.get(d.job_id, d.entry) for d in dead_letters(store, queue)}
