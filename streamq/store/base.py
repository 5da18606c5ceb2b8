"""Shared pieces of the store: connecting, error wrapping, and the types it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from streamq.errors import ConfigError
from streamq.keys import QueueKeys
from streamq.settings import TlsSettings
from streamq.store.urls import Target, parse_url

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
    caller decides what a failure means. ``tls`` applies to ``rediss`` URLs. At most
    ``max_connections`` are open at once; a thread that finds them all busy waits for one
    (up to the socket timeout) instead of failing. See :mod:`streamq.store.urls` for the URL
    forms.
    """
    if socket_timeout_s <= 0:
        raise ConfigError("socket_timeout_s must be positive")
    if max_connections < 1:
        raise ConfigError("max_connections must be at least 1")
    target = parse_url(url)
    if target.kind == "cluster":
        raise ConfigError(
            "redis+cluster:// URLs are not served yet: the cluster executor runs the store's "
            "plans (streamq/store/cluster.py) but is not wired into App and workers"
        )
    extra: dict[str, Any] = {}
    if target.tls and tls is not None:
        extra = {
            "ssl_ca_certs": tls.ca_certs,
            "ssl_certfile": tls.certfile,
            "ssl_keyfile": tls.keyfile,
            "ssl_check_hostname": tls.check_hostname,
        }
    options: dict[str, Any] = {
        **extra,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": min(socket_timeout_s, 5.0),
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    if target.kind == "sentinel":
        return _sentinel_primary(target, max_connections, options)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=socket_timeout_s, **options
    )
    return redis.Redis(connection_pool=pool)


def _sentinel_primary(target: Target, max_connections: int, options: dict[str, Any]) -> redis.Redis:
    """A client of the primary the sentinels name; each new connection asks them again, so a
    failover is followed on the reconnect after the old primary's connections fail.

    redis-py has no blocking Sentinel pool: past ``max_connections`` a call fails (as
    ``StreamqConnectionError``) instead of waiting for a free connection.
    """
    if target.tls:
        options = {**options, "ssl": True}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # untyped in redis-py
        list(target.seeds),
        sentinel_kwargs={
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
        },
        **options,
    )
    primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # untyped in redis-py
        target.service,
        connection_pool_class=SentinelConnectionPool,
        db=target.db,
        username=target.username,
        password=target.password,
        max_connections=max_connections,
    )
    return primary


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
