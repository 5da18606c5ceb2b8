"""The executor for Redis Cluster (redis-py's ``RedisCluster``): the same plans, routed by slot.

Every script and command of a plan touches one queue's keys, which share a hash tag, so each
op goes to the primary owning that slot; redis-py follows MOVED and ASK redirections and
refreshes its slot map after a failover, and a registered script is loaded on every primary
when a node answers NOSCRIPT. Keyless commands (INFO, PING, CONFIG GET, COMMAND DOCS) go to the
default node.

Ops of a batch are sent one after another for now (a cluster pipeline refuses EVALSHA);
pipelining per node is the next step (docs/design.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from streamq.plan import Batch, Op, Plan, drive
from streamq.scripts import SCRIPT_NAMES, source
from streamq.store.node import judge, wrapped

T = TypeVar("T")

KEYLESS = frozenset({"INFO", "PING", "CONFIG GET", "COMMAND DOCS"})


class ClusterExecutor:
    """Runs plans against one ``RedisCluster`` client; safe within a thread, not across forks."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {
            name: client.register_script(source(name)) for name in SCRIPT_NAMES
        }

    def run(self, plan: Plan[T], what: str) -> T:
        """Drive ``plan`` to its result; ``what`` prefixes any error ("enqueue failed")."""
        with wrapped(what):
            return drive(plan, lambda batch: self._send(batch, what))

    def _send(self, batch: Batch, what: str) -> list[Any]:
        replies: list[Any] = []
        for op in batch.ops:
            try:
                replies.append(self._call(op))
            except redis.ResponseError as e:
                if not batch.tolerant:
                    raise
                replies.append(e)
        return judge(replies, batch.tolerant, what)

    def _call(self, op: Op) -> Any:
        if op.script:
            return self._scripts[op.script](keys=list(op.keys), args=list(op.args))
        send: Callable[..., Any] = self.client.execute_command
        if op.args[0] in KEYLESS:
            node = self.client.get_default_node()  # type: ignore[no-untyped-call]  # untyped in redis-py
            return send(*op.args, target_nodes=node)
        return send(*op.args)
