"""Prometheus metrics (the ``metrics`` extra): job counters kept by middleware in each worker
process, queue gauges read from Redis at scrape time, one ``/metrics`` per pool.

A pool runs prometheus_client's multiprocess mode: the supervisor makes a private directory
before it forks, each worker process writes its counters there (files named by pid, so a
SIGKILLed and replaced process keeps what it counted), and the supervisor serves the sum plus
the gauges. ``streamq metrics`` serves the gauges alone. No job id is ever a label.

Per job, :class:`JobMetrics` only adds to plain dicts; the Prometheus values are written once
per batch (``after_batch``), which keeps the cost of metrics within a few percent of a
no-op job (see docs/performance.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

from streamq.clock import now_ms
from streamq.errors import ConfigError, StreamqError
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.options import PRIORITIES
from streamq.producer.app import App
from streamq.store import Store
from streamq.store.node import ERROR_OBSERVERS
from streamq.worker.middleware import Outcome

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
WAIT_BUCKETS_S = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600, 86400)
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prometheus() -> ModuleType:
    """prometheus_client, or a ConfigError saying which extra to install."""
    try:
        # Optional (the metrics extra); the submodules are not attributes until imported.
        import prometheus_client  # noqa: PLC0415
        import prometheus_client.core  # noqa: PLC0415
        import prometheus_client.multiprocess  # noqa: PLC0415
        import prometheus_client.values  # noqa: PLC0415
    except ImportError as e:
        raise ConfigError("metrics need prometheus_client: pip install 'streamq[metrics]'") from e
    return prometheus_client


class _Buckets:
    """Observations of one histogram child, kept until the next flush."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        # The bucket observe() would pick: the first bound >= value (+Inf last).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush_into(self, child: Any) -> None:
        # prometheus_client has no bulk observe: write what observe() would have written,
        # per-bucket (non-cumulative) counts and the sum (tests/test_metrics.py compares).
        for i, n in enumerate(self.counts):
            if n:
                child._buckets[i].inc(n)
        child._sum.inc(self.total)


class JobMetrics:
    """Middleware counting jobs: ``streamq_jobs_total``, ``streamq_job_duration_seconds`` and
    ``streamq_job_wait_seconds``. Create it in the process that runs the jobs."""

    def __init__(self, registry: Any = None) -> None:
        pc = prometheus()
        self.jobs = pc.Counter(
            "streamq_jobs",
            "Jobs settled, by outcome: succeeded, retrying, dead, cancelled.",
            ["queue", "task", "outcome"],
            registry=registry,
        )
        self.duration = pc.Histogram(
            "streamq_job_duration_seconds",
            "How long tasks ran.",
            ["queue", "task"],
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.wait = pc.Histogram(
            "streamq_job_wait_seconds",
            "From enqueue (or due time) to start.",
            ["queue", "priority"],
            buckets=WAIT_BUCKETS_S,
            registry=registry,
        )
        self._counts: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], _Buckets] = {}
        self._waits: dict[tuple[str, str], _Buckets] = {}

    def after_job(self, job: Envelope, outcome: Outcome) -> None:
        """Count the outcome; time the run and the wait of a job that ran."""
        key = (job.queue, job.task)
        counted = (job.queue, job.task, outcome.state)
        self._counts[counted] = self._counts.get(counted, 0) + 1
        if not outcome.ran:
            return
        run = self._durations.get(key)
        if run is None:
            run = self._durations[key] = _Buckets(DURATION_BUCKETS_S)
        run.add(outcome.duration_s)
        wkey = (job.queue, PRIORITY_NAMES.get(job.priority, str(job.priority)))
        wait = self._waits.get(wkey)
        if wait is None:
            wait = self._waits[wkey] = _Buckets(WAIT_BUCKETS_S)
        wait.add(outcome.wait_s)

    def after_batch(self) -> None:
        """Write what the batch counted into the Prometheus values."""
        for counted, n in self._counts.items():
            self.jobs.labels(*counted).inc(n)
        for key, buckets in self._durations.items():
            buckets.flush_into(self.duration.labels(*key))
        for wkey, buckets in self._waits.items():
            buckets.flush_into(self.wait.labels(*wkey))
        self._counts.clear()
        self._durations.clear()
        self._waits.clear()


def count_redis_errors(registry: Any = None) -> None:
    """Count every Redis error this process wraps in ``streamq_redis_errors_total{kind}``."""
    counter = prometheus().Counter(
        "streamq_redis_errors",
        "Redis errors by kind: connection, timeout, command, setup.",
        ["kind"],
        registry=registry,
    )
    ERROR_OBSERVERS.append(lambda kind: counter.labels(kind).inc())


