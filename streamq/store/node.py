"""The store on one Redis server (redis-py, blocking): an executor that sends a plan's
batches in order, and :class:`Store`, every verb served through it.

A batch of one command is one call; a larger batch is one non-transactional pipeline. Scripts
go as EVALSHA; a server that answers NOSCRIPT (a restart, or a failover to a replica whose
script cache is empty) gets the script loaded and only the refused calls sent again, which
is safe because a NOSCRIPT call did not run. Redis errors are wrapped at this boundary.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.commands.core import Script
from redis.exceptions import (
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    InvalidResponse,
    NoPermissionError,
    NoScriptError,
)

from streamq.errors import (
    RedisCommandError,
    RedisSetupError,
    StreamqConnectionError,
    StreamqError,
)
from streamq.keys import QueueKeys
from streamq.plan import Batch, Op, Plan, drive
from streamq.scripts import SCRIPT_NAMES, source
from streamq.store import inspect, queue, records, schedules, upkeep, views
from streamq.store.listener import DoneListener

P = ParamSpec("P")
T = TypeVar("T")
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


def setup_error(what: str, e: Exception) -> RedisSetupError | None:
    """The :class:`RedisSetupError` for ``e`` if it is a credentials, permission or protocol
    mistake, else None."""
    for kind, cause, text in _SETUP_ERRORS:
        if isinstance(e, kind):
            return RedisSetupError(cause, f"{what}: {text}: {type(e).__name__}: {e}")
    return None


# Told the kind of every Redis error this process wraps: "setup", "timeout", "connection" or
# "command". Process-wide on purpose (every store of a process wraps its errors below): a
# pool's metrics append their counter of streamq_redis_errors_total here; empty otherwise.
ERROR_OBSERVERS: list[Callable[[str], None]] = []


def _observe(kind: str) -> None:
    for observer in ERROR_OBSERVERS:
        observer(kind)


@contextmanager
def wrapped(what: str) -> Iterator[None]:
    """Wrap redis-py's errors raised inside as streamq errors prefixed with ``what`` (see
    :mod:`streamq.errors`); one table for every executor."""
    try:
        yield
    except StreamqError:
        raise  # already ours: raised by a plan, or a verb inside another verb's block
    except _SETUP_KINDS as e:
        error = setup_error(what, e)
        _observe("setup" if error else "command")
        raise (error or RedisCommandError(f"{what}: {e}")) from e
    except _CONN_ERRORS as e:
        _observe("timeout" if isinstance(e, redis.TimeoutError | TimeoutError) else "connection")
        raise StreamqConnectionError(f"{what}: {type(e).__name__}: {e}") from e
    except redis.ResponseError as e:
        _observe("command")
        raise RedisCommandError(f"{what}: {e}") from e


def judge(replies: list[Any], tolerant: bool, what: str) -> list[Any]:
    """A batch's replies for its plan: refusals raised, or (``tolerant``) handed over as
    :class:`RedisCommandError` values. Shared by every executor."""
    errors = [r for r in replies if isinstance(r, redis.ResponseError)]
    if not errors:
        return replies
    if not tolerant:
        raise errors[0]
    return [
        RedisCommandError(f"{what}: {r}") if isinstance(r, redis.ResponseError) else r
        for r in replies
    ]


def noscript(replies: list[Any]) -> list[int]:
    """Indexes of the pipelined calls refused with NOSCRIPT (they did not run)."""
    return [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]


class NodeExecutor:
    """Runs plans against one ``redis.Redis`` client; safe within a thread, not across forks."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {
            name: client.register_script(source(name)) for name in SCRIPT_NAMES
        }

    def run(self, plan: Plan[T], what: str) -> T:
        """Drive ``plan`` to its result; ``what`` prefixes any error ("enqueue failed")."""
        with wrapped(what):
            return drive(plan, lambda batch: self._send(batch, what))

    def _send(self, batch: Batch, what: str) -> list[Any]:
        ops = batch.ops
        if len(ops) == 1:
            try:
                replies = [self._call(ops[0])]
            except redis.ResponseError as e:
                if not batch.tolerant:
                    raise
                replies = [e]
        else:
            replies = self._pipeline(ops)
        return judge(replies, batch.tolerant, what)

    def _call(self, op: Op) -> Any:
        if op.script:
            return self._scripts[op.script](keys=list(op.keys), args=list(op.args))
        return self.client.execute_command(*op.args, **dict(op.options))  # type: ignore[no-untyped-call]  # untyped in redis-py

    def _pipeline(self, ops: Sequence[Op]) -> list[Any]:
        replies = self._pipe(ops)
        missing = noscript(replies)
        if missing:
            for name in {ops[i].script for i in missing}:
                self.client.script_load(self._scripts[name].script)
            for i, reply in zip(missing, self._pipe([ops[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    def _pipe(self, ops: Sequence[Op]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for op in ops:
            if op.script:
                sha = self._scripts[op.script].sha
                pipe.evalsha(sha, len(op.keys), *op.keys, *op.args)
            else:
                pipe.execute_command(*op.args, **dict(op.options))  # type: ignore[no-untyped-call]  # untyped in redis-py
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies


class _Base:
    """One client, its executor and its result listener (started on the first wait)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._exec = NodeExecutor(client)
        self.listener = DoneListener(client)

    def _run(self, plan: Plan[T], what: str) -> T:
        return self._exec.run(plan, what)


def _verb(plan: Callable[P, Plan[T]], what: str) -> Callable[Concatenate[_Base, P], T]:
    """A method that runs ``plan`` with the caller's arguments; ``what`` names its errors."""

    def method(self: _Base, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(plan(*args, **kwargs), what)

    method.__name__ = plan.__name__.removesuffix("_plan")
    method.__doc__ = plan.__doc__
    return method


class Store(_Base):
    """Every queue verb over one Redis client; safe to share within a thread, not across forks.

    Each verb is the plan of the same name (``streamq.store.queue.enqueue_plan`` ...) run by
    this client's executor; see the plans for what each does.
    """

    # producing and consuming
    enqueue = _verb(queue.enqueue_plan, "enqueue failed")
    add = _verb(queue.add_plan, "enqueue failed")
    ensure_group = _verb(queue.ensure_group_plan, "group create failed")
    read = _verb(queue.read_plan, "read failed")
    entry = _verb(queue.entry_plan, "entry read failed")
    start = _verb(queue.start_plan, "start failed")
    ack = _verb(queue.ack_plan, "ack failed")
    bury = _verb(queue.bury_plan, "bury failed")
    touch = _verb(queue.touch_plan, "lease refresh failed")
    release = _verb(queue.release_plan, "release failed")
    # upkeep
    promote_due = _verb(upkeep.promote_due_plan, "promote failed")
    reclaim_idle = _verb(upkeep.reclaim_idle_plan, "reclaim failed")
    settle = _verb(upkeep.settle_plan, "settle failed")
    prune_consumers = _verb(upkeep.prune_consumers_plan, "prune failed")
    # job records and dead letters
    job_record = _verb(records.job_record_plan, "job lookup failed")
    set_progress = _verb(records.set_progress_plan, "progress failed")
    cancel = _verb(records.cancel_plan, "cancel failed")
    cancels = _verb(records.cancels_plan, "cancel list failed")
    forget_cancel = _verb(records.forget_cancel_plan, "cancel cleanup failed")
    dead_list = _verb(records.dead_list_plan, "dead-letter read failed")
    dead_replay = _verb(records.dead_replay_plan, "replay failed")
    dead_delete = _verb(records.dead_delete_plan, "dead-letter purge failed")
    # inspection
    stats = _verb(inspect.stats_plan, "stats failed")
    busy = _verb(inspect.busy_plan, "busy count failed")
    gauges = _verb(views.gauges_plan, "gauges failed")
    server_info = _verb(inspect.server_info_plan, "info failed")
    config = _verb(inspect.config_plan, "config failed")
    has_command = _verb(inspect.has_command_plan, "command info failed")
    ping = _verb(inspect.ping_plan, "ping failed")
    # views for people: the dashboard, `streamq info`, the metrics exporter
    throughput = _verb(views.throughput_plan, "throughput read failed")
    depth = _verb(views.depth_plan, "depth read failed")
    pending = _verb(views.pending_plan, "pending read failed")
    delayed_page = _verb(views.delayed_page_plan, "delayed read failed")
    dead_recent = _verb(views.dead_recent_plan, "dead-letter read failed")
    job_fields = _verb(views.job_fields_plan, "job lookup failed")
    # periodic schedules
    define_schedule = _verb(schedules.define_schedule_plan, "schedule write failed")
    schedules_due = _verb(schedules.schedules_due_plan, "schedule poll failed")
    schedule_record = _verb(schedules.schedule_record_plan, "schedule read failed")
    schedule_records = _verb(schedules.schedule_records_plan, "schedule read failed")
    schedule_ids = _verb(schedules.schedule_ids_plan, "schedule list failed")
    schedule_queues = _verb(schedules.schedule_queues_plan, "schedule list failed")
    schedule_ticks = _verb(schedules.schedule_ticks_plan, "schedule tick failed")
    pause_schedule = _verb(schedules.pause_schedule_plan, "schedule pause failed")
    undefine_schedule = _verb(schedules.undefine_schedule_plan, "schedule removal failed")

    def wait_done(
        self, keys: QueueKeys, job_id: str, timeout_s: float, is_done: Callable[[], bool]
    ) -> bool:
        """Block (pub/sub, no polling) until the job is final or ``timeout_s`` passes.

        Waits through this process's one shared listener (:mod:`streamq.store.listener`), so
        many waiting threads hold one connection, not one each. ``is_done`` is checked after
        registering and again on every wake-up, so a finish in between is not missed.
        """
        return self.listener.wait(keys.done_channel(job_id), timeout_s, is_done)

    def reset(self) -> None:
        """Drop open connections (after an interrupted command); the next call reconnects."""
        self.client.connection_pool.disconnect()
