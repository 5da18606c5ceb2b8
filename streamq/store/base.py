"""Shared pieces of the store: connecting, error wrapping, and the types it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamq.errors import ConfigError
from streamq.keys import QueueKeys
from streamq.settings import TlsSettings

REAPER_CONSUMER = "streamq-reaper"


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


@dataclass(frozen=True, slots=True)
class QueueGauges:
    """One queue as a metrics scrape sees it; ``depth`` and ``oldest_age_ms`` per priority.

    ``depth`` counts entries no worker has started (in the stream, not pending);
    ``oldest_age_ms`` is the age of the oldest of them (0 when there is none).
    """

    queue: str
    depth: dict[int, int]
    oldest_age_ms: dict[int, int]
    pending: int
    delayed: int
    dead: int


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def field_text(fields: Mapping[str, bytes], name: str) -> str:
    """A hash or stream field as text ('' when absent); bad UTF-8 never raises."""
    return fields.get(name, b"").decode("utf-8", "replace")


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
    unique_ms: int = 0  # also refuse the id this long after a job with it was enqueued
