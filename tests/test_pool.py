"""Real worker pools in subprocesses: exactly-once on the happy path, signals, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import redis

import streamq
from streamq.keys import QueueKeys
from streamq.testing import RedisServer, free_port, wait_until
from tests.apps import sample
from tests.helpers import ROOT, Pool, entries, runs


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def _producer(server: RedisServer, queue: str) -> streamq.App:
    """The sample app's tasks, bound to this test's server and queue."""
    sample.app.redis_url = server.url
    sample.app.settings = streamq.AppSettings(default_queue=queue)
    return sample.app


def _enqueue(server: RedisServer, queue: str, task: str, *args: object) -> streamq.Job[object]:
    return _producer(server, queue).enqueue(task, args=list(args), queue=queue)


def _settled(client: redis.Redis, queue: str) -> bool:
    keys = QueueKeys(queue)
    return client.xlen(keys.stream) == 0 and client.zcard(keys.delayed) == 0


def test_2000_jobs_over_2_processes_each_run_exactly_once(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Every job runs once, both processes share the work, and the stream ends empty."""
    app = _producer(redis_server, queue)
    app.enqueue_many(
        [sample.record.with_options(queue=queue).prepare(f"j{i}") for i in range(2000)]
    )
    c = _client(redis_server)
    with Pool(worker_env, ["--log-jobs", "all"]) as pool:
        wait_until(lambda: len(runs(c, queue)) == 2000 and _settled(c, queue), 60)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    counts = runs(c, queue)
    assert set(counts.values()) == {1}
    consumers = {e["consumer"] for e in pool.events("job.succeeded")}
    assert len(consumers) == 2
    assert len(pool.events("job.succeeded")) == 2000
    assert c.xpending(QueueKeys(queue).stream, "default")["pending"] == 0


