"""Local Redis Cluster and Sentinel set-ups of private servers, for tests and benchmarks.

Each is built from :class:`~streamq.testing.server.RedisServer` processes on free ports (they
die with us). The cluster is formed with CLUSTER ADDSLOTSRANGE / MEET / REPLICATE (Redis 7.0+
and Valkey), so no ``redis-cli`` is needed.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from types import TracebackType

import redis

from streamq.testing.server import RedisServer, find_server, free_port, wait_until

SLOTS = 16384


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


class ClusterServer:
    """A cluster of ``primaries`` primaries with ``replicas`` replicas each.

    Args:
        binary: server path; default :func:`find_server`.
        primaries: primaries, each owning an equal range of slots.
        replicas: replicas per primary.
        node_timeout_ms: ``cluster-node-timeout``: how soon a dead primary is failed over.
        args: extra arguments for every node (e.g. ``["--appendonly", "yes"]``).
    """

    def __init__(
        self,
        binary: str | None = None,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary or find_server()
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.args = args
        self.nodes: list[RedisServer] = []
        self._bus_port = 0  # the first node's cluster bus port, for CLUSTER MEET
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL naming every node as a seed."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{seeds}"

    def start(self, timeout_s: float = 30.0) -> ClusterServer:
        """Start every node, assign the slots, join them, attach the replicas, wait until OK."""
        self._tmp = tempfile.TemporaryDirectory(prefix="streamq-cluster-")
        for i in range(self.primaries * (1 + self.replicas)):
            data = Path(self._tmp.name) / f"n{i}"
            data.mkdir()
            bus = free_port()
            self._bus_port = self._bus_port or bus
            node = RedisServer(
                self.binary,
                args=[
                    "--cluster-enabled",
                    "yes",
                    # The bus port defaults to port + 10000, past 65535 for a high free port.
                    "--cluster-port",
                    str(bus),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    *self.args,
                ],
                data_dir=str(data),
            )
            self.nodes.append(node.start())
        self._form(timeout_s)
        return self

    def _form(self, timeout_s: float) -> None:
        first = self.nodes[0].port
        per = SLOTS // self.primaries
        for i, node in enumerate(self.nodes[: self.primaries]):
            end = SLOTS - 1 if i == self.primaries - 1 else (i + 1) * per - 1
            with contextlib.closing(_client(node.port)) as c:
                c.execute_command("CLUSTER ADDSLOTSRANGE", i * per, end)  # type: ignore[no-untyped-call]  # untyped in redis-py
        for node in self.nodes[1:]:
            with contextlib.closing(_client(node.port)) as c:
                c.execute_command("CLUSTER MEET", "127.0.0.1", first, self._bus_port)  # type: ignore[no-untyped-call]  # untyped in redis-py
        wait_until(lambda: self._known() == len(self.nodes), timeout_s, 0.05, "nodes joined")
        for r, node in enumerate(self.nodes[self.primaries :]):
            primary = self.nodes[r % self.primaries]
            with contextlib.closing(_client(primary.port)) as c:
                node_id = c.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]  # untyped in redis-py
            with contextlib.closing(_client(node.port)) as c:
                wait_until(
                    lambda c=c, node_id=node_id: self._replicate(c, node_id),  # type: ignore[misc]
                    timeout_s,
                    0.05,
                    "replica attached",
                )
        wait_until(self.ok, timeout_s, 0.05, "cluster_state:ok on every node")

    def _known(self) -> int:
        with contextlib.closing(_client(self.nodes[0].port)) as c:
            nodes = c.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]  # untyped in redis-py
        # redis-py parses CLUSTER NODES into {"ip:port@bus": {"connected": bool, ...}}.
        return sum(1 for node in nodes.values() if node.get("connected"))

    @staticmethod
    def _replicate(client: redis.Redis, node_id: bytes | str) -> bool:
        try:
            client.execute_command("CLUSTER REPLICATE", node_id)  # type: ignore[no-untyped-call]  # untyped in redis-py
        except redis.ResponseError:
            return False  # the primary is not known to this node yet
        return True

    def ok(self) -> bool:
        """True when every live node says ``cluster_state:ok`` and sees all nodes."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                with contextlib.closing(_client(node.port)) as c:
                    info = c.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]  # untyped in redis-py
            except redis.RedisError:
                return False
            # redis-py parses CLUSTER INFO into a dict of strings.
            if info.get("cluster_state") != "ok":
                return False
        return True

    def primary_ports(self) -> list[int]:
        """Ports of the nodes that are primaries now (after failovers, too)."""
        out = []
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            with contextlib.closing(_client(node.port)) as c:
                role = c.execute_command("ROLE")  # type: ignore[no-untyped-call]  # untyped in redis-py
            if role[0] in (b"master", "master"):
                out.append(node.port)
        return out

    def stop(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ClusterServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SentinelServer:
    """One primary, ``replicas`` replicas and ``sentinels`` sentinels watching service ``name``.

    Args:
        binary: server path; default :func:`find_server` (the same binary runs sentinels).
        down_after_ms: how long the primary may be silent before it is judged down.
    """

    def __init__(
        self,
        binary: str | None = None,
        replicas: int = 1,
        sentinels: int = 3,
        name: str = "streamq",
        down_after_ms: int = 1000,
    ) -> None:
        self.binary = binary or find_server()
        self.name = name
        self.primary = RedisServer(self.binary)
        self.replicas = [RedisServer(self.binary) for _ in range(replicas)]
        self.sentinels: list[RedisServer] = []
        self._count = sentinels
        self.down_after_ms = down_after_ms
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL naming every sentinel and the service."""
        seeds = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{seeds}/{self.name}"

    def start(self, timeout_s: float = 30.0) -> SentinelServer:
        """Start the primary, its replicas (synced) and the sentinels (agreed on the primary)."""
        self.primary.start()
        for r in self.replicas:
            r.args = ["--replicaof", "127.0.0.1", str(self.primary.port)]
            r.start()
        with contextlib.closing(_client(self.primary.port)) as c:
            wait_until(
                lambda: c.info("replication").get("connected_slaves") == len(self.replicas),
                timeout_s,
                0.05,
                "replicas connected",
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="streamq-sentinel-")
        for i in range(self._count):
            data = Path(self._tmp.name) / f"s{i}"
            data.mkdir()
            conf = data / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {self.name} 127.0.0.1 {self.primary.port} "
                f"{self._count // 2 + 1}\n"
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.name} {self.down_after_ms * 3}\n"
            )
            s = RedisServer(self.binary, args=["--sentinel"], data_dir=str(data), config=str(conf))
            self.sentinels.append(s.start())
        wait_until(self._watching, timeout_s, 0.05, "sentinels agree on the primary")
        return self

    def _watching(self) -> bool:
        for s in self.sentinels:
            with contextlib.closing(_client(s.port)) as c:
                try:
                    known = c.execute_command("SENTINEL SENTINELS", self.name)  # type: ignore[no-untyped-call]  # untyped in redis-py
                except redis.RedisError:
                    return False
            if len(known) < self._count - 1:
                return False
        return True

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        with contextlib.closing(_client(self.sentinels[0].port)) as c:
            host_port = c.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.name)  # type: ignore[no-untyped-call]  # untyped in redis-py
        return int(host_port[1])

    def stop(self) -> None:
        """Stop every process."""
        for s in [*self.sentinels, *self.replicas, self.primary]:
            s.stop()
        self.sentinels = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SentinelServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
