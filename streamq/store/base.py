"""Shared pieces of the store: connecting, error wrapping, and the types it returns."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    InvalidResponse,
    NoPermissionError,
)
from redis.retry import Retry

from streamq.errors import (
    ConfigError,
    RedisCommandError,
    RedisSetupError,
    StreamqConnectionError,
    StreamqError,
)
from streamq.keys import QueueKeys
from streamq.scripts import Scripts
from streamq.settings import TlsSettings
from streamq.store.listener import DoneListener

REAPER_CONSUMER = "streamq-reaper"
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, socket.error)
# Mistakes that waiting does not fix. redis-py makes WRONGPASS/NOAUTH a ConnectionError, so
# these are matched before _CONN_ERRORS; NOPERM is a ResponseError.
_SETUP_ERRORS: tuple[tuple[type[Exception], str, str], ...] = (
    (redis.AuthenticationError, "auth", "Redis refused the credentials in the URL"),
    (AuthenticationWrongNumberOfArgsError, "auth", "Redis refused the credentials in the URL"),
    (AuthorizationError, "permission", "the Redis user lacks a permission streamq needs"),
    (NoPermissionError, "permission", "the Redis user lacks a permission streamq needs"),
    (InvalidResponse, "protocol", "the server at this URL does not speak the Redis protocol"),
)
_SETUP_KINDS = tuple(kind for kind, _, _ in _SETUP_ERRORS)


class Entry(NamedTuple):
    """One stream entry handed to a worker: where it came from and its raw fields."""

    keys: QueueKeys
    priority: int
    id: bytes
    fields: dict[bytes, bytes]

    @property
    def stream(self) -> str:
        """The stream key this entry lives in."""
        return self.keys.stream_for(self.priority)

    @property
    def payload(self) -> bytes | None:
        """The encoded job, or None for an entry that was not written by streamq."""
        return self.fields.get(b"j")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a dead-letter stream."""

    id: str
    fields: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth figures of one queue; ``queued`` excludes entries a worker holds."""

    queue: str
    queued: int
    pending: int
    delayed: int
    dead: int
    consumers: dict[str, int]  # consumer name -> pending entries


def setup_error(what: str, e: Exception) -> RedisSetupError | None:
    """The :class:`RedisSetupError` for ``e`` if it is a credentials, permission or protocol
    mistake, else None."""
    for kind, cause, text in _SETUP_ERRORS:
        if isinstance(e, kind):
            return RedisSetupError(cause, f"{what}: {text}: {type(e).__name__}: {e}")
    return None


@contextmanager
def wrapped(what: str) -> Iterator[None]:
    """Turn redis-py's errors into streamq's (see :mod:`streamq.errors`)."""
    try:
        yield
    except StreamqError:
        raise  # already ours: a verb called inside another verb's block (result waits)
    except _SETUP_KINDS as e:
        raise (setup_error(what, e) or RedisCommandError(f"{what}: {e}")) from e
    except _CONN_ERRORS as e:
        raise StreamqConnectionError(f"{what}: {type(e).__name__}: {e}") from e
    except redis.ResponseError as e:
        raise RedisCommandError(f"{what}: {e}") from e


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def field_text(fields: Mapping[str, bytes], name: str) -> str:
    """A hash or stream field as text ('' when absent); bad UTF-8 never raises."""
    return fields.get(name, b"").decode("utf-8", "replace")


def no_group(e: redis.ResponseError) -> bool:
    """True for the error of a stream or group that does not exist (yet, or any more)."""
    return "NOGROUP" in str(e)


def connect(
    url: str,
    socket_timeout_s: float = 10.0,
    tls: TlsSettings | None = None,
    max_connections: int = 50,
) -> redis.Redis:
    """Return a client for ``url`` (no I/O yet) with timeouts and no hidden retries.

    redis-py's own retry is off: a retried XADD after a timeout could add a job twice, so the
    caller decides what a failure means. ``tls`` applies to ``rediss://`` URLs. At most
    ``max_connections`` are open at once; a thread that finds them all busy waits for one
    (up to the socket timeout) instead of failing.
    """
    if socket_timeout_s <= 0:
        raise ConfigError("socket_timeout_s must be positive")
    if max_connections < 1:
        raise ConfigError("max_connections must be at least 1")
    extra: dict[str, Any] = {}
    if url.startswith("rediss://") and tls is not None:
        extra = {
            "ssl_ca_certs": tls.ca_certs,
            "ssl_certfile": tls.certfile,
            "ssl_keyfile": tls.keyfile,
            "ssl_check_hostname": tls.check_hostname,
        }
    pool = redis.BlockingConnectionPool.from_url(
        url,
        **extra,
        max_connections=max_connections,
        timeout=socket_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=min(socket_timeout_s, 5.0),
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue: where it goes, its id and task, its bytes, when it is due."""

    keys: QueueKeys
    job_id: str
    task: str
    priority: int
    payload: bytes
    due_ms: int = 0  # 0: now, onto the stream; else into the delayed set


class StoreBase:
    """One Redis client, its registered scripts and its result listener (started only on the
    first result wait); the verb mixins build on it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.scripts = Scripts(client)
        self.listener = DoneListener(client)
