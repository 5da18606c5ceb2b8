"""The only module that talks to Redis: queue verbs over streams, sorted sets and scripts.

It narrows redis-py's loosely typed replies to real types and wraps connection failures in
:class:`StreamqConnectionError`, so nothing above it imports ``redis``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamq.errors import ConfigError, RedisCommandError, StreamqConnectionError
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.scripts import Finished, ReclaimResult, Scripts
from streamq.settings import TlsSettings

REAPER_CONSUMER = "streamq-reaper"
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, socket.error)


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


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    try:
        yield
    except _CONN_ERRORS as e:
        raise StreamqConnectionError(f"{what}: {type(e).__name__}: {e}") from e
    except redis.ResponseError as e:
        raise RedisCommandError(f"{what}: {e}") from e


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue: where it goes, its id and task, its bytes, when it is due."""

    keys: QueueKeys
    job_id: str
    task: str
    priority: int
    payload: bytes
    due_ms: int = 0  # 0: now, onto the stream; else into the delayed set


class Store:
    """Queue verbs for one Redis client; safe to share within a thread, not across forks."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.scripts = Scripts(client)

    # -- producing -------------------------------------------------------------------------
    def enqueue(
        self, jobs: Sequence[NewJob], now_ms: int, window_ms: int = 0
    ) -> list[tuple[bool, str]]:
        """Record and add jobs in one script call; per job (created, entry id or its state).

        Idempotent per job id, so resending after a lost reply never duplicates a job.
        """
        rows = [
            (
                j.keys.job(j.job_id),
                j.keys.delayed_for(j.priority) if j.due_ms else j.keys.stream_for(j.priority),
                j.job_id,
                j.payload,
                j.due_ms,
                j.task,
            )
            for j in jobs
        ]
        with _wrapped("enqueue failed"):
            return self.scripts.enqueue(rows, now_ms, window_ms)

    def add(self, jobs: Sequence[NewJob]) -> list[str]:
        """XADD (or ZADD, when delayed) jobs that keep no record, pipelined; no dedup."""
        with _wrapped("enqueue failed"):
            pipe = self.client.pipeline(transaction=False)
            for j in jobs:
                if j.due_ms:
                    pipe.zadd(j.keys.delayed_for(j.priority), {j.payload: j.due_ms})
                else:
                    pipe.xadd(j.keys.stream_for(j.priority), {b"j": j.payload})
            replies: list[Any] = pipe.execute()
        return [r.decode() if isinstance(r, bytes) else "" for r in replies]

    # -- consuming -------------------------------------------------------------------------
    def ensure_group(self, keys: QueueKeys, group: str) -> None:
        """Create the group on every priority stream if missing; start from the first entry."""
        with _wrapped("group create failed"):
            for stream in keys.streams:
                try:
                    self.client.xgroup_create(stream, group, id="0", mkstream=True)
                except redis.ResponseError as e:
                    if "BUSYGROUP" not in str(e):
                        raise

    def groups(self, keys: QueueKeys) -> list[str]:
        """Names of the consumer groups on the queue's streams."""
        names: set[str] = set()
        with _wrapped("group list failed"):
            for stream in keys.streams:
                try:
                    info: Any = self.client.xinfo_groups(stream)
                except redis.ResponseError:
                    continue  # no stream yet
                names.update(_str(g["name"]) for g in info)
        return sorted(names)

    def read(
        self,
        streams: Sequence[tuple[QueueKeys, int]],
        group: str,
        consumer: str,
        count: int,
        block_ms: int | None,
        own: bool = False,
    ) -> list[Entry]:
        """XREADGROUP new entries of (queue, priority) streams (``own``: our pending ones).

        Entries come back highest priority first. ``block_ms=None`` does not block.
        Recreates the group if Redis lost it (a restart without persistence).
        """
        by_stream = {k.stream_for(p).encode(): (k, p) for k, p in streams}
        names: dict[Any, Any] = {k.stream_for(p): "0" if own else ">" for k, p in streams}
        with _wrapped("read failed"):
            try:
                reply: Any = self.client.xreadgroup(
                    group, consumer, names, count=count, block=block_ms
                )
            except redis.ResponseError as e:
                if not _no_group(e):
                    raise
                for keys in {k for k, _ in streams}:
                    self.ensure_group(keys, group)
                return []
        out: list[Entry] = []
        for stream, entries in reply or ():
            keys, priority = by_stream[stream]
            # An entry deleted while pending reads back with no fields (None): bury it too.
            out += [Entry(keys, priority, eid, fields or {}) for eid, fields in entries]
        if reply and len(reply) > 1:
            out.sort(key=lambda e: -e.priority)  # stable: stream order within a level
        return out

    def entry(self, keys: QueueKeys, priority: int, entry_id: bytes) -> Entry | None:
        """One stream entry by id, or None once it is gone (acked, moved)."""
        with _wrapped("entry read failed"):
            rows: Any = self.client.xrange(keys.stream_for(priority), entry_id, entry_id)
        return Entry(keys, priority, rows[0][0], rows[0][1]) if rows else None

    def start(
        self,
        group: str,
        worker: str,
        now_ms: int,
        batch: Sequence[Entry],
        job_ids: Sequence[str],
        attempts: Sequence[int],
    ) -> list[bool]:
        """Mark a batch as running; False for entries cancelled meanwhile (already dropped).

        One script call per queue, so every key of a call shares the queue's hash tag.
        """
        by_queue: dict[QueueKeys, list[int]] = {}
        for i, e in enumerate(batch):
            by_queue.setdefault(e.keys, []).append(i)
        go = [True] * len(batch)
        with _wrapped("start failed"):
            for keys, idx in by_queue.items():
                rows = [
                    (batch[i].stream, keys.job(job_ids[i]), batch[i].id, attempts[i], job_ids[i])
                    for i in idx
                ]
                res = self.scripts.start(
                    keys.cancels, keys.done_prefix, group, worker, now_ms, rows
                )
                for i, ok in zip(idx, res, strict=True):
                    go[i] = ok
        return go

    def ack(
        self, keys: QueueKeys, priority: int, group: str, now_ms: int, done: Sequence[Finished]
    ) -> int:
        """Acknowledge, delete and record finished entries of one stream; return how many
        were still ours."""
        acked = 0
        with _wrapped("ack failed"):
            for i in range(0, len(done), 1000):  # Lua's unpack() has a stack limit
                acked += self.scripts.ack(
                    keys.cancels,
                    keys.stream_for(priority),
                    keys.done_prefix,
                    group,
                    now_ms,
                    done[i : i + 1000],
                )
        return acked

    def retry_later(
        self,
        entry: Entry,
        group: str,
        job_id: str,
        payload: bytes,
        due_ms: int,
        now_ms: int,
        error: tuple[str, str, str],
    ) -> bool:
        """Ack a failed entry and schedule its next attempt (same priority), atomically."""
        k = entry.keys
        keys = (entry.stream, k.delayed_for(entry.priority), k.job(job_id))
        with _wrapped("retry failed"):
            return self.scripts.retry(
                keys,
                group,
                entry.id,
                payload,
                due_ms,
                now_ms,
                error,
                k.done_channel(job_id),
                86_400_000,
            )

    def bury(
        self,
        entry: Entry,
        group: str,
        job_id: str,
        now_ms: int,
        ttl_ms: int,
        fields: dict[str, Any],
    ) -> bool:
        """Ack an entry, add it to the dead-letter stream and mark its job dead, atomically."""
        k = entry.keys
        # No job id (an undecodable entry): a placeholder key no job can have (ids are 1+ chars).
        keys = (entry.stream, k.dead, k.job(job_id))
        with _wrapped("bury failed"):
            return self.scripts.bury(
                keys, group, entry.id, now_ms, ttl_ms, k.done_channel(job_id), fields
            )

    def touch(self, keys: QueueKeys, group: str, consumer: str, min_idle_ms: int) -> int:
        """Refresh the lease of ``consumer``'s entries idle at least ``min_idle_ms``."""
        n = 0
        with _wrapped("lease refresh failed"):
            for stream in keys.streams:
                try:
                    n += self.scripts.touch(stream, group, consumer, min_idle_ms, 10_000)
                except redis.ResponseError as e:
                    if not _no_group(e):
                        raise
        return n

    def release(self, keys: QueueKeys, group: str, consumer: str) -> int:
        """Requeue everything ``consumer`` still holds; drop it from the group if empty."""
        n = 0
        with _wrapped("release failed"):
            for stream in keys.streams:
                try:
                    n += self.scripts.release(stream, group, consumer, 10_000)[0]
                except redis.ResponseError as e:
                    if not _no_group(e):
                        raise
        return n

    # -- maintenance -----------------------------------------------------------------------
    def promote_due(self, keys: QueueKeys, now_ms: int, limit: int = 500) -> tuple[int, int]:
        """Move due delayed jobs to their streams; return (moved, next due ms or -1)."""
        moved, nxt = 0, -1
        with _wrapped("promote failed"):
            for p in PRIORITY_LEVELS:
                m, n = self.scripts.promote(keys.stream_for(p), keys.delayed_for(p), now_ms, limit)
                moved += m
                if n >= 0 and (nxt < 0 or n < nxt):
                    nxt = n
        return moved, nxt

    def reclaim_idle(
        self,
        keys: QueueKeys,
        stream: str,
        group: str,
        min_idle_ms: int,
        cursor: bytes,
        count: int,
        max_deliveries: int,
        now_ms: int,
        dead_consumer: str = "",
    ) -> ReclaimResult:
        """One reaper step over one stream's pending list, from ``cursor``; or, given
        ``dead_consumer``, everything that consumer holds there."""
        with _wrapped("reclaim failed"):
            try:
                return self.scripts.reclaim(
                    stream,
                    keys.dead,
                    group,
                    REAPER_CONSUMER,
                    min_idle_ms,
                    cursor,
                    count,
                    max_deliveries,
                    now_ms,
                    dead_consumer,
                )
            except redis.ResponseError as e:
                if _no_group(e):
                    return ReclaimResult(b"0-0", 0, [], [])
                raise

    def settle(self, keys: QueueKeys, result: ReclaimResult, now_ms: int, ttl_ms: int) -> int:
        """Record on their jobs what a reclaim step did (requeued or dead)."""
        moves = [
            (keys.job(m.job_id), m.old_id, "queued", keys.done_channel(m.job_id), "")
            for m in result.requeued
            if m.job_id
        ] + [
            (keys.job(m.job_id), m.old_id, "dead", keys.done_channel(m.job_id), m.dead_id)
            for m in result.buried
            if m.job_id
        ]
        if not moves:
            return 0
        with _wrapped("settle failed"):
            return self.scripts.settle(now_ms, ttl_ms, moves)

    def prune_consumers(self, keys: QueueKeys, group: str, min_idle_ms: int) -> list[str]:
        """Delete consumers that are long idle and own nothing."""
        gone: list[str] = []
        with _wrapped("prune failed"):
            for stream in keys.streams:
                try:
                    gone += self.scripts.prune(stream, group, min_idle_ms)
                except redis.ResponseError as e:
                    if not _no_group(e):
                        raise
        return gone

    # -- jobs ------------------------------------------------------------------------------
    def job_record(self, keys: QueueKeys, job_id: str) -> dict[str, bytes]:
        """The job's hash (empty when it expired or never existed)."""
        with _wrapped("job lookup failed"):
            raw: Any = self.client.hgetall(keys.job(job_id))
        return {_str(k): v for k, v in raw.items()}

    def set_progress(self, keys: QueueKeys, job_id: str, progress: float, note: str) -> None:
        """Store a running job's progress (0..1) and a note, for its handle to read."""
        with _wrapped("progress failed"):
            self.client.hset(keys.job(job_id), mapping={"progress": progress, "note": note})

    def cancel(self, keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> str:
        """Cancel a job; see ``lua/cancel.lua`` for what each outcome means."""
        with _wrapped("cancel failed"):
            return self.scripts.cancel(
                keys.job(job_id), keys.cancels, job_id, now_ms, ttl_ms, keys.done_channel(job_id)
            )

    def cancels(self, keys: QueueKeys) -> set[str]:
        """Ids of running jobs whose cancellation was asked for."""
        with _wrapped("cancel list failed"):
            raw: Any = self.client.smembers(keys.cancels)
        return {_str(m) for m in raw}

    def forget_cancel(self, keys: QueueKeys, job_id: str) -> None:
        """Drop a cancel request whose job is no longer running anywhere."""
        with _wrapped("cancel cleanup failed"):
            self.client.srem(keys.cancels, job_id)

    def wait_done(
        self, keys: QueueKeys, job_id: str, timeout_s: float, is_done: Callable[[], bool]
    ) -> bool:
        """Block (pub/sub, no polling) until the job is final or ``timeout_s`` passes.

        Subscribes first and checks ``is_done`` after, so a finish in between is not missed.
        """
        deadline = time.monotonic() + timeout_s
        with _wrapped("result wait failed"):
            pubsub = self.client.pubsub(  # type: ignore[no-untyped-call]  # untyped in redis-py
                ignore_subscribe_messages=True
            )
            try:
                pubsub.subscribe(keys.done_channel(job_id))
                while True:
                    if is_done():
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    pubsub.get_message(timeout=left)
            finally:
                pubsub.close()

    # -- dead letters ----------------------------------------------------------------------
    def dead_list(self, keys: QueueKeys, start: str = "-", count: int = 100) -> list[DeadLetter]:
        """Dead letters from ``start`` (inclusive), oldest first."""
        with _wrapped("dead-letter read failed"):
            rows: Any = self.client.xrange(keys.dead, min=start, max="+", count=count)
        return [
            DeadLetter(eid.decode(), {k.decode(): v for k, v in fields.items()})
            for eid, fields in rows
        ]

    def dead_replay(
        self,
        keys: QueueKeys,
        priority: int,
        now_ms: int,
        moves: Sequence[tuple[bytes, bytes, str, str]],
    ) -> int:
        """Move (dead id, payload, job id, task) back to the stream atomically; return count."""
        rows = [(keys.job(jid), did, payload, jid, task) for did, payload, jid, task in moves]
        with _wrapped("replay failed"):
            return self.scripts.replay(keys.dead, keys.stream_for(priority), now_ms, rows)

    def dead_delete(self, keys: QueueKeys, ids: list[str]) -> int:
        """Delete dead letters by id; return how many existed."""
        if not ids:
            return 0
        with _wrapped("dead-letter purge failed"):
            return int(self.client.xdel(keys.dead, *ids))

    # -- inspection ------------------------------------------------------------------------
    def stats(self, keys: QueueKeys, group: str) -> QueueStats:
        """Depth of one queue as seen by ``group``, over all priorities.

        XLEN is not the depth on its own: acked entries are deleted, so the streams hold what
        is queued plus what workers hold (pending).
        """
        with _wrapped("stats failed"):
            pipe = self.client.pipeline(transaction=False)
            for p in PRIORITY_LEVELS:
                pipe.xlen(keys.stream_for(p))
                pipe.zcard(keys.delayed_for(p))
            pipe.xlen(keys.dead)
            *counts, dead = pipe.execute()
            consumers: dict[str, int] = {}
            for stream in keys.streams:
                try:
                    for c in self.client.xinfo_consumers(stream, group):
                        name = _str(c["name"])
                        consumers[name] = consumers.get(name, 0) + int(c["pending"])
                except redis.ResponseError:
                    pass  # no stream or group yet: nothing is pending
        pending = sum(consumers.values())
        length, delayed = sum(counts[0::2]), sum(counts[1::2])
        return QueueStats(
            keys.queue, int(length) - pending, pending, int(delayed), int(dead), consumers
        )

    def due_before(self, keys: QueueKeys, until_ms: int) -> int:
        """How many delayed jobs of ``keys`` are due by ``until_ms``."""
        with _wrapped("delayed count failed"):
            return sum(
                int(self.client.zcount(keys.delayed_for(p), "-inf", until_ms))
                for p in PRIORITY_LEVELS
            )

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
