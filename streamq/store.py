"""The only module that talks to Redis: queue verbs over streams, sorted sets and scripts.

It narrows redis-py's loosely typed replies to real types and wraps connection failures in
:class:`StreamqConnectionError`, so nothing above it imports ``redis``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamq.errors import ConfigError, RedisCommandError, StreamqConnectionError
from streamq.keys import QueueKeys
from streamq.scripts import ReclaimResult, Scripts
from streamq.settings import TlsSettings

REAPER_CONSUMER = "streamq-reaper"
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, socket.error)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry handed to a worker: where it came from and its raw fields."""

    keys: QueueKeys
    id: bytes
    fields: dict[bytes, bytes]

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


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    try:
        yield
    except _CONN_ERRORS as e:
        raise StreamqConnectionError(f"{what}: {type(e).__name__}: {e}") from e
    except redis.ResponseError as e:
        raise RedisCommandError(f"{what}: {e}") from e


def _no_group(e: redis.ResponseError) -> bool:
    """True for the error of a stream or group that does not exist (yet, or any more)."""
    return "NOGROUP" in str(e)


def connect(
    url: str, socket_timeout_s: float = 10.0, tls: TlsSettings | None = None
) -> redis.Redis:
    """Return a client for ``url`` (no I/O yet) with timeouts and no hidden retries.

    redis-py's own retry is off: a retried XADD after a timeout could add a job twice, so the
    caller decides what a failure means. ``tls`` applies to ``rediss://`` URLs.
    """
    if socket_timeout_s <= 0:
        raise ConfigError("socket_timeout_s must be positive")
    extra: dict[str, Any] = {}
    if url.startswith("rediss://") and tls is not None:
        extra = {
            "ssl_ca_certs": tls.ca_certs,
            "ssl_certfile": tls.certfile,
            "ssl_keyfile": tls.keyfile,
            "ssl_check_hostname": tls.check_hostname,
        }
    return redis.Redis.from_url(
        url,
        **extra,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=min(socket_timeout_s, 5.0),
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )


