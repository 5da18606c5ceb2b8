"""Shared pieces of the store: connecting, error wrapping, and the types it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from streamq.errors import ConfigError
from streamq.keys import QueueKeys
from streamq.settings import TlsSettings
from streamq.store.urls import Target, parse_url

REAPER_CONSUMER = "streamq-reaper"

try:  # redis-py 7.1+: the version read once, not per connection
    from redis.driver_info import DriverInfo

    _DRIVER_INFO: Any = DriverInfo(lib_version=redis.__version__)
except ImportError:  # pragma: no cover - older redis-py reads it per connection
    _DRIVER_INFO = None


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


def _pool_options(
    target: Target, socket_timeout_s: float, tls: TlsSettings | None, max_connections: int
) -> dict[str, Any]:
    """The connection pool options both clients share (checked; no I/O)."""
    if socket_timeout_s <= 0:
        raise ConfigError("socket_timeout_s must be positive")
    if max_connections < 1:
        raise ConfigError("max_connections must be at least 1")
    extra: dict[str, Any] = {}
    if target.tls and tls is not None:
        extra = {
            "ssl_ca_certs": tls.ca_certs,
            "ssl_certfile": tls.certfile,
            "ssl_keyfile": tls.keyfile,
            "ssl_check_hostname": tls.check_hostname,
        }
    if _DRIVER_INFO is not None:
        # Without it redis-py reads its version from the package metadata for every new
        # connection (~1 ms each): 100 coroutines connecting at once stalled a loop ~100 ms.
        extra["driver_info"] = _DRIVER_INFO
    return {
        **extra,
        "max_connections": max_connections,
        "timeout": socket_timeout_s,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": min(socket_timeout_s, 5.0),
        "socket_keepalive": True,
        "decode_responses": False,
    }


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
    target = _served(url)
    options = _pool_options(target, socket_timeout_s, tls, max_connections)
    if target.kind == "sentinel":
        return _sentinel_primary(target, options)
    pool = redis.BlockingConnectionPool.from_url(url, **options, retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool)


def _served(url: str) -> Target:
    target = parse_url(url)
    if target.kind == "cluster":
        raise ConfigError(
            "redis+cluster:// URLs are not served yet: the cluster executor runs the store's "
            "plans (streamq/store/cluster.py) but is not wired into App and workers"
        )
    return target


def _sentinel_kwargs(target: Target, options: dict[str, Any]) -> dict[str, Any]:
    """Options for the data nodes' connections behind a Sentinel (no pool wait: redis-py has
    no blocking Sentinel pool, so past ``max_connections`` a call fails instead of waiting)."""
    node = {k: v for k, v in options.items() if k not in ("timeout", "max_connections")}
    if target.tls:
        node["ssl"] = True
    return node


def _sentinel_primary(target: Target, options: dict[str, Any]) -> redis.Redis:
    """A client of the primary the sentinels name; each new connection asks them again, so a
    failover is followed on the reconnect after the old primary's connections fail."""
    node = _sentinel_kwargs(target, options)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # untyped in redis-py
        list(target.seeds),
        sentinel_kwargs={
            "socket_timeout": node["socket_timeout"],
            "socket_connect_timeout": node["socket_connect_timeout"],
        },
        retry=Retry(NoBackoff(), 0),
        **node,
    )
    primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # untyped in redis-py
        target.service,
        connection_pool_class=SentinelConnectionPool,
        db=target.db,
        username=target.username,
        password=target.password,
        max_connections=options["max_connections"],
    )
    return primary


def aconnect(
    url: str,
    socket_timeout_s: float = 10.0,
    tls: TlsSettings | None = None,
    max_connections: int = 50,
) -> aioredis.Redis:
    """The ``redis.asyncio`` twin of :func:`connect`, for one event loop (no I/O yet).

    The same options; the bound matters more here: a coroutine that finds every connection
    busy waits for one instead of opening more, so a burst of coroutines cannot open
    hundreds of connections at once.
    """
    target = _served(url)
    options = _pool_options(target, socket_timeout_s, tls, max_connections)
    if target.kind == "sentinel":
        node = _sentinel_kwargs(target, options)
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]  # untyped in redis-py
            list(target.seeds),
            sentinel_kwargs={
                "socket_timeout": node["socket_timeout"],
                "socket_connect_timeout": node["socket_connect_timeout"],
            },
            retry=AsyncRetry(NoBackoff(), 0),
            **node,
        )
        primary: aioredis.Redis = sentinel.master_for(
            target.service,
            db=target.db,
            username=target.username,
            password=target.password,
            max_connections=max_connections,
        )
        return primary
    pool = aioredis.BlockingConnectionPool.from_url(
        url, **options, retry=AsyncRetry(NoBackoff(), 0)
    )
    return aioredis.Redis(connection_pool=pool)


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
