"""The envelope codec: round trips, versioning and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest

from streamq import codec
from streamq.errors import DecodeError, PayloadTooLarge
from streamq.job import Envelope


def _env(**kw: Any) -> Envelope:
    base: dict[str, Any] = {"id": "j1", "task": "t", "queue": "q", "enqueued_ms": 5}
    base.update(kw)
    return Envelope(**base)


@pytest.mark.parametrize(
    "value",
    [
        "text ünïcode",
        b"\x00\xffbytes",
        0,
        -(2**63),
        2**64 - 1,
        3.25,
        None,
        True,
        False,
        [1, "a", None],
        {"nested": {"list": [1, {"x": b"y"}], "n": None}},
        {1: "int keys survive"},
        datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    ],
)
def test_argument_types_round_trip(value: Any) -> None:
    """Every argument type users pass comes back equal, in args and in kwargs."""
    env = _env(args=[value], kwargs={"k": value})
    back = codec.decode(codec.encode(env))
    assert back.args == [value]
    assert back.kwargs == {"k": value}


def test_envelope_fields_round_trip() -> None:
    """All envelope fields survive, including optional overrides and headers."""
    env = _env(
        args=[1],
        attempt=3,
        max_retries=7,
        priority=2,
        backoff_base_ms=10,
        backoff_cap_ms=99,
        headers={"traceparent": "00-abc"},
    )
    assert codec.decode(codec.encode(env)) == env


def test_tuples_become_lists() -> None:
    """msgpack has one sequence type: a tuple argument arrives as a list (documented)."""
    back = codec.decode(codec.encode(_env(args=[(1, 2)])))
    assert back.args == [[1, 2]]


def test_encode_refuses_oversized_payload() -> None:
    """A job over the size limit is refused at enqueue, not discovered by a worker."""
    with pytest.raises(PayloadTooLarge):
        codec.encode(_env(args=["x" * 2000]), max_bytes=1000)


def test_encode_refuses_unencodable_objects() -> None:
    """Arbitrary objects are not serialized (no pickle fallback)."""
    with pytest.raises(TypeError):
        codec.encode(_env(args=[object()]))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1not msgpack", "undecodable"),
        (msgpack.packb([1, 2, 3]), "wrong_shape"),
        (msgpack.packb({"v": 99, "id": "x"}), "unsupported_version"),
        (msgpack.packb({"v": "1"}), "wrong_shape"),
        (
            msgpack.packb({"v": 1, "id": "x", "t": "t", "q": "q", "a": [], "k": {}, "n": 1}),
            "wrong_shape",
        ),
        (
            msgpack.packb({"v": 1, "id": 5, "t": "t", "q": "q", "a": [], "k": {}, "n": 1, "e": 1}),
            "wrong_shape",
        ),
        (
            msgpack.packb(
                {"v": 1, "id": "x", "t": "t", "q": "q", "a": [], "k": {1: 2}, "n": 1, "e": 1}
            ),
            "wrong_shape",
        ),
        (
            msgpack.packb(
                {"v": 1, "id": "x", "t": "t", "q": "q", "a": [], "k": {}, "n": True, "e": 1}
            ),
            "wrong_shape",
        ),
    ],
)
def test_decode_errors_name_a_reason_and_keep_bytes(raw: bytes, reason: str) -> None:
    """Bad payloads raise DecodeError with a reason code and the original bytes."""
    with pytest.raises(DecodeError) as info:
        codec.decode(raw)
    assert info.value.reason == reason
    assert info.value.raw == raw


def test_decode_refuses_oversized_input() -> None:
    """The decoder checks size before parsing anything."""
    raw = codec.encode(_env(args=["x" * 5000]))
    with pytest.raises(DecodeError) as info:
        codec.decode(raw, max_bytes=1000)
    assert info.value.reason == "too_large"


def test_decode_survives_deep_nesting() -> None:
    """A deeply nested payload is a DecodeError or a job, never a crash of the worker."""
    raw = b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(DecodeError):
        codec.decode(raw)


def test_newer_optional_fields_are_ignored() -> None:
    """An envelope written by a newer producer with extra fields still decodes."""
    doc = {"v": 1, "id": "x", "t": "t", "q": "q", "a": [], "k": {}, "n": 1, "e": 1, "zz": 1}
    assert codec.decode(msgpack.packb(doc)).id == "x"
