"""Past one server: URLs, a Sentinel-watched primary (and its failover), and the store's plans
on a real Redis Cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

import streamq
from streamq import codec
from streamq.clock import now_ms
from streamq.errors import ConfigError
from streamq.job import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL
from streamq.keys import QueueKeys
from streamq.scripts import Finished
from streamq.store import NewJob, upkeep
from streamq.store import queue as q
from streamq.store.cluster import ClusterExecutor
from streamq.store.inspect import stats_plan
from streamq.store.urls import parse_url
from streamq.testing import drain, find_server, wait_until
from streamq.testing.cluster import ClusterServer, SentinelServer
from tests.conftest import _servers


@pytest.mark.parametrize(
    ("url", "kind", "seeds", "service", "db"),
    [
        ("redis+sentinel://a:1,b:2/svc", "sentinel", (("a", 1), ("b", 2)), "svc", 0),
        ("redis+sentinel://a:1/svc/3", "sentinel", (("a", 1),), "svc", 3),
        ("redis+cluster://h:7000,h:7001", "cluster", (("h", 7000), ("h", 7001)), "", 0),
    ],
)
def test_urls_name_their_seeds(
    url: str, kind: str, seeds: tuple[tuple[str, int], ...], service: str, db: int
) -> None:
    """Sentinel and Cluster URLs give every seed, the service and the db."""
    t = parse_url(url)
    assert (t.kind, t.seeds, t.service, t.db) == (kind, seeds, service, db)


def test_url_credentials_are_read_and_never_echoed() -> None:
    """Credentials come out decoded; a bad URL's error hides the password."""
    t = parse_url("rediss+sentinel://me:p%40ss@h:1/svc")
    assert (t.tls, t.username, t.password) == (True, "me", "p@ss")
    with pytest.raises(ConfigError) as e:
        parse_url("redis+sentinel://me:secret@h:nope/svc")
    assert "secret" not in str(e.value)


@pytest.mark.parametrize(
    "url", ["http://h:1", "redis+sentinel://h:1", "redis+sentinel://h/svc", "redis+cluster://h:1/0"]
)
def test_bad_urls_fail_loudly(url: str) -> None:
    """An unknown scheme, a missing service, a seed without a port or a cluster db refuse."""
    with pytest.raises(ConfigError):
        parse_url(url)


def test_cluster_urls_are_refused_until_the_store_serves_them() -> None:
    """An App on a cluster URL says plainly that workers cannot use it yet."""
    app = streamq.App("redis+cluster://127.0.0.1:7000")
    with pytest.raises(ConfigError, match="not served yet"):
        _ = app.store


@pytest.fixture(scope="module", params=_servers())
def sentinel(request: pytest.FixtureRequest) -> Iterator[SentinelServer]:
    """One primary, one replica, three sentinels, private ports."""
    with SentinelServer(find_server(request.param)) as s:
        yield s


def _app(url: str) -> streamq.App:
    app = streamq.App(url, streamq.AppSettings(default_queue=f"t{uuid.uuid4().hex[:10]}"))

    @app.task
    def double(x: int) -> int:
        return 2 * x

    return app


@pytest.mark.slow
def test_jobs_run_through_a_sentinel_url(sentinel: SentinelServer) -> None:
    """A producer and a worker on a redis+sentinel:// URL reach the primary and run jobs."""
    app = _app(sentinel.url)
    jobs = [app.enqueue("double", args=[i]) for i in range(5)]
    result = drain(app, timeout_s=20)
    assert result.succeeded == 5
    assert [j.result(timeout_s=5) for j in jobs] == [0, 2, 4, 6, 8]
    app.close()


@pytest.mark.slow
def test_a_sentinel_failover_is_followed(sentinel: SentinelServer) -> None:
    """After the primary is killed and a replica promoted, enqueue and run go to the new one,
    and what was replicated before the kill is still there."""
    app = _app(sentinel.url)
    before = app.enqueue("double", args=[21])
    client = app.client()
    wait_until(lambda: client.execute_command("WAIT", 1, 100) >= 1, 10, what="replicated")  # type: ignore[no-untyped-call]  # untyped in redis-py
    old = sentinel.primary_port()
    sentinel.primary.kill()
    wait_until(lambda: sentinel.primary_port() != old, 30, 0.1, "a replica promoted")

    def enqueue_again() -> streamq.Job[object] | None:
        try:
            return app.enqueue("double", args=[5])
        except streamq.EnqueueError:
            return None  # the old connections fail once before the new primary is asked for

    after = wait_until(enqueue_again, 30, 0.2, "enqueue on the new primary")
    assert after is not None
    assert drain(app, timeout_s=20).succeeded == 2
    assert (before.result(timeout_s=5), after.result(timeout_s=5)) == (42, 10)
    app.close()


@pytest.fixture(scope="module", params=_servers())
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterServer]:
    """Three primaries with a replica each, private ports."""
    with ClusterServer(find_server(request.param)) as c:
        yield c


@pytest.mark.slow
def test_the_store_plans_run_on_a_cluster(cluster: ClusterServer) -> None:
    """Queues on different slots (and primaries): enqueue, read, start, ack, stats and
    promotion through the cluster executor, also after every node's script cache is emptied."""
    seeds = [ClusterNode("127.0.0.1", n.port) for n in cluster.nodes]  # type: ignore[no-untyped-call]  # untyped in redis-py
    client = RedisCluster(startup_nodes=seeds)
    ex = ClusterExecutor(client)
    queues = [QueueKeys(f"c{uuid.uuid4().hex[:8]}") for _ in range(6)]
    slots = {client.keyslot(k.stream) for k in queues}  # type: ignore[no-untyped-call]  # untyped in redis-py
    assert len(slots) == 6
    app = streamq.App("redis://127.0.0.1:1/0")  # only to build envelopes: no connection
    for keys in queues:
        env = app.envelope("t", [1], queue=keys.queue)
        job = NewJob(keys, env.id, env.task, env.priority, codec.encode(env))
        ((created, _),) = ex.run(q.enqueue_plan([job], now_ms()), "enqueue failed")
        assert created
        ex.run(q.ensure_group_plan(keys, "g"), "group failed")
        (entry,) = ex.run(q.read_plan([(keys, PRIORITY_NORMAL)], "g", "c", 10, None), "read")
        assert ex.run(q.start_plan("g", "c", now_ms(), [entry], [env.id], [1]), "start") == [True]
        done = Finished(entry.id, keys.job(env.id), env.id, "succeeded", b"", 60_000)
        assert ex.run(q.ack_plan(keys, PRIORITY_NORMAL, "g", now_ms(), [done]), "ack") == (1, 0)
        assert ex.run(stats_plan(keys, "g"), "stats").queued == 0
    for node in cluster.nodes:  # every node forgets every script, as after a restart
        with redis.Redis(port=node.port) as plain:
            plain.script_flush()
    keys = queues[0]
    jobs = [NewJob(keys, f"d{p}", "t", p, b"x", 1) for p in (PRIORITY_HIGH, PRIORITY_LOW)]
    ex.run(q.add_plan(jobs), "add")
    assert ex.run(upkeep.promote_due_plan(keys, 10), "promote") == (2, -1)
    client.close()
