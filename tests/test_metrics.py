"""Prometheus metrics: the queue gauges, the batched job counters, and a live pool's /metrics
while jobs succeed, retry, die and get cancelled, and after a worker is SIGKILLed."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import streamq
from streamq.clock import now_ms
from streamq.keys import QueueKeys
from streamq.ops.metrics import DURATION_BUCKETS_S, JobMetrics, _Buckets, serve_queue_metrics
from streamq.testing import RedisServer, free_port, wait_until
from tests.helpers import Pool

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics`` on ``port``, keyed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return parse(text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: Prometheus shows a counter once it counted)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_batched_histogram_writes_what_observe_would(queue: str) -> None:
    """Bucket counts flushed in bulk equal those of observe() per value, so the bulk write
    stays true to prometheus_client's own layout."""
    values = [0.0, 0.004, 0.005, 0.3, 2.0, 9999.0, 0.01]
    ref_reg, bulk_reg = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("h", "h", ["q"], buckets=DURATION_BUCKETS_S, registry=ref_reg)
    bulk = Histogram("h", "h", ["q"], buckets=DURATION_BUCKETS_S, registry=bulk_reg)
    buckets = _Buckets(DURATION_BUCKETS_S)
    for v in values:
        ref.labels(queue).observe(v)
        buckets.add(v)
    buckets.flush_into(bulk.labels(queue))

    def samples(reg: CollectorRegistry) -> Samples:
        got = parse(generate_latest(reg).decode())
        return {k: v for k, v in got.items() if not k[0].endswith("_created")}

    assert samples(bulk_reg) == samples(ref_reg)
    assert value(samples(ref_reg), "h_count", q=queue) == len(values)


def test_job_metrics_count_outcomes_per_batch(queue: str) -> None:
    """JobMetrics counts each outcome, times only jobs that ran, and writes at after_batch."""
    reg = CollectorRegistry()
    m = JobMetrics(reg)
    job = streamq.Envelope("j1", "t", queue, priority=2)
    m.after_job(job, streamq.Outcome("succeeded", None, 0.2, 1.5))
    m.after_job(job, streamq.Outcome("cancelled", None, 0.0, 0.0, ran=False))
    assert value(parse(generate_latest(reg).decode()), "streamq_jobs_total", queue=queue,
                 task="t", outcome="succeeded") == 0  # fmt: skip
    m.after_batch()
    got = parse(generate_latest(reg).decode())
    assert value(got, "streamq_jobs_total", queue=queue, task="t", outcome="succeeded") == 1
    assert value(got, "streamq_jobs_total", queue=queue, task="t", outcome="cancelled") == 1
    assert value(got, "streamq_job_duration_seconds_count", queue=queue, task="t") == 1
    assert value(got, "streamq_job_duration_seconds_sum", queue=queue, task="t") == 0.2
    assert value(got, "streamq_job_wait_seconds_bucket", queue=queue, priority="high",
                 le="1.0") == 0  # fmt: skip
    assert value(got, "streamq_job_wait_seconds_bucket", queue=queue, priority="high",
                 le="5.0") == 1  # fmt: skip


def test_gauges_give_depth_and_oldest_age_per_priority(app: streamq.App, queue: str) -> None:
    """Depth counts entries not yet delivered, per priority; the oldest age is that of the
    first undelivered entry; pending, delayed and dead are counted apart."""

    @app.task
    def t() -> None:
        pass

    keys = QueueKeys(queue)
    store = app.store
    assert store.gauges(keys, "default", now_ms()).depth == {2: 0, 1: 0, 0: 0}  # no stream yet
    t.with_options(priority="low").enqueue()
    t.with_options(priority="low").enqueue()
    t.enqueue()
    t.enqueue_in(3600)
    time.sleep(0.3)
    app.client().xgroup_create(keys.stream_for(0), "default", id="0", mkstream=True)
    app.client().xreadgroup("default", "c1", {keys.stream_for(0): ">"}, count=1)
    g = store.gauges(keys, "default", now_ms())
    assert g.depth == {2: 0, 1: 1, 0: 1}
    assert g.pending == 1
    assert g.delayed == 1
    assert g.dead == 0
    assert g.oldest_age_ms[2] == 0
    assert 300 <= g.oldest_age_ms[1] < 5000
    assert 300 <= g.oldest_age_ms[0] < 5000


def test_aio_store_serves_the_gauges_too(app: streamq.App, queue: str) -> None:
    """The asyncio store answers the same verb through the same plan."""
    import asyncio

    import redis.asyncio as aioredis

    from streamq.store.aio import AsyncStore

    app.enqueue("t", queue=queue)
    at_ms = now_ms()

    async def read() -> object:
        store = AsyncStore(aioredis.Redis.from_url(app.redis_url))
        try:
            return await store.gauges(QueueKeys(queue), "default", at_ms)
        finally:
            await store.client.aclose()

    assert asyncio.run(read()) == app.store.gauges(QueueKeys(queue), "default", at_ms)


@pytest.fixture
def exporter(app: streamq.App, queue: str) -> Iterator[int]:
    port = free_port()
    server = serve_queue_metrics(app, [queue], "default", port)
    yield port
    server.shutdown()
    server.server_close()


