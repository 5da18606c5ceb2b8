"""msgpack encoding of envelopes, with a schema version, a size limit and typed decode errors.

Never pickle: a payload is data, and decoding it can only ever yield an :class:`Envelope` or a
:class:`DecodeError` that keeps the raw bytes for the dead-letter stream.
"""

from __future__ import annotations

from typing import Any

import msgpack

from streamq.errors import DecodeError, PayloadTooLarge
from streamq.job import PRIORITY_HIGH, PRIORITY_LOW, Envelope
from streamq.options import MAX_COUNT, MAX_DURATION_MS, MAX_JOB_ID_CHARS

SCHEMA_VERSION = 1
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

# Wire names are short: they are repeated in every job held in Redis.
_REQUIRED = {"id": str, "t": str, "q": str, "a": list, "k": dict, "n": int, "e": int}
# The range of each optional int, as streamq.options lets producers write it, and its name.
_RANGES = {
    "r": (0, MAX_COUNT - 1, "max_retries"),
    "p": (PRIORITY_LOW, PRIORITY_HIGH, "priority"),
    "bb": (0, MAX_DURATION_MS, "backoff_base_ms"),
    "bc": (0, MAX_DURATION_MS, "backoff_cap_ms"),
    "to": (1, MAX_DURATION_MS, "timeout_ms"),
}


def encode(env: Envelope, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Return the msgpack bytes of ``env``.

    Raises:
        PayloadTooLarge: the encoding is over ``max_bytes``.
        TypeError: an argument msgpack cannot represent (a naive datetime, an object).
    """
    # "v" then "id" come first: lua/cancel.lua finds a job's delayed member by that prefix.
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": env.id,
        "t": env.task,
        "q": env.queue,
        "a": list(env.args),
        "k": dict(env.kwargs),
        "n": env.attempt,
        "e": env.enqueued_ms,
        "p": env.priority,
    }
    if env.max_retries is not None:
        doc["r"] = env.max_retries
    if env.backoff_base_ms is not None:
        doc["bb"] = env.backoff_base_ms
    if env.backoff_cap_ms is not None:
        doc["bc"] = env.backoff_cap_ms
    if env.timeout_ms is not None:
        doc["to"] = env.timeout_ms
    if env.headers:
        doc["h"] = dict(env.headers)
    if not env.tracked:
        doc["tr"] = False
    data: bytes = msgpack.packb(doc, use_bin_type=True, datetime=True)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"job {env.id} encodes to {len(data)} bytes, limit is {max_bytes}")
    return data


def id_marker(job_id: str) -> bytes:
    """The bytes right after the map header of every encoding of job ``job_id``.

    Lets a script recognise a job's payload without decoding it (cmsgpack in Redis cannot
    read bin or timestamp values, which arguments often hold).
    """
    parts: list[bytes] = [msgpack.packb(v, use_bin_type=True) for v in ("v", SCHEMA_VERSION, "id")]
    return b"".join([*parts, msgpack.packb(job_id, use_bin_type=True)])


def encode_result(value: object) -> bytes:
    """msgpack bytes of a task's return value (TypeError if msgpack cannot carry it)."""
    data: bytes = msgpack.packb(value, use_bin_type=True, datetime=True)
    return data