class Store:
    """Queue verbs for one Redis client; safe to share within a thread, not across forks."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.scripts = Scripts(client)

    # -- producing -------------------------------------------------------------------------
    def add(self, items: Sequence[tuple[QueueKeys, bytes]]) -> list[bytes]:
        """XADD each payload to its queue's stream in one round trip; return entry ids."""
        with _wrapped("enqueue failed"):
            if len(items) == 1:
                keys, payload = items[0]
                return [cast(bytes, self.client.xadd(keys.stream, {b"j": payload}))]
            pipe = self.client.pipeline(transaction=False)
            for keys, payload in items:
                pipe.xadd(keys.stream, {b"j": payload})
            return list(pipe.execute())

    def schedule(self, items: Sequence[tuple[QueueKeys, bytes, int]]) -> None:
        """ZADD each payload to its queue's delayed set, scored by due time in ms."""
        with _wrapped("enqueue failed"):
            pipe = self.client.pipeline(transaction=False)
            for keys, payload, due_ms in items:
                pipe.zadd(keys.delayed, {payload: due_ms})
            pipe.execute()

    # -- consuming -------------------------------------------------------------------------
    def ensure_group(self, keys: QueueKeys, group: str) -> None:
        """Create the consumer group (and the stream) if missing; start from the first entry."""
        with _wrapped("group create failed"):
            try:
                self.client.xgroup_create(keys.stream, group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def groups(self, keys: QueueKeys) -> list[str]:
        """Names of the consumer groups on the queue's stream."""
        with _wrapped("group list failed"):
            try:
                info: Any = self.client.xinfo_groups(keys.stream)
            except redis.ResponseError:
                return []  # no stream yet
        return [g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in info]

    def read(
        self,
        queues: Sequence[QueueKeys],
        group: str,
        consumer: str,
        count: int,
        block_ms: int,
        own: bool = False,
    ) -> list[Entry]:
        """XREADGROUP new entries for ``consumer`` (``own``: its pending ones instead).

        Recreates the group if Redis lost it (a restart without persistence).
        """
        by_stream = {k.stream.encode(): k for k in queues}
        streams: dict[Any, Any] = {k.stream: "0" if own else ">" for k in queues}
        with _wrapped("read failed"):
            try:
                reply: Any = self.client.xreadgroup(
                    group, consumer, streams, count=count, block=block_ms or None
                )
            except redis.ResponseError as e:
                if not _no_group(e):
                    raise
                for keys in queues:
                    self.ensure_group(keys, group)
                return []
        out: list[Entry] = []
        for stream, entries in reply or ():
            keys = by_stream[stream]
            for entry_id, fields in entries:
                # An entry deleted while pending reads back with no fields (None): bury it too.
                out.append(Entry(keys, entry_id, fields or {}))
        return out

    def ack(self, keys: QueueKeys, group: str, ids: list[bytes]) -> int:
        """Acknowledge and delete finished entries; return how many were still ours."""
        with _wrapped("ack failed"):
            return self.scripts.ack(keys.stream, group, ids)

    def retry_later(
        self,
        keys: QueueKeys,
        group: str,
        entry_id: bytes,
        payload: bytes,
        due_ms: int,
        now_ms: int,
    ) -> bool:
        """Ack a failed entry and schedule its next attempt, atomically."""
        with _wrapped("retry failed"):
            return self.scripts.retry(
                keys.stream, keys.delayed, group, entry_id, payload, due_ms, now_ms
            )

    def bury(self, keys: QueueKeys, group: str, entry_id: bytes, fields: dict[str, Any]) -> bool:
        """Ack an entry and add it to the dead-letter stream, atomically."""
        with _wrapped("bury failed"):
            return self.scripts.bury(keys.stream, keys.dead, group, entry_id, fields)

    def touch(self, keys: QueueKeys, group: str, consumer: str, min_idle_ms: int) -> int:
        """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
        with _wrapped("lease refresh failed"):
            try:
                return self.scripts.touch(keys.stream, group, consumer, min_idle_ms, 10_000)
            except redis.ResponseError as e:
                if _no_group(e):
                    return 0
                raise

    def release(self, keys: QueueKeys, group: str, consumer: str) -> tuple[int, bool]:
        """Requeue everything ``consumer`` still holds; drop it from the group if empty."""
        with _wrapped("release failed"):
            try:
                return self.scripts.release(keys.stream, group, consumer, 10_000)
            except redis.ResponseError as e:
                if _no_group(e):
                    return 0, True
                raise

    # -- maintenance -----------------------------------------------------------------------
    def promote_due(self, keys: QueueKeys, now_ms: int, limit: int = 500) -> tuple[int, int]:
        """Move due delayed jobs to the stream; return (moved, next due ms or -1)."""
        with _wrapped("promote failed"):
            return self.scripts.promote(keys.stream, keys.delayed, now_ms, limit)

    def reclaim_idle(
        self,
        keys: QueueKeys,
        group: str,
        min_idle_ms: int,
        cursor: bytes,
        count: int,
        max_deliveries: int,
        now_ms: int,
    ) -> ReclaimResult:
        """One reaper step over the pending list, from ``cursor``."""
        with _wrapped("reclaim failed"):
            try:
                return self.scripts.reclaim(
                    keys.stream,
                    keys.dead,
                    group,
                    REAPER_CONSUMER,
                    min_idle_ms,
                    cursor,
                    count,
                    max_deliveries,
                    now_ms,
                )
            except redis.ResponseError as e:
                if _no_group(e):
                    return ReclaimResult(b"0-0", 0, [], 0)
                raise

    def prune_consumers(self, keys: QueueKeys, group: str, min_idle_ms: int) -> list[str]:
        """Delete consumers that are long idle and own nothing."""
        with _wrapped("prune failed"):
            try:
                return self.scripts.prune(keys.stream, group, min_idle_ms)
            except redis.ResponseError as e:
                if _no_group(e):
                    return []
                raise

    # -- dead letters ----------------------------------------------------------------------
    def dead_list(self, keys: QueueKeys, start: str = "-", count: int = 100) -> list[DeadLetter]:
        """Dead letters from ``start`` (inclusive), oldest first."""
        with _wrapped("dead-letter read failed"):
            rows: Any = self.client.xrange(keys.dead, min=start, max="+", count=count)
        return [
            DeadLetter(eid.decode(), {k.decode(): v for k, v in fields.items()})
            for eid, fields in rows
        ]

    def dead_replay(self, keys: QueueKeys, moves: list[tuple[bytes, bytes]]) -> int:
        """Move (dead id, payload) pairs back to the stream atomically; return count moved."""
        with _wrapped("replay failed"):
            return self.scripts.replay(keys.dead, keys.stream, moves)

    def dead_delete(self, keys: QueueKeys, ids: list[str]) -> int:
        """Delete dead letters by id; return how many existed."""
        if not ids:
            return 0
        with _wrapped("dead-letter purge failed"):
            return int(self.client.xdel(keys.dead, *ids))

    # -- inspection ------------------------------------------------------------------------
    def stats(self, keys: QueueKeys, group: str) -> QueueStats:
        """Depth of one queue as seen by ``group``.

        XLEN is not the depth on its own: acked entries are deleted, so the stream holds what
        is queued plus what workers hold (pending).
        """
        with _wrapped("stats failed"):
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(keys.stream)
            pipe.zcard(keys.delayed)
            pipe.xlen(keys.dead)
            length, delayed, dead = pipe.execute()
            consumers: dict[str, int] = {}
            try:
                for c in self.client.xinfo_consumers(keys.stream, group):
                    name = c["name"]
                    consumers[name.decode() if isinstance(name, bytes) else name] = c["pending"]
            except redis.ResponseError:
                pass  # no stream or group yet: nothing is pending
        pending = sum(consumers.values())
        return QueueStats(
            keys.queue, int(length) - pending, pending, int(delayed), int(dead), consumers
        )

    def due_before(self, keys: QueueKeys, until_ms: int) -> int:
        """How many delayed jobs of ``keys`` are due by ``until_ms``."""
        with _wrapped("delayed count failed"):
            return int(self.client.zcount(keys.delayed, "-inf", until_ms))

    def server_info(self) -> dict[str, Any]:
        """INFO and the settings that decide whether accepted jobs survive."""
        with _wrapped("info failed"):
            info: dict[str, Any] = self.client.info()
            return info

    def config(self, names: list[str]) -> dict[str, str]:
        """CONFIG GET values that we may read; a managed Redis often forbids CONFIG."""
        out: dict[str, str] = {}
        with _wrapped("config failed"):
            for name in names:
                try:
                    got: Any = self.client.config_get(name)
                except redis.ResponseError:
                    continue  # NOPERM or renamed command
                for key, value in got.items():
                    k = key.decode() if isinstance(key, bytes) else key
                    out[k] = value.decode() if isinstance(value, bytes) else str(value)
        return out

    def has_command(self, name: str) -> bool:
        """True if the server knows ``name``: we detect features, not version strings."""
        with _wrapped("command info failed"):
            try:
                # COMMAND DOCS exists from 7.0 on, which is our floor anyway.
                reply: Any = self.client.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    "COMMAND DOCS", name
                )
            except redis.ResponseError:
                return False
        if isinstance(reply, dict):
            return any(v for v in reply.values())
        return bool(reply) and reply[0] is not None

    def reset(self) -> None:
        """Drop open connections (after an interrupted command); the next call reconnects."""
        self.client.connection_pool.disconnect()

    def ping(self) -> None:
        """Round trip to Redis; raises StreamqConnectionError when it is unreachable."""
        with _wrapped("ping failed"):
            self.client.ping()