def test_standalone_exporter_serves_queue_gauges_only(
    app: streamq.App, queue: str, exporter: int
) -> None:
    """`streamq metrics` shows depth, oldest age, pending, delayed and dead, and no workers."""

    @app.task
    def t() -> None:
        pass

    t.enqueue()
    t.enqueue_in(60)
    time.sleep(0.2)
    got = scrape(exporter)
    assert value(got, "streamq_queue_depth", queue=queue, priority="normal") == 1
    assert value(got, "streamq_queue_depth", queue=queue, priority="high") == 0
    assert value(got, "streamq_queue_oldest_age_seconds", queue=queue, priority="normal") >= 0.2
    assert value(got, "streamq_queue_delayed", queue=queue) == 1
    assert value(got, "streamq_queue_pending", queue=queue) == 0
    assert ("streamq_queue_dead", frozenset({("queue", queue)})) in got
    assert not [k for k in got if k[0] == "streamq_workers"]


def _gauges(got: Samples, queue: str) -> dict[str, float]:
    return {
        "dead": value(got, "streamq_queue_dead", queue=queue),
        "delayed": value(got, "streamq_queue_delayed", queue=queue),
        "pending": value(got, "streamq_queue_pending", queue=queue),
        "depth": value(got, "streamq_queue_depth", queue=queue, priority="normal"),
        "oldest": value(got, "streamq_queue_oldest_age_seconds", queue=queue, priority="low"),
        "workers": value(got, "streamq_workers", queue=queue),
    }


def _spawned(pool: Pool) -> list[int]:
    return [e["child_pid"] for e in pool.events("worker.spawned")]


@pytest.mark.slow
def test_live_pool_metrics_through_every_outcome_and_a_sigkilled_worker(
    redis_server: RedisServer, queue: str, worker_env: dict[str, str]
) -> None:
    """/metrics of a live pool sums its workers' counters (succeeded, retrying, dead,
    cancelled, Redis errors), times runs and waits, shows the queue gauges and live workers,
    and keeps every count after a worker is SIGKILLed and replaced."""
    from tests.apps import observed

    observed.app.redis_url = redis_server.url
    app = observed.app
    port = free_port()
    args = ["--app", "tests.apps.observed:app", "--metrics-port", str(port)]
    with Pool(worker_env, args, processes=2) as pool:
        wait_until(lambda: len(pool.events("worker.started")) == 2, 20)
        for name, a in [("ok", []), ("ok", []), ("ok", []), ("flaky", ["x"]), ("doomed", []),
                        ("cancel_me", []), ("ghost", []), ("redis_error", [])]:  # fmt: skip
            app.enqueue(name, args=a, queue=queue)
        app.enqueue_in(3600, "ok", queue=queue)

        def jobs(task: str, outcome: str, got: Samples) -> float:
            return value(got, "streamq_jobs_total", queue=queue, task=task, outcome=outcome)

        def settled() -> Samples | None:
            got = scrape(port)
            done = jobs("ok", "succeeded", got) == 3 and jobs("flaky", "succeeded", got) == 1
            return got if done and jobs("redis_error", "succeeded", got) == 1 else None

        got = wait_until(settled, 30)
        assert got is not None
        assert jobs("flaky", "retrying", got) == 1
        assert jobs("doomed", "dead", got) == 1
        assert jobs("cancel_me", "cancelled", got) == 1
        assert jobs("ghost", "dead", got) == 1  # unknown task: settled without running
        assert value(got, "streamq_job_duration_seconds_count", queue=queue, task="ok") == 3
        # Every job that ran waited: ok x3, flaky x2, doomed, cancel_me, redis_error.
        waited = value(got, "streamq_job_wait_seconds_count", queue=queue, priority="normal")
        assert waited == 8
        assert value(got, "streamq_redis_errors_total", kind="command") == 1
        assert _gauges(got, queue) == {
            "dead": 2,
            "delayed": 1,
            "pending": 0,
            "depth": 0,
            "oldest": 0,
            "workers": 2,
        }

        # A sleeper holds its entry: pending shows it while it runs.
        app.enqueue("ok", args=[3.0], queue=queue)
        wait_until(lambda: value(scrape(port), "streamq_queue_pending", queue=queue) == 1, 10)

        victim = _spawned(pool)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_spawned(pool)) == 3, 20)
        wait_until(lambda: len(pool.events("worker.started")) == 3, 20)
        app.enqueue("ok", queue=queue)
        app.enqueue("ok", queue=queue)

        # 3 + 2 new + the sleeper, if it was not on the killed worker (then it is requeued
        # and runs again): the counts of the dead process stay in the sums either way.
        def replaced() -> Samples | None:
            got = scrape(port)
            live = value(got, "streamq_workers", queue=queue)
            return got if jobs("ok", "succeeded", got) >= 5 and live == 2 else None

        after = wait_until(replaced, 30)
        assert after is not None
        kept = [jobs("flaky", "retrying", after), jobs("doomed", "dead", after)]
        errors = value(after, "streamq_redis_errors_total", kind="command")
        kept += [jobs("cancel_me", "cancelled", after), errors]
        assert kept == [1, 1, 1, 1]
        pool.signal(signal.SIGTERM)
        assert pool.wait(30) == 0
    assert not pool.events("worker.crashed")
    assert pool.events()  # every line (stderr included) is still JSON