class QueueCollector:
    """The queue gauges, read from Redis at each scrape (one store of its own, opened in the
    scraping thread). A queue Redis does not answer for is left out of that scrape (the
    failure is counted in ``streamq_redis_errors_total``); nothing is logged from here."""

    def __init__(
        self, app: App, queues: Sequence[str], group: str, workers: Callable[[], int] | None
    ) -> None:
        self.app, self.queues, self.group, self.workers = app, list(queues), group, workers
        self._store: Store | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Any]:
        """Build the gauge families (prometheus_client's collector protocol)."""
        gmf = prometheus().core.GaugeMetricFamily
        fams = {
            "depth": gmf(
                "streamq_queue_depth", "Jobs no worker has started.", labels=["queue", "priority"]
            ),
            "pending": gmf("streamq_queue_pending", "Jobs held by workers.", labels=["queue"]),
            "delayed": gmf("streamq_queue_delayed", "Delayed jobs and retries.", labels=["queue"]),
            "dead": gmf("streamq_queue_dead", "Dead letters.", labels=["queue"]),
            "oldest": gmf(
                "streamq_queue_oldest_age_seconds",
                "Age of the oldest job not yet started, since it entered its stream.",
                labels=["queue", "priority"],
            ),
        }
        with self._lock:
            for queue in self.queues:
                try:
                    g = self._gauges(queue)
                except StreamqError:
                    continue
                for p, name in PRIORITY_NAMES.items():
                    fams["depth"].add_metric([queue, name], g.depth[p])
                    fams["oldest"].add_metric([queue, name], g.oldest_age_ms[p] / 1000)
                fams["pending"].add_metric([queue], g.pending)
                fams["delayed"].add_metric([queue], g.delayed)
                fams["dead"].add_metric([queue], g.dead)
        yield from fams.values()
        if self.workers is not None:
            live = gmf("streamq_workers", "Live worker processes.", labels=["queue"])
            count = self.workers()
            for queue in self.queues:
                live.add_metric([queue], count)
            yield live

    def _gauges(self, queue: str) -> Any:
        if self._store is None:
            self._store = self.app.new_store()
        return self._store.gauges(QueueKeys(queue), self.group, now_ms())


def serve(port: int, registry: Any) -> Any:
    """Serve ``registry`` on ``/metrics`` from a daemon thread; returns the server.

    Raises:
        ConfigError: the port cannot be bound.
    """
    try:
        server, _thread = prometheus().start_http_server(port, registry=registry)
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on port {port}: {e}") from e
    return server


class PoolMetrics:
    """A pool's ``/metrics``: its workers' counters (multiprocess files) and the gauges."""

    def __init__(
        self, app: App, queues: Sequence[str], group: str, port: int, workers: Callable[[], int]
    ) -> None:
        self.app, self.queues, self.group, self.port = app, queues, group, port
        self.workers = workers
        self.path = ""
        self._server: Any = None

    def start(self) -> None:
        """Before forking: the private directory, multiprocess values, the server thread.

        Raises:
            ConfigError: prometheus_client is missing or the port cannot be bound.
        """
        pc = prometheus()
        self.path = tempfile.mkdtemp(prefix="streamq-metrics-")
        os.environ[MULTIPROC_ENV] = self.path
        # The value class is chosen when prometheus_client is first imported, perhaps by the
        # app before the directory existed: choose again, for this process and its children.
        pc.values.ValueClass = pc.values.MultiProcessValue()
        count_redis_errors()
        registry = pc.CollectorRegistry()
        pc.multiprocess.MultiProcessCollector(registry, path=self.path)
        registry.register(QueueCollector(self.app, self.queues, self.group, self.workers))
        self._server = serve(self.port, registry)

    def child_exited(self, pid: int) -> None:
        """Forget a dead worker's live gauges; its counters stay in the sums."""
        if self.path:
            prometheus().multiprocess.mark_process_dead(pid, self.path)

    def close(self) -> None:
        """Stop serving and remove the directory."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)


def serve_queue_metrics(app: App, queues: Sequence[str], group: str, port: int) -> Any:
    """``streamq metrics``: the queue gauges and this process's Redis errors, no workers.

    Returns:
        The server (serving from a daemon thread).
    """
    pc = prometheus()
    registry = pc.CollectorRegistry()
    count_redis_errors(registry)
    registry.register(QueueCollector(app, queues, group, None))
    return serve(port, registry)
