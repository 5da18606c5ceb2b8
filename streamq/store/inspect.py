"""Looking at the server: depth figures, settings, features, liveness.

Plans only (no I/O): :mod:`streamq.store.node` serves each as a method of ``Store``.
"""

from __future__ import annotations

from typing import Any

from streamq import scripts
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.plan import Batch, Plan, cmd, one, refused
from streamq.store.base import QueueStats, as_str


def stats_plan(keys: QueueKeys, group: str) -> Plan[QueueStats]:
    """Depth of one queue as seen by ``group``, over all priorities.

    XLEN is not the depth on its own: acked entries are deleted, so the streams hold what is
    queued plus what workers hold (pending).
    """
    ops = []
    for p in PRIORITY_LEVELS:
        ops += [cmd("XLEN", keys.stream_for(p)), cmd("ZCARD", keys.delayed_for(p))]
    ops.append(cmd("XLEN", keys.dead))
    *counts, dead = yield Batch(ops)
    infos = yield Batch([cmd("XINFO CONSUMERS", s, group) for s in keys.streams], tolerant=True)
    consumers: dict[str, int] = {}
    for info in infos:
        if refused(info):
            continue  # no stream or group yet: nothing is pending
        for c in info:
            name = as_str(c["name"])
            consumers[name] = consumers.get(name, 0) + int(c["pending"])
    pending = sum(consumers.values())
    length, delayed = sum(counts[0::2]), sum(counts[1::2])
    return QueueStats(
        keys.queue, int(length) - pending, pending, int(delayed), int(dead), consumers
    )


def busy_plan(keys: QueueKeys, horizon_ms: int) -> Plan[int]:
    """Jobs the queue still has: in its streams (queued or held by a worker) or due in its
    delayed sets by ``horizon_ms``, counted atomically (see ``lua/busy.lua``)."""
    streams = [keys.stream_for(p) for p in PRIORITY_LEVELS]
    delayed = [keys.delayed_for(p) for p in PRIORITY_LEVELS]
    return one(scripts.busy(streams, delayed, horizon_ms))


def config_plan(names: list[str]) -> Plan[dict[str, str]]:
    """CONFIG GET values that we may read; a managed Redis often forbids CONFIG."""
    if not names:
        return {}
    replies = yield Batch([cmd("CONFIG GET", n) for n in names], tolerant=True)
    out: dict[str, str] = {}
    for got in replies:
        if refused(got):
            continue  # NOPERM or renamed command
        for key, value in got.items():
            out[as_str(key)] = as_str(value)
    return out


def has_command_plan(name: str) -> Plan[bool]:
    """True if the server knows ``name``: we detect features, not version strings."""
    # COMMAND DOCS exists from 7.0 on, which is our floor anyway.
    (reply,) = yield Batch([cmd("COMMAND DOCS", name)], tolerant=True)
    if refused(reply):
        return False
    if isinstance(reply, dict):
        return any(v for v in reply.values())
    return bool(reply) and reply[0] is not None


def server_info_plan() -> Plan[dict[str, Any]]:
    """INFO: the server's version, role and the settings that decide what survives a crash."""
    (info,) = yield Batch([cmd("INFO")])
    result: dict[str, Any] = info
    return result


def ping_plan() -> Plan[None]:
    """One round trip."""
    yield Batch([cmd("PING")])
