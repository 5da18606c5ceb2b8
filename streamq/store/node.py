"""The executor for one Redis server (redis-py, blocking): sends a plan's batches, in order.

A batch of one command is one call; a larger batch is one non-transactional pipeline. Scripts
go as EVALSHA; a server that answers NOSCRIPT (a restart, or a failover to a replica whose
script cache is empty) gets the script loaded and only the refused calls sent again, which
is safe because a NOSCRIPT call did not run. Redis errors are wrapped at this boundary.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from streamq.errors import RedisCommandError, StreamqConnectionError
from streamq.plan import Batch, Op, Plan
from streamq.scripts import SCRIPT_NAMES, source

T = TypeVar("T")
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, socket.error)


@contextmanager
def wrapped(what: str) -> Iterator[None]:
    """Wrap redis-py's errors raised inside as streamq errors prefixed with ``what``."""
    try:
        yield
    except _CONN_ERRORS as e:
        raise StreamqConnectionError(f"{what}: {type(e).__name__}: {e}") from e
    except redis.ResponseError as e:
        raise RedisCommandError(f"{what}: {e}") from e


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
            try:
                batch = next(plan)
                while True:
                    batch = plan.send(self._send(batch, what))
            except StopIteration as stop:
                result: T = stop.value
                return result

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
        errors = [r for r in replies if isinstance(r, redis.ResponseError)]
        if not errors:
            return replies
        if not batch.tolerant:
            raise errors[0]
        return [
            RedisCommandError(f"{what}: {r}") if isinstance(r, redis.ResponseError) else r
            for r in replies
        ]

    def _call(self, op: Op) -> Any:
        if op.script:
            return self._scripts[op.script](keys=list(op.keys), args=list(op.args))
        return self.client.execute_command(*op.args)  # type: ignore[no-untyped-call]  # untyped in redis-py

    def _pipeline(self, ops: Sequence[Op]) -> list[Any]:
        replies = self._pipe(ops)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
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
                pipe.execute_command(*op.args)  # type: ignore[no-untyped-call]  # untyped in redis-py
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies
