"""streamq benchmark: each figure next to a raw redis-py ceiling measured in the same run.

    .venv/bin/python scripts/bench.py [--quick] [--json] [--only SECTION ...]

Everything runs against a private server (streamq.testing.RedisServer). Throughput figures are
ratios to a bare redis-py + hiredis loop doing the same Redis work with nothing else, so the
numbers say what streamq itself costs on this machine, whatever its speed.

How drains are timed: the queue is filled first, with a ``mark`` job at its head that records
``time.time()`` when it runs (SET NX, so the first mark wins); the end is the first moment
this process sees the stream empty (XLEN polled every 2 ms; acknowledged entries are deleted,
so empty means every job ran and was acknowledged). The same marker, the same entries and
the same poll serve the raw loop, so pool start-up is excluded on both sides and the
measurement overhead is identical. A benchmark reports: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import bench_tasks
import msgpack
import redis

from streamq import codec
from streamq.job import Envelope
from streamq.keys import PRIORITY_LEVELS, QueueKeys
from streamq.producer.task import Task
from streamq.testing import RedisServer, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
KEYS = QueueKeys(bench_tasks.QUEUE)
SECTIONS = (
    "enqueue",
    "aenqueue",
    "drain",
    "logging",
    "pickup",
    "retry",
    "delayed",
    "periodic",
    "memory",
    "scaling",
    "metrics",
    "async",
)
BODIES: dict[str, Task[[int], Any]] = {
    "noop": bench_tasks.noop,
    "noop_untracked": bench_tasks.noop_untracked,
    "incr": bench_tasks.incr,
    "flaky": bench_tasks.flaky,
    "anoop": bench_tasks.anoop,  # asyncio pool (impl "async")
    "asleep": bench_tasks.asleep,
}
ASYNC_CONCURRENCY = 100
POLL_S = 0.002
DrainKey = tuple[str, str, int, str]  # (impl, body, processes, log_jobs)


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each figure does; ``--quick`` shrinks everything for a smoke run.

    No-op drains use more jobs than INCR drains: at 100k+ jobs/s, 20,000 jobs take a fraction
    of a second and start-up skew between processes would dominate.
    """

    drain: int = 20_000
    drain_noop: int = 50_000
    enqueue_single: int = 10_000
    enqueue_bulk: int = 100_000
    pickup: int = 300
    retry: int = 2_000
    delayed: int = 200
    delayed_s: float = 2.0
    memory: int = 100_000
    chunks: int = 10  # enqueue figures: sides alternate in this many chunks, best chunk wins
    drain_repeat: int = 3  # drains: best of this many runs per side, round-robin
    schedules: int = 100  # periodic: schedules, every_s=1 each
    periodic_s: float = 10.0  # periodic: seconds of ticks measured
    async_sleep: int = 2_000  # async: jobs that each await asyncio.sleep(0.05)


QUICK = Sizes(2_000, 5_000, 2_000, 10_000, 50, 300, 50, 1.0, 10_000, 2, 1, 100, 4.0, 2_000)
UNTRACKED = "noop_untracked"
METRICS = "streamq+metrics"  # a streamq pool serving /metrics


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for one figure: on the ratio to the raw ceiling, the value, or its magnitude."""

    on: str  # "ratio" | "value" | "abs"
    op: str  # ">=" | "<="
    bound: float
    unit: str = ""

    def check(self, value: float | None, ratio: float | None) -> bool | None:
        """True/False when the figure exists, None when it could not be measured."""
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        x = abs(x) if self.on == "abs" else x
        return x >= self.bound if self.op == ">=" else x <= self.bound

    def __str__(self) -> str:
        what = {"ratio": "ratio ", "value": "", "abs": "|x| "}[self.on]
        return f"{what}{self.op} {self.bound:g}{(' ' + self.unit) if self.unit else ''}"


@dataclass(slots=True)
class Row:
    """One line of the report."""

    figure: str
    value: float | None
    unit: str
    raw: float | None = None
    target: Target | None = None
    note: str = ""
    ratio: float | None = None
    met: bool | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.raw:
            self.ratio = self.value / self.raw
        self.met = self.target.check(self.value, self.ratio) if self.target else None


@dataclass(frozen=True, slots=True)
class Drain:
    """One drain of a pre-filled queue, by streamq or the raw loop."""

    impl: str
    body: str
    processes: int
    log_jobs: str
    jobs: int
    seconds: float
    jobs_per_s: float
    redis_cpu_ms_per_1k: float
    worker_cpu_us_per_job: float | None
    check: str
    runs: tuple[float, ...] = ()  # jobs/s of every repeat, to show the noise


# -- processes ----------------------------------------------------------------------------------
class Pool:
    """A worker pool subprocess (streamq CLI or the raw loop) in its own process group."""

    def __init__(self, argv: list[str], quiet: bool = False) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")]))
        # Closed in stop(): they outlive this constructor on purpose.
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL if quiet else self._out,
            stderr=self._err,
            start_new_session=True,
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        """JSON log lines of event ``name`` written so far (other lines are skipped)."""
        self._out.seek(0)
        out = []
        for line in self._out.read().splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("event") == name:
                    out.append(doc)
        return out

    def children(self) -> list[int]:
        """Pids of the worker processes: from worker.spawned lines, else from /proc."""
        pids = [int(e["child_pid"]) for e in self.events("worker.spawned")]
        if pids:
            return pids
        with contextlib.suppress(OSError):
            path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            return [int(p) for p in path.read_text().split()]
        return []

    def worker_cpu_s(self, processes: int, exits: bool) -> float | None:
        """CPU seconds of the workers: from /proc while alive, or as raw workers report at exit."""
        if not exits:
            pids = self.children()
            return sum(cpu_s(pid) for pid in pids) if pids else None
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: len(self.events("worker.stopped")) >= processes, 10)
        return sum(float(e["cpu_s"]) for e in self.events("worker.stopped"))

    def wait_ready(self, processes: int, timeout_s: float = 30.0) -> None:
        """Wait until every worker said worker.started (then give them time to block)."""
        wait_until(
            lambda: len(self.events("worker.started")) >= processes or self._dead(),
            timeout_s,
            what="workers started",
        )
        self._dead()
        time.sleep(0.3)

    def _dead(self) -> bool:
        if self.proc.poll() is not None:
            self._err.seek(0)
            tail = self._err.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"pool exited with {self.proc.returncode}: {tail}")
        return False

    def stop(self) -> None:
        """SIGTERM (a graceful drain), then SIGKILL the whole process group whatever happened."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self._out.close()
            self._err.close()


@contextlib.contextmanager
def running(argv: list[str], quiet: bool = False) -> Iterator[Pool]:
    """A pool that is killed (with its whole process group) when the block exits."""
    pool = Pool(argv, quiet)
    try:
        yield pool
    finally:
        pool.stop()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of a live process, VmRSS from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


# -- the benchmark ------------------------------------------------------------------------------
class Bench:
    """All figures against one private server; drains are memoized so sections share them."""

    def __init__(self, url: str, sizes: Sizes, server_pid: int | None = None) -> None:
        self.url = url
        self.server_pid = server_pid
        self.sizes = sizes
        self.app = bench_tasks.app
        self.app.redis_url = url
        self.client = redis.Redis.from_url(url)
        self.drains: dict[DrainKey, Drain] = {}
        self._envelopes: dict[tuple[str, int], list[Envelope]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the private server and create the group, so every figure starts alike."""
        self.client.flushall()
        for stream in KEYS.streams:
            self.client.xgroup_create(stream, bench_tasks.GROUP, id="0", mkstream=True)

    def pool_argv(self, impl: str, processes: int, log_jobs: str = "failures") -> list[str]:
        """Command line of a streamq CLI pool or of the raw pool, over the bench queue."""
        if impl == "raw":
            script = str(SCRIPTS / "bench_tasks.py")
            return [sys.executable, script, "raw", "--url", self.url, "--processes", str(processes)]
        metrics = ["--metrics-port", str(free_port())] if impl == METRICS else []
        # impl "async": the app with async tasks, so its processes run the asyncio worker.
        app, extra = "bench_tasks:app", ()  # type: tuple[str, tuple[str, ...]]
        if impl == "async":
            app, extra = ("bench_tasks:async_app", ("--concurrency", str(ASYNC_CONCURRENCY)))
        return [
            *(sys.executable, "-m", "streamq", "--redis-url", self.url, "worker"),
            *("--app", app, "--group", bench_tasks.GROUP, *extra),
            *("--queue", bench_tasks.QUEUE, "--processes", str(processes), "--log-jobs", log_jobs),
            *metrics,
        ]

    def redis_cpu_s(self) -> float:
        """Redis server CPU seconds (user + system) so far."""
        info: Any = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def wait_empty(self, timeout_s: float) -> float:
        """Poll until the stream and the delayed set are empty; return that moment (epoch s)."""
        deadline = time.monotonic() + timeout_s
        pipe = self.client.pipeline(transaction=False)
        while time.monotonic() < deadline:
            for level in PRIORITY_LEVELS:
                pipe.xlen(KEYS.stream_for(level))
                pipe.zcard(KEYS.delayed_for(level))
            if not any(pipe.execute()):
                return time.time()
            time.sleep(POLL_S)
        raise TimeoutError(f"queue not drained within {timeout_s}s")

    def stamps(self, count: int, timeout_s: float) -> list[tuple[float, float, int]]:
        """Wait for ``count`` (sent, started, pid) records of the ``stamp`` task."""
        wait_until(lambda: self.client.llen(bench_tasks.STAMPS_KEY) >= count, timeout_s)
        raw: Any = self.client.lrange(bench_tasks.STAMPS_KEY, 0, -1)
        out = []
        for item in raw:
            sent, started, pid = item.split()
            out.append((float(sent), float(started), int(pid)))
        return out

    # -- drains ----------------------------------------------------------------------------
    def measure(self, keys: list[DrainKey]) -> None:
        """Drain each kind ``drain_repeat`` times, round-robin so drift hits all; keep the best."""
        missing = [k for k in dict.fromkeys(keys) if k not in self.drains]
        runs: dict[DrainKey, list[Drain]] = {k: [] for k in missing}
        for rep in range(self.sizes.drain_repeat):
            for key in missing if rep % 2 == 0 else reversed(missing):
                runs[key].append(self.drain_once(*key))
        for key, done in runs.items():
            best = max(done, key=lambda d: d.jobs_per_s)
            self.drains[key] = replace(best, runs=tuple(d.jobs_per_s for d in done))

    def drain(self, impl: str, body: str, processes: int, log_jobs: str = "failures") -> Drain:
        """The best drain of this kind (measured once per run)."""
        key = (impl, body, processes, log_jobs)
        self.measure([key])
        return self.drains[key]

    def drain_once(self, impl: str, body: str, processes: int, log_jobs: str) -> Drain:
        """Fill the queue (marker first), start the pool, time first start to empty."""
        noop = self.sizes.drain_noop
        n = {
            "flaky": self.sizes.retry,
            "noop": noop,
            UNTRACKED: noop,
            "anoop": noop,
            "asleep": self.sizes.async_sleep,
        }.get(body, self.sizes.drain)
        self.reset()
        self.fill(self.envelopes(body, n))
        cpu0 = self.redis_cpu_s()
        with running(self.pool_argv(impl, processes, log_jobs), quiet=log_jobs == "all") as pool:
            t1 = self.wait_empty(timeout_s=max(60.0, n / 200))
            cpu1 = self.redis_cpu_s()
            worker_cpu = pool.worker_cpu_s(processes, exits=impl == "raw")
        t0 = float(self.client.get(bench_tasks.T0_KEY) or 0)
        seconds = t1 - t0
        return Drain(
            impl,
            body,
            processes,
            log_jobs,
            n,
            round(seconds, 4),
            round((n + 1) / seconds, 1),
            round((cpu1 - cpu0) * 1e6 / (n + 1), 2),
            round(worker_cpu * 1e6 / (n + 1), 2) if worker_cpu is not None else None,
            self.check(body, n),
        )

    def envelopes(self, body: str, n: int) -> list[Envelope]:
        """The jobs of a drain, a ``mark`` first; built once, sent again by every run."""
        key = (body, n)
        if key not in self._envelopes:
            task = BODIES[body]
            marker = bench_tasks.amark if task.app is bench_tasks.async_app else bench_tasks.mark
            self._envelopes[key] = [
                marker.prepare(0),
                *(task.prepare(i) for i in range(n)),
            ]
        return self._envelopes[key]

    def fill(self, envelopes: list[Envelope]) -> None:
        """Enqueue through the real producer (job records included): not what a drain times."""
        self.app.enqueue_many(envelopes)

    def check(self, body: str, n: int) -> str:
        """What the task bodies recorded, to catch a lost or doubled job."""
        if body == "incr":
            return f"counter={int(self.client.get(bench_tasks.COUNTER_KEY) or 0)}/{n}"
        if body == "flaky":
            runs: Any = self.client.hvals(bench_tasks.RETRY_KEY)
            return f"runs={sum(int(v) for v in runs)}/{2 * n}"
        return ""

    def drain_row(self, figure: str, body: str, procs: int, target: Target | None) -> Row:
        """A streamq drain next to the raw drain of the same body and process count."""
        sq = self.drain("streamq", body, procs)
        raw = self.drain("raw", body, procs)
        return Row(figure, sq.jobs_per_s, "jobs/s", raw.jobs_per_s, target, drain_note(sq, raw))

    # -- sections --------------------------------------------------------------------------
    def section_enqueue(self) -> list[Row]:
        """Per-job and bulk enqueue, streamq vs raw XADD of a payload of the same shape."""
        with self.pinned():
            return self.enqueue_rows()

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Redis and this process on one core while a single client times round trips.

        Left to the scheduler, the two share a core or not from one moment to the next, and on
        this VM a round trip across cores takes about twice as long (the wake-up dominates):
        both sides of the comparison would measure placement luck. On one core the client's
        own CPU per job shows in full, the strictest setting for the ratio.
        """
        cpus = sorted(os.sched_getaffinity(0))
        if self.server_pid is None or len(cpus) < 2:
            yield
            return
        os.sched_setaffinity(self.server_pid, {cpus[0]})
        os.sched_setaffinity(0, {cpus[0]})
        try:
            yield
        finally:
            os.sched_setaffinity(0, cpus)
            os.sched_setaffinity(self.server_pid, cpus)

    def enqueue_rows(self) -> list[Row]:
        """The enqueue figures, tracked (the default) and ``track=False``."""
        s = self.sizes
        raw_client = redis.Redis.from_url(self.url)
        how = f"best of {s.chunks} chunks per side, alternating; Redis and producer on one core"
        rows = []
        for body, label, targets in (
            ("noop", "", (0.90, 0.70)),
            (UNTRACKED, ", track=False", None),
        ):
            task = BODIES[body]
            single = self.best_of(
                s.enqueue_single,
                functools.partial(enqueue_single, task),
                lambda n: raw_single(raw_client, n),
            )
            bulk = self.best_of(
                s.enqueue_bulk,
                functools.partial(self.enqueue_bulk, task),
                lambda n: raw_bulk(raw_client, n),
            )
            rows += [
                Row(f"enqueue per job (task.enqueue){label}", single[0], "jobs/s", single[1],
                    Target("ratio", ">=", targets[0]) if targets else None,
                    f"{s.enqueue_single:,} jobs, {how}; {payload_sizes()}"),
                Row(f"enqueue bulk (prepare + enqueue_many){label}", bulk[0], "jobs/s", bulk[1],
                    Target("ratio", ">=", targets[1]) if targets else None,
                    f"{s.enqueue_bulk:,} jobs, batches of 1000, {how}"),
            ]  # fmt: skip
        return rows

    def enqueue_bulk(self, task: Task[[int], None], n: int) -> None:
        """What a producer does for a bulk enqueue: build the envelopes, send them."""
        self.app.enqueue_many(task.prepare(i) for i in range(n))

    def best_of(
        self, total: int, sq: Callable[[int], None], raw: Callable[[int], None]
    ) -> tuple[float, float]:
        """Jobs/s of each side: the sides alternate in chunks, the best chunk of each counts.

        The machine is shared: alternating short chunks exposes both sides to the same
        disturbances, and the best chunk is the one least disturbed.
        """
        n = max(1, total // self.sizes.chunks)
        rates: dict[str, list[float]] = {"sq": [], "raw": []}
        for i in range(self.sizes.chunks):
            order = [("sq", sq), ("raw", raw)] if i % 2 else [("raw", raw), ("sq", sq)]
            for side, fn in order:
                self.client.delete(KEYS.stream)
                start = time.perf_counter()
                fn(n)
                rates[side].append(n / (time.perf_counter() - start))
        self.client.delete(KEYS.stream)
        return max(rates["sq"]), max(rates["raw"])

    def section_aenqueue(self) -> list[Row]:
        """``await task.aenqueue`` from 50 concurrent coroutines vs sync per-job enqueue.

        Both sides on warm connections, alternating, best of three; the async side also
        reports the event loop's worst lag (a 1 ms ticker) while it enqueues.
        """
        n, coros = self.sizes.enqueue_single, 50
        task = BODIES["noop"]
        enqueue_single(task, 100)  # warm the sync connection and code paths
        sync, aio, lag_ms = [], [], 0.0
        for _ in range(3):
            self.client.delete(KEYS.stream)
            start = time.perf_counter()
            enqueue_single(task, n)
            sync.append(n / (time.perf_counter() - start))
            self.client.delete(KEYS.stream)
            rate, lag = asyncio.run(aenqueue_concurrently(self.app, task, n, coros))
            aio.append(rate)
            lag_ms = max(lag_ms, lag * 1000)
        self.client.delete(KEYS.stream)
        note = (
            f"{n:,} jobs, {coros} coroutines on one loop (pool of "
            f"{self.app.settings.max_connections} connections); raw column: sync "
            f"task.enqueue per job, one thread; best of 3 each; worst loop lag {lag_ms:.1f} ms"
        )
        return [Row("aenqueue, 50 concurrent coroutines", max(aio), "jobs/s", max(sync), None,
                    note)]  # fmt: skip

    def section_drain(self) -> list[Row]:
        """Drains of no-op and INCR jobs, 1 and 2 processes, with the best-of comparison."""
        self.measure(
            [
                (i, b, p, "failures")
                for b in ("noop", "incr")
                for p in (1, 2)
                for i in ("streamq", "raw")
            ]
        )
        rows = [
            self.drain_row("drain no-op, 1 process", "noop", 1, Target("ratio", ">=", 0.40)),
            self.drain_row("drain no-op, 2 processes", "noop", 2, None),
            self.drain_row("drain INCR, 1 process", "incr", 1, None),
            self.drain_row("drain INCR, 2 processes", "incr", 2, None),
        ]
        untracked = self.drain("streamq", UNTRACKED, 1)
        raw_noop = self.drain("raw", "noop", 1)
        rows.insert(
            2,
            Row("drain no-op, 1 process, track=False", untracked.jobs_per_s, "jobs/s",
                raw_noop.jobs_per_s, None, drain_note(untracked, raw_noop)),
        )  # fmt: skip
        sq = max(self.drain("streamq", "incr", p).jobs_per_s for p in (1, 2))
        raw = max(self.drain("raw", "incr", p).jobs_per_s for p in (1, 2))
        rows.append(
            Row("drain INCR, best of 1-2 processes", sq, "jobs/s", raw, Target("ratio", ">=", 0.75))
        )
        return rows

    def section_metrics(self) -> list[Row]:
        """The drains with --metrics-port (metrics middleware in every worker) next to the
        same drains without, measured round-robin; the goal is a drop of at most 5%."""
        kinds = [("noop", 1), ("noop", 2), (UNTRACKED, 1), ("incr", 1), ("incr", 2)]
        self.measure([(i, b, p, "failures") for b, p in kinds for i in ("streamq", METRICS)])
        rows = []
        for body, procs in kinds:
            plain, metered = self.drain("streamq", body, procs), self.drain(METRICS, body, procs)
            rows.append(
                Row(f"drain {body}, {procs} process(es), metrics on", metered.jobs_per_s,
                    "jobs/s", plain.jobs_per_s, Target("ratio", ">=", 0.95),
                    f"raw column: without metrics; runs {metered.runs} vs {plain.runs}")
            )  # fmt: skip
        return rows

    def section_logging(self) -> list[Row]:
        """The cost of one canonical log line per job (to /dev/null)."""
        self.measure(
            [
                ("streamq", "noop", 1, "all"),
                ("streamq", "noop", 1, "failures"),
                ("raw", "noop", 1, "failures"),
            ]
        )
        full = self.drain("streamq", "noop", 1, "all")
        quiet = self.drain("streamq", "noop", 1)
        raw = self.drain("raw", "noop", 1)
        per_job_us = (1 / full.jobs_per_s - 1 / quiet.jobs_per_s) * 1e6
        note = (
            f"--log-jobs all: {full.jobs_per_s / quiet.jobs_per_s:.2f}x the rate with "
            f"failures only; the logger costs {per_job_us:.1f} us/job; {drain_note(full, raw)}"
        )
        return [Row("drain no-op, 1 process, all jobs logged", full.jobs_per_s, "jobs/s",
                    raw.jobs_per_s, None, note)]  # fmt: skip

    def section_pickup(self) -> list[Row]:
        """Enqueue to task start on an idle pool, one job at a time."""
        sq = self.pickup("streamq")
        raw = self.pickup("raw")
        note = f"{self.sizes.pickup} jobs, 2 idle processes; raw: blocking XREADGROUP loop"
        return [
            Row("pickup latency p50", sq[0], "ms", raw[0], Target("value", "<=", 0.5, "ms"), note),
            Row("pickup latency p99", sq[1], "ms", raw[1], Target("value", "<=", 2.0, "ms")),
        ]

    def pickup(self, impl: str) -> tuple[float, float]:
        """p50 and p99 of (task start - just before enqueue), in ms."""
        self.reset()
        argv = self.pool_argv(impl, 2)
        if impl == "raw":
            argv.append("--block")
        n = self.sizes.pickup
        with running(argv) as pool:
            pool.wait_ready(2)
            lat = []
            for _ in range(n + 10):  # the first 10 warm up connections and code paths
                time.sleep(0.005)  # let the pool go back to its blocking read
                bench_tasks.stamp.enqueue(time.time())
                got: Any = self.client.blpop([bench_tasks.STAMPS_KEY], timeout=10)
                if got is None:
                    raise TimeoutError("a pickup job did not run within 10 s")
                sent, started, _pid = got[1].split()
                lat.append((float(started) - float(sent)) * 1000)
        return pct(lat[10:], 50), pct(lat[10:], 99)

    def section_retry(self) -> list[Row]:
        """Jobs that fail once then succeed, zero backoff, against the INCR drain rate.

        The INCR reference is drained again here, alternating with the retry drains, so both
        see the same machine: on a shared 2-core box a rate measured a minute earlier can be
        off by half.
        """
        runs: dict[str, list[Drain]] = {"flaky": [], "incr": []}
        for rep in range(self.sizes.drain_repeat):
            for body in ("flaky", "incr") if rep % 2 == 0 else ("incr", "flaky"):
                runs[body].append(self.drain_once("streamq", body, 1, "failures"))
        flaky, incr = (max(runs[b], key=lambda d: d.jobs_per_s) for b in ("flaky", "incr"))
        flaky = replace(flaky, runs=tuple(d.jobs_per_s for d in runs["flaky"]))
        incr = replace(incr, runs=tuple(d.jobs_per_s for d in runs["incr"]))
        note = (
            f"{flaky.jobs} jobs, 1 process, each runs twice; ratio to a streamq INCR drain "
            f"(1 process) measured alongside; {drain_note(flaky, incr)}"
        )
        return [Row("retry path (fail once, then succeed)", flaky.jobs_per_s, "jobs/s",
                    incr.jobs_per_s, Target("ratio", ">=", 0.5), note)]  # fmt: skip

    def section_delayed(self) -> list[Row]:
        """Lateness of delayed jobs: all due at one instant, and due one by one."""
        rows = []
        n, d = self.sizes.delayed, self.sizes.delayed_s
        for mode in ("burst", "spread"):
            p50, p99, share = self.delayed(mode)
            how = (
                f"{n} jobs all due at now+{d:g}s"
                if mode == "burst"
                else f"{n} jobs enqueued 5 ms apart, each due {d:g}s later"
            )
            note = f"{how}; 2 processes, the busiest ran {share:.0%} of them"
            rows.append(Row(f"delayed lateness p50 ({mode})", p50, "ms", note=note))
            target = Target("value", "<=", 20, "ms")
            rows.append(Row(f"delayed lateness p99 ({mode})", p99, "ms", None, target))
        return rows

    def delayed(self, mode: str) -> tuple[float, float, float]:
        """p50 and p99 of (task start - due time) in ms, and the busiest worker's share."""
        self.reset()
        n, delay = self.sizes.delayed, self.sizes.delayed_s
        with running(self.pool_argv("streamq", 2)) as pool:
            pool.wait_ready(2)
            when = datetime.now(UTC) + timedelta(seconds=delay)
            for _ in range(n):
                if mode == "spread":
                    time.sleep(0.005)
                    when = datetime.now(UTC) + timedelta(seconds=delay)
                # The due time streamq stores, to the ms (App._at_ms).
                due_s = int(when.timestamp() * 1000) / 1000
                bench_tasks.stamp.enqueue_at(when, due_s)
            records = self.stamps(n, timeout_s=delay + 30)
        late = [(start - due) * 1000 for due, start, _ in records]
        pids = [pid for _, _, pid in records]
        share = max(pids.count(p) for p in set(pids)) / len(pids)
        return pct(late, 50), pct(late, 99), share

    def section_periodic(self) -> list[Row]:
        """Tick lateness: many 1-second schedules fired by a 2-process pool's supervisor.

        Lateness is the pool's clock when the tick script returned minus the tick time (the
        ``lateness_ms`` of ``schedule.fired``); ticks of the first second are left out (the
        pool was still starting).
        """
        self.reset()
        n = self.sizes.schedules
        for i in range(n):
            sid = f"bench-{i}"
            self.app.schedule(bench_tasks.noop, every_s=1, args=[i], schedule_id=sid).save()
        try:
            with running(self.pool_argv("streamq", 2)) as pool:
                pool.wait_ready(2)
                start_ms = time.time() * 1000 + 1000
                time.sleep(self.sizes.periodic_s)
                fired = [e for e in pool.events("schedule.fired") if e["tick_ms"] > start_ms]
        finally:
            self.app.schedules.clear()
        late = [float(e["lateness_ms"]) for e in fired]
        ticks = len({e["tick_ms"] for e in fired})
        once = len({e["job_id"] for e in fired}) == len(fired)
        note = (
            f"{n} schedules every_s=1, {ticks} ticks, {len(fired)} fires "
            f"({'each job id once' if once else 'DUPLICATE job ids'}); 2 processes"
        )
        return [
            Row("periodic tick lateness p50", pct(late, 50), "ms", note=note),
            Row("periodic tick lateness p99", pct(late, 99), "ms", None,
                Target("value", "<=", 50, "ms")),
        ]  # fmt: skip

    def section_memory(self) -> list[Row]:
        """Worker RSS across many jobs, and Redis memory per queued job."""
        n = self.sizes.memory
        per_job = {}
        for body in ("noop", UNTRACKED):
            self.reset()
            mem0 = int(self.client.info("memory")["used_memory"])
            self.app.enqueue_many(BODIES[body].prepare(i) for i in range(n))
            per_job[body] = (int(self.client.info("memory")["used_memory"]) - mem0) / n
        self.reset()
        with running(self.pool_argv("streamq", 2)) as pool:
            pool.wait_ready(2)
            pids = pool.children()
            cold = {p: rss_kib(p) for p in pids}
            self.app.enqueue_many(bench_tasks.noop.prepare(i) for i in range(1000))
            self.wait_empty(60)
            warm = {p: rss_kib(p) for p in pids}
            self.app.enqueue_many(bench_tasks.noop.prepare(i) for i in range(n))
            self.wait_empty(max(120.0, n / 200))
            after = {p: rss_kib(p) for p in pids}
        changes = [(after[p] / warm[p] - 1) * 100 for p in pids]
        worst = max(changes, key=abs)
        detail = "; ".join(
            f"pid {p}: {cold[p] / 1024:.1f} cold, {warm[p] / 1024:.1f} warm, "
            f"{after[p] / 1024:.1f} after MiB"
            for p in pids
        )
        return [
            Row(f"worker RSS change over {n:,} jobs", worst, "%", None,
                Target("abs", "<=", 10, "%"), f"vs after a 1,000-job warm-up; {detail}"),
            Row("Redis used_memory per queued job", per_job["noop"], "B", None, None,
                f"{n:,} no-op jobs; track=False: {per_job[UNTRACKED]:,.0f} B; {payload_sizes()}"),
        ]  # fmt: skip

    def section_async(self) -> list[Row]:
        """The asyncio worker: 50 ms sleeps at concurrency 100, and its no-op drain."""
        self.measure(
            [
                ("async", "asleep", 1, "failures"),
                ("async", "anoop", 1, "failures"),
                ("raw", "noop", 1, "failures"),
            ]
        )
        sleep = self.drain("async", "asleep", 1)
        noop = self.drain("async", "anoop", 1)
        raw = self.drain("raw", "noop", 1)
        ceiling = ASYNC_CONCURRENCY / bench_tasks.ASYNC_SLEEP_S
        return [
            Row(f"async drain, {sleep.jobs:,} x sleep 50 ms, concurrency {ASYNC_CONCURRENCY}",
                sleep.jobs_per_s, "jobs/s", None, Target("value", ">=", 1500, "jobs/s"),
                f"1 process; the sleep-bound ceiling is {ceiling:,.0f}/s; runs "
                f"{', '.join(f'{r:,.0f}' for r in sleep.runs)}"),
            Row("async drain no-op, 1 process", noop.jobs_per_s, "jobs/s", raw.jobs_per_s,
                Target("ratio", ">=", 0.40),
                f"async def no-op, concurrency {ASYNC_CONCURRENCY}, vs the raw loop calling the "
                f"sync no-op; {drain_note(noop, raw)}"),
        ]  # fmt: skip

    def section_scaling(self) -> list[Row]:
        """No-op drains with 1, 2 and 4 processes: rate and Redis CPU per 1,000 jobs."""
        self.measure([(i, "noop", p, "failures") for p in (1, 2, 4) for i in ("streamq", "raw")])
        rows = []
        for procs in (1, 2, 4):
            rows.append(self.drain_row(f"scaling no-op, {procs} process(es)", "noop", procs, None))
        return rows


def drain_note(sq: Drain, raw: Drain) -> str:
    """Where each side spent CPU per job: the worker processes and the Redis server."""
    worker = f"worker CPU {sq.worker_cpu_us_per_job} vs {raw.worker_cpu_us_per_job} us/job"
    server = f"Redis CPU {sq.redis_cpu_ms_per_1k} vs {raw.redis_cpu_ms_per_1k} ms/1k jobs"
    checks = " ".join(c for c in (sq.check, raw.check) if c)
    spread = f"runs {spread_text(sq)} vs {spread_text(raw)} jobs/s" if len(sq.runs) > 1 else ""
    return "; ".join(x for x in (worker, server, spread, checks) if x)


def spread_text(d: Drain) -> str:
    """Slowest-fastest of a drain's repeats, in thousands of jobs/s."""
    return f"{min(d.runs) / 1000:.1f}-{max(d.runs) / 1000:.1f}k"


def enqueue_single(task: Task[[int], None], n: int) -> None:
    """What a producer does per job: ``task.enqueue(...)``."""
    enqueue = task.enqueue
    for i in range(n):
        enqueue(i)


async def aenqueue_concurrently(
    app: Any, task: Task[[int], None], n: int, coros: int
) -> tuple[float, float]:
    """Jobs/s of ``n`` aenqueue calls shared by ``coros`` coroutines, and the worst lag of a
    1 ms ticker meanwhile (seconds)."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(0.001)
            lags.append(loop.time() - t - 0.001)

    async def worker(part: range) -> None:
        for i in part:
            await task.aenqueue(i)

    await asyncio.gather(*(worker(range(k, 200, coros)) for k in range(coros)))  # warm
    ticker = asyncio.create_task(tick())
    start = time.perf_counter()
    await asyncio.gather(*(worker(range(k, n, coros)) for k in range(coros)))
    seconds = time.perf_counter() - start
    stop.set()
    await ticker
    await app.aclose()
    return n / seconds, max(lags, default=0.0)


RAW_ID = "0" * 28  # same length as a streamq job id


def raw_payload(i: int) -> bytes:
    """A msgpack map of the same shape and size as streamq's envelope of ``noop(i)``."""
    doc = {
        "v": 1,
        "id": RAW_ID,
        "t": "noop",
        "q": bench_tasks.QUEUE,
        "a": [i],
        "k": {},
        "n": 1,
        "e": time.time_ns() // 1_000_000,
        "p": 1,
    }
    data: bytes = msgpack.packb(doc)
    return data


def raw_single(client: redis.Redis, n: int) -> None:
    """The raw ceiling per job: one XADD round trip each."""
    stream = KEYS.stream
    for i in range(n):
        client.xadd(stream, {b"j": raw_payload(i)})


def raw_bulk(client: redis.Redis, n: int, batch: int = 1000) -> None:
    """The raw ceiling in bulk: pipelined XADD, ``batch`` per round trip."""
    stream = KEYS.stream
    for start in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + batch)):
            pipe.xadd(stream, {b"j": raw_payload(i)})
        pipe.execute()