def decode_result(raw: bytes) -> object:
    """The return value stored by :func:`encode_result`."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)


def decode(raw: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Envelope:
    """Return the envelope in ``raw``.

    Raises:
        DecodeError: with reason ``too_large``, ``undecodable``, ``unsupported_version``,
            ``wrong_shape`` (a field of the wrong type) or ``bad_option`` (a value out of
            range, e.g. a negative time limit); its ``raw`` attribute holds the input, and
            ``job_id``/``task`` name the job when the bytes still do.
    """
    if len(raw) > max_bytes:
        raise DecodeError("too_large", f"{len(raw)} bytes, limit is {max_bytes}", raw)
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)
    except Exception as e:
        raise DecodeError("undecodable", f"{type(e).__name__}: {e}", raw) from e
    env = _fast(doc)
    return env if env is not None else _checked(doc, raw)


def _fast(doc: Any) -> Envelope | None:
    """The common case, with exact type checks only; None sends it to the careful path."""
    try:
        if not (
            type(doc) is dict
            and doc["v"] == SCHEMA_VERSION
            and type(doc["id"]) is str
            and type(doc["t"]) is str
            and type(doc["q"]) is str
            and type(doc["a"]) is list
            and type(doc["k"]) is dict
            and type(doc["n"]) is int
            and type(doc["e"]) is int
        ):
            return None
    except KeyError:
        return None
    get = doc.get
    r, p, bb, bc, to, h = get("r"), get("p", 1), get("bb"), get("bc"), get("to"), get("h")
    for v in (r, bb, bc, to):
        if v is not None and type(v) is not int:
            return None
    kwargs = doc["k"]
    if (
        type(p) is not int
        or not PRIORITY_LOW <= p <= PRIORITY_HIGH
        or (h is not None and type(h) is not dict)
        or not 0 < doc["n"] < MAX_COUNT
        or not 0 < len(doc["id"]) <= MAX_JOB_ID_CHARS
        or (r is not None and not 0 <= r < MAX_COUNT)
        or (to is not None and not 0 < to <= MAX_DURATION_MS)
        or (bb is not None and not 0 <= bb <= MAX_DURATION_MS)
        or (bc is not None and not 0 <= bc <= MAX_DURATION_MS)
        or (kwargs and not all(type(k) is str for k in kwargs))
    ):
        return None
    return Envelope(
        doc["id"],
        doc["t"],
        doc["q"],
        doc["a"],
        kwargs,
        doc["n"],
        r,
        doc["e"],
        p,
        bb,
        bc,
        to,
        h or {},
        get("tr", True) is not False,
    )


def _checked(doc: Any, raw: bytes) -> Envelope:
    """Validate field by field to name what is wrong; raises DecodeError.

    Once the map names a usable job id, errors carry it (and the task), so the worker marks
    that job's record dead rather than leaving it queued forever.
    """
    if not isinstance(doc, dict):
        raise DecodeError("wrong_shape", f"expected a map, got {type(doc).__name__}", raw)
    job_id, task = doc.get("id"), doc.get("t")
    named: dict[str, str] = {}
    if isinstance(job_id, str) and 0 < len(job_id) <= MAX_JOB_ID_CHARS:
        named = {"job_id": job_id, "task": task if isinstance(task, str) else ""}

    def fail(reason: str, message: str) -> DecodeError:
        return DecodeError(reason, message, raw, **named)

    version = doc.get("v")
    if version != SCHEMA_VERSION:
        kind = "unsupported_version" if isinstance(version, int) else "wrong_shape"
        raise fail(kind, f"schema version {version!r}")
    for name, typ in _REQUIRED.items():
        value = doc.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise fail("wrong_shape", f"field {name!r} is not a {typ.__name__}")
    for name in _RANGES:
        value = doc.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise fail("wrong_shape", f"field {name!r} is not an int")
    if not all(isinstance(k, str) for k in doc["k"]):
        raise fail("wrong_shape", "keyword argument names must be strings")
    if doc.get("h") is not None and not isinstance(doc["h"], dict):
        raise fail("wrong_shape", "field 'h' is not a map")
    bad = _bad_value(doc) if named else f"job id must be 1 to {MAX_JOB_ID_CHARS} characters"
    if bad:
        raise fail("bad_option", bad)
    raise fail("wrong_shape", "unexpected field values")  # _fast refused it for a reason


def _bad_value(doc: dict[str, Any]) -> str:
    """What is out of range in a well-typed envelope ('' if nothing)."""
    if not 0 < doc["n"] < MAX_COUNT:
        return f"attempt {doc['n']} is out of range"
    for name, (low, high, option) in _RANGES.items():
        value = doc.get(name)
        if value is not None and not low <= value <= high:
            return f"{option} {value} is outside {low}..{high}"
    return ""
