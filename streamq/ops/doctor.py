"""Checks of the Redis server's settings that decide whether streamq's guarantees hold."""

from __future__ import annotations

from dataclasses import dataclass

from streamq.settings import AppSettings
from streamq.store import Store

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict, with what to do about it."""

    level: str
    check: str
    message: str


def diagnose(store: Store, settings: AppSettings, block_ms: int = 1000) -> list[Finding]:
    """Look at the server and the client settings; return one finding per check."""
    info = store.server_info()
    config = store.config(["maxmemory-policy", "appendonly", "appendfsync", "save"])
    out: list[Finding] = []
    policy = str(info.get("maxmemory_policy") or config.get("maxmemory-policy") or "")
    if policy and policy != "noeviction":
        out.append(
            Finding(
                WARN,
                "maxmemory-policy",
                f"is {policy}: under memory pressure Redis "
                "may evict queues and lose jobs; set it to noeviction",
            )
        )
    else:
        out.append(Finding(OK, "maxmemory-policy", policy or "noeviction"))
    aof = str(info.get("aof_enabled", config.get("appendonly", ""))) in ("1", "yes")
    save = config.get("save")
    if not aof and "save" not in config:
        out.append(
            Finding(
                WARN,
                "persistence",
                "AOF off; RDB schedule unknown (CONFIG GET "
                "not permitted): a crash loses at least the jobs since the last "
                "snapshot; enable appendonly",
            )
        )
    elif not aof and not save:
        out.append(
            Finding(
                WARN,
                "persistence",
                "no AOF and no RDB snapshots: a Redis restart "
                "loses every queued job; enable appendonly",
            )
        )
    elif not aof:
        out.append(
            Finding(
                WARN,
                "persistence",
                "RDB snapshots only: a crash loses the jobs "
                "accepted since the last snapshot; enable appendonly",
            )
        )
    else:
        fsync = config.get("appendfsync", "unknown (CONFIG GET not permitted)")
        level = OK if fsync == "always" else WARN
        out.append(
            Finding(
                level,
                "persistence",
                f"appendonly yes, appendfsync {fsync}"
                + (
                    ""
                    if level == OK
                    else ": up to ~1 s of accepted jobs can be lost "
                    "on a power failure; 'always' closes that window"
                ),
            )
        )
    if int(info.get("cluster_enabled", 0) or 0):
        out.append(
            Finding(
                WARN,
                "cluster",
                "Redis Cluster is not supported by the client yet (keys are hash-tagged for it)",
            )
        )
    if not store.has_command("xautoclaim") or not store.has_command("function"):
        out.append(
            Finding(
                FAIL,
                "server",
                "needs Redis >= 7.0 or Valkey (XAUTOCLAIM's deleted-ids reply, XINFO lag)",
            )
        )
    else:
        out.append(Finding(OK, "server", f"redis_version {info.get('redis_version', '?')}"))
    if settings.socket_timeout_s * 1000 <= block_ms:
        out.append(
            Finding(
                WARN,
                "socket-timeout",
                f"socket_timeout_s {settings.socket_timeout_s}"
                f" <= blocking read {block_ms} ms; workers raise theirs, other "
                "clients would time out on every idle read",
            )
        )
    return out
