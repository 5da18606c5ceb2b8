"""msgpack encoding of envelopes, with a schema version, a size limit and typed decode errors.

Never pickle: a payload is data, and decoding it can only ever yield an :class:`Envelope` or a
:class:`DecodeError` that keeps the raw bytes for the dead-letter stream.
"""

from __future__ import annotations

from typing import Any

import msgpack

from streamq.errors import DecodeError, PayloadTooLarge
from streamq.job import Envelope

SCHEMA_VERSION = 1
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

# Wire names are short: they are repeated in every job held in Redis.
_REQUIRED = {"id": str, "t": str, "q": str, "a": list, "k": dict, "n": int, "e": int}
_OPTIONAL_INT = ("r", "p", "bb", "bc", "to")
_MAX_COUNT = 2**31  # attempts and retries beyond this are hostile input, not real jobs


def encode(env: Envelope, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Return the msgpack bytes of ``env``.

    Raises:
        PayloadTooLarge: the encoding is over ``max_bytes``.
        TypeError: an argument msgpack cannot represent (a naive datetime, an object).
    """
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
        DecodeError: with reason ``too_large``, ``undecodable``, ``unsupported_version`` or
            ``wrong_shape``; its ``raw`` attribute holds the input.
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
        or (h is not None and type(h) is not dict)
        or not 0 < doc["n"] < _MAX_COUNT
        or (r is not None and not 0 <= r < _MAX_COUNT)
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
    """Validate field by field to name what is wrong; raises DecodeError."""
    if not isinstance(doc, dict):
        raise DecodeError("wrong_shape", f"expected a map, got {type(doc).__name__}", raw)
    version = doc.get("v")
    if version != SCHEMA_VERSION:
        kind = "unsupported_version" if isinstance(version, int) else "wrong_shape"
        raise DecodeError(kind, f"schema version {version!r}", raw)
    for name, typ in _REQUIRED.items():
        value = doc.get(name)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise DecodeError("wrong_shape", f"field {name!r} is not a {typ.__name__}", raw)
    for name in _OPTIONAL_INT:
        value = doc.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise DecodeError("wrong_shape", f"field {name!r} is not an int", raw)
    if not all(isinstance(k, str) for k in doc["k"]):
        raise DecodeError("wrong_shape", "keyword argument names must be strings", raw)
    if not 0 < doc["n"] < _MAX_COUNT or not 0 <= (doc.get("r") or 0) < _MAX_COUNT:
        raise DecodeError("wrong_shape", "attempt or max_retries out of range", raw)
    raise DecodeError("wrong_shape", "field 'h' is not a map", raw)