def test_log_lines_are_json_with_canonical_fields(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Each job outcome is one JSON line with the fields a log aggregator needs."""
    _enqueue(redis_server, queue, "record", "ok")
    _enqueue(redis_server, queue, "always_fail", "bad")
    c = _client(redis_server)
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: len(pool.events("job.dead_lettered")) == 1, 30)
        wait_until(lambda: len(pool.events("job.succeeded")) == 1, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    for line in pool.lines:
        doc = json.loads(line)  # every line, not just job lines
        assert {"event", "level", "ts"} <= doc.keys()
    common = {"job_id", "task", "queue", "group", "consumer", "attempt", "duration_ms", "outcome"}
    (ok,) = pool.events("job.succeeded")
    assert common <= ok.keys()
    failed = pool.events("job.failed")
    assert [f["attempt"] for f in failed] == [1, 2]
    assert all(
        common | {"error_type", "error_message", "traceback", "retry_in_ms"} <= f.keys()
        for f in failed
    )
    (dead,) = pool.events("job.dead_lettered")
    assert dead["reason"] == "max_retries"
    assert "always fails" in dead["traceback"]
    assert {e["event"] for e in pool.events()} >= {
        "supervisor.started",
        "worker.spawned",
        "worker.started",
        "worker.stopped",
        "worker.exited",
        "supervisor.stopped",
    }
    assert runs(c, queue) == {"ok": 1, "bad": 3}


def test_sigterm_lets_the_running_job_finish_and_acks_it(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """SIGTERM mid-job: the job completes, is acked, the pool exits 0, nothing is redelivered."""
    _enqueue(redis_server, queue, "sleep_then_record", "long", 1.5)
    c = _client(redis_server)
    with Pool(worker_env, ["--grace-s", "20"]) as pool:
        wait_until(lambda: runs(c, queue).get("long:started") == 1, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    assert runs(c, queue) == {"long:started": 1, "long": 1}
    keys = QueueKeys(queue)
    assert c.xlen(keys.stream) == 0
    assert c.xpending(keys.stream, "default")["pending"] == 0
    assert c.xinfo_consumers(keys.stream, "default") == []  # workers left the group


def test_grace_expiry_kills_and_the_job_goes_back_to_the_queue(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A job longer than the grace period is killed (exit 3) and requeued at once, counted."""
    _enqueue(redis_server, queue, "sleep_then_record", "stuck", 30)
    c = _client(redis_server)
    with Pool(worker_env, ["--grace-s", "0.5"], processes=1) as pool:
        wait_until(lambda: runs(c, queue).get("stuck:started") == 1, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 3
    keys = QueueKeys(queue)
    assert c.xpending(keys.stream, "default")["pending"] == 0
    ((_, fields),) = entries(c, keys.stream)
    assert fields[b"n"] == b"1"  # one delivery that did not finish
    assert pool.events("job.reclaimed")[0]["why"] == "worker_died"


def test_second_signal_exits_at_once(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A second SIGINT does not wait for the grace period."""
    _enqueue(redis_server, queue, "sleep_then_record", "s", 30)
    c = _client(redis_server)
    with Pool(worker_env, ["--grace-s", "60"], processes=1) as pool:
        wait_until(lambda: runs(c, queue).get("s:started") == 1, 30)
        pool.signal(signal.SIGINT)
        wait_until(lambda: pool.events("supervisor.stopping"), 10)
        pool.signal(signal.SIGINT)
        assert pool.wait(10) == 3


def test_sigkilled_child_is_restarted(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """The supervisor replaces a child killed with SIGKILL, and the pool keeps working."""
    c = _client(redis_server)
    with Pool(worker_env) as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 2, 30)
        victim = pool.children()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(pool.children()) == 2 and victim not in pool.children(), 30)
        (exited,) = pool.events("worker.exited")
        assert exited["exit_code"] == -signal.SIGKILL
        _enqueue(redis_server, queue, "record", "after")
        wait_until(lambda: runs(c, queue).get("after") == 1, 30)


def test_kill_9_mid_job_completes_after_visibility_timeout(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A job whose worker is SIGKILLed mid-run is reclaimed and completed by a live worker."""
    worker_env["SQ_TEST_VT_S"] = "1"
    _enqueue(redis_server, queue, "sleep_then_record", "victim", 0.8)
    c = _client(redis_server)
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: runs(c, queue).get("victim:started") == 1, 30)
        os.kill(pool.children()[0], signal.SIGKILL)
        wait_until(lambda: runs(c, queue).get("victim") == 1, 30)
        assert runs(c, queue)["victim:started"] == 2
        wait_until(lambda: pool.events("job.reclaimed"), 10)  # log lines may lag Redis
        wait_until(lambda: _settled(c, queue), 10)


def test_long_job_on_live_worker_runs_exactly_once(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A job lasting several visibility timeouts keeps its lease and is never run twice."""
    worker_env["SQ_TEST_VT_S"] = "1"
    _enqueue(redis_server, queue, "sleep_then_record", "marathon", 3.5)
    c = _client(redis_server)
    with Pool(worker_env) as pool:
        wait_until(lambda: runs(c, queue).get("marathon") == 1, 30)
        wait_until(lambda: _settled(c, queue), 10)
        assert runs(c, queue) == {"marathon:started": 1, "marathon": 1}
        assert not pool.events("job.reclaimed")


def test_poison_pill_is_dead_lettered_after_max_deliveries(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A job that kills its worker every time is buried after max_deliveries; others complete."""
    worker_env.update(SQ_TEST_VT_S="0.5", SQ_TEST_MAX_DELIVERIES="3")
    _enqueue(redis_server, queue, "kill_worker", "pill")
    for i in range(20):
        _enqueue(redis_server, queue, "record", f"ok{i}")
    c = _client(redis_server)
    with Pool(worker_env) as pool:
        wait_until(lambda: c.xlen(QueueKeys(queue).dead) == 1, 60)
        # Each ran at least once: a job finished by a worker the pill then killed, before
        # its batched ack (at most ack_flush_ms of work), runs again (documented duplicates).
        wait_until(lambda: all(runs(c, queue).get(f"ok{i}", 0) >= 1 for i in range(20)), 30)
        (dead,) = streamq.DeadLetters(streamq.App(redis_server.url).store, queue).list()
        assert (dead.reason, dead.task) == ("max_deliveries", "kill_worker")
        assert runs(c, queue)["pill"] == 3
        wait_until(lambda: len(pool.children()) == 2, 30)  # back at full strength
        dead_lines = wait_until(lambda: pool.events("job.dead_lettered"), 10)
        assert dead_lines[0]["task"] == "kill_worker"


def test_two_pools_and_a_standalone_scheduler_run_each_delayed_job_once(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Three schedulers and two reapers at once over 1,000 delayed jobs: each runs once."""
    app = _producer(redis_server, queue)
    task = sample.record.with_options(queue=queue)
    for i in range(1000):
        task.enqueue_in(0.5 + (i % 10) / 10, f"d{i}")
    c = _client(redis_server)
    sched = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamq",
            "--redis-url",
            redis_server.url,
            "scheduler",
            "--queue",
            queue,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Pool(worker_env, processes=1), Pool(worker_env, processes=1):
            wait_until(lambda: len(runs(c, queue)) == 1000 and _settled(c, queue), 60)
    finally:
        sched.kill()
        sched.wait(10)
    assert set(runs(c, queue).values()) == {1}
    assert app.store.stats(QueueKeys(queue), "default").pending == 0


def test_burst_mode_exits_when_the_queue_is_drained(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """--burst processes what is there, including retries, then exits 0 on its own."""
    _enqueue(redis_server, queue, "fail_times", "f", 2)
    for i in range(50):
        _enqueue(redis_server, queue, "record", f"b{i}")
    c = _client(redis_server)
    with Pool(worker_env, ["--burst"]) as pool:
        assert pool.wait(60) == 0
    assert runs(c, queue)["f"] == 3
    assert len(runs(c, queue)) == 51


def test_pool_started_before_redis_waits_and_then_works(
    queue: str, worker_env: dict[str, str]
) -> None:
    """Redis unreachable at start: the pool logs it, retries with backoff, then resumes."""
    port = free_port()
    worker_env["STREAMQ_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: pool.events("supervisor.redis_failed"), 30)
        with RedisServer(port=port) as server:
            _enqueue(server, queue, "record", "late")
            c = _client(server)
            wait_until(lambda: runs(c, queue).get("late") == 1, 30)
        assert pool.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_supervisor_death_takes_children_down(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str], sig: int
) -> None:
    """Children never outlive a SIGKILLed supervisor (no orphans holding leases)."""
    with Pool(worker_env) as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 2, 30)
        kids = pool.children()
        pool.proc.send_signal(sig)
        pool.proc.wait(10)

        def gone() -> bool:
            return not any(os.path.exists(f"/proc/{k}") and _not_zombie(k) for k in kids)

        wait_until(gone, 15)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_second_consumer_group_on_a_queue_is_refused(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A pool for a second group on a served queue exits with a clear error, losing no jobs."""
    c = _client(redis_server)
    c.xgroup_create(QueueKeys(queue).stream, "default", id="0", mkstream=True)
    with Pool(worker_env, ["--group", "analytics"], processes=1) as pool:
        assert pool.wait(30) == 1
    assert any("already has consumer group(s) ['default']" in line for line in pool.lines)


def _groups(client: redis.Redis, queue: str) -> set[str]:
    """Every consumer group on any priority stream of ``queue``."""
    names: set[str] = set()
    for stream in QueueKeys(queue).streams:
        if client.exists(stream):
            names |= {g["name"].decode() for g in client.xinfo_groups(stream)}
    return names


def test_refused_group_leaves_redis_as_it_found_it(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """A refused --group creates nothing, so the queue's own group starts normally after it."""
    c = _client(redis_server)
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 1, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    assert _groups(c, queue) == {"default"}
    with Pool(worker_env, ["--group", "reporting"], processes=1) as pool:
        assert pool.wait(30) == 1
    assert _groups(c, queue) == {"default"}  # before: 'reporting' on every stream
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 1, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0


def test_arguments_are_logged_only_when_asked(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """Task arguments (maybe personal data) stay out of logs unless --log-args is given."""
    secret = "alice@example.com"
    _enqueue(redis_server, queue, "record", secret)
    c = _client(redis_server)
    with Pool(worker_env, processes=1) as pool:
        wait_until(lambda: runs(c, queue).get(secret) == 1, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    assert not any(secret in line for line in pool.lines)
    _enqueue(redis_server, queue, "record", secret)
    with Pool(worker_env, ["--log-args"], processes=1) as pool:
        wait_until(lambda: runs(c, queue).get(secret) == 2, 30)
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    (ok,) = pool.events("job.succeeded")
    assert ok["args"] == [secret]


def test_embedded_server_dies_with_its_owner_even_on_sigkill() -> None:
    """A RedisServer's process does not outlive the process that started it, killed or not."""
    code = (
        "import sys, time\n"
        "from streamq.testing import RedisServer\n"
        "s = RedisServer().start()\n"
        "print(s.port, s.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        port, server_pid = (int(x) for x in owner.stdout.readline().split())
        assert redis.Redis(port=port).ping()
        owner.kill()
        owner.wait(10)
        wait_until(lambda: not _not_zombie(server_pid), 15)
    finally:
        owner.kill()
        owner.wait(10)
        if owner.stdout is not None:
            owner.stdout.close()