def payload_sizes() -> str:
    """Encoded size of a streamq no-op job and of the raw loop's payload."""
    env = bench_tasks.noop.prepare(12345)
    return f"payload {len(codec.encode(env))} B (raw {len(raw_payload(12345))} B)"


# -- report -------------------------------------------------------------------------------------
def fmt(value: float | None, unit: str) -> str:
    """A figure in its unit's usual precision."""
    if value is None:
        return "-"
    if unit in {"jobs/s", "B"}:
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:+.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The report as an aligned text table."""
    head = ("figure", "streamq", "raw", "ratio", "unit", "target", "met", "notes")
    body = [
        (
            r.figure,
            fmt(r.value, r.unit),
            fmt(r.raw, r.unit),
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.unit,
            str(r.target) if r.target else "-",
            {True: "yes", False: "NO", None: "-"}[r.met],
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head) - 1)]
    lines = []
    for line in (head, *body):
        cells = [
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=False))
        ]
        lines.append("  ".join([*cells, line[-1]]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Start the private server, run the chosen sections, print the report."""
    sizes = QUICK if args.quick else Sizes()
    chosen = args.only or list(SECTIONS)
    rows: list[Row] = []
    errors: dict[str, str] = {}
    started = time.monotonic()
    load_start = round(os.getloadavg()[0], 2)
    with RedisServer() as server:
        bench = Bench(server.url, sizes, server.proc.pid if server.proc else None)
        version = str(bench.client.info("server")["redis_version"])
        for name in chosen:
            if not args.json:
                print(f"... {name}", file=sys.stderr, flush=True)
            try:
                rows.extend(getattr(bench, f"section_{name}")())
            except Exception as e:  # noqa: BLE001 - a benchmark reports a failed figure, goes on
                errors[name] = f"{type(e).__name__}: {e}"
                rows.append(Row(f"{name}: FAILED", None, "", note=errors[name]))
        drains = [asdict(d) for d in bench.drains.values()]
    meta = {
        "load_avg_1m_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "server": f"redis {version} ({server.binary})",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sizes": asdict(sizes),
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        doc = {"meta": meta, "rows": [row_json(r) for r in rows], "drains": drains}
        print(json.dumps(doc, indent=2))
    else:
        print(" ".join(f"{k}={v}" for k, v in meta.items() if k != "sizes"))
        print(table(rows))
    return 1 if errors else 0


def row_json(r: Row) -> dict[str, Any]:
    """A row as JSON, with its target as text."""
    doc = asdict(r)
    doc["target"] = str(r.target) if r.target else None
    return doc


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="repeatable")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
