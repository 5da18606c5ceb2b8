"""The benchmark's task bodies, and the bare redis-py loop that streamq is measured against.

The worker pool imports this module as ``bench_tasks:app``. Run as a script,
``python scripts/bench_tasks.py raw --url U --processes N`` is the raw ceiling: N forked
processes doing XREADGROUP COUNT n + msgpack decode + call + pipelined XACK/XDEL and nothing
else, calling the very functions registered below, so both sides pay the same task cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack
import redis

import streamq
from streamq.keys import QueueKeys
from streamq.pool.process import die_with_parent
from streamq.settings import AppSettings

QUEUE = "bench"
GROUP = "bench"
T0_KEY = "bench:t0"
COUNTER_KEY = "bench:counter"
STAMPS_KEY = "bench:stamps"
RETRY_KEY = "bench:retry"
RAW_COUNT = 256  # streamq's WorkerSettings.max_batch, so both read at most as much at once

# Port 1 never answers: the benchmark always sets its private server's URL (``--redis-url`` in
# the pool), so a slip can never reach a shared Redis on the default localhost:6379.
app = streamq.App("redis://127.0.0.1:1/0", AppSettings(default_queue=QUEUE))

_side: dict[tuple[int, str], redis.Redis] = {}


def side(url: str | None = None) -> redis.Redis:
    """The task's own connection (one per process), as a real job has its own database client."""
    key = (os.getpid(), url or app.redis_url)
    client = _side.get(key)
    if client is None:
        client = _side[key] = redis.Redis.from_url(key[1])
    return client


@app.task
def noop(i: int) -> None:
    """Does nothing: what a drain of these costs is the queue's own cost per job."""


@app.task(track=False)
def noop_untracked(i: int) -> None:
    """A no-op that keeps no job record (``track=False``): the fire-and-forget path."""


@app.task
def incr(i: int) -> None:
    """One Redis write on the task's own connection, like a real job's."""
    side().incr(COUNTER_KEY)


@app.task
def mark(i: int) -> None:
    """The first job of a drain: records when jobs started running (the earliest mark wins)."""
    side().set(T0_KEY, repr(time.time()), nx=True)


@app.task
def stamp(sent: float) -> None:
    """Records (enqueue or due time, start time, pid) for pickup latency and delayed lateness."""
    started = time.time()
    side().rpush(STAMPS_KEY, f"{sent!r} {started!r} {os.getpid()}")


@app.task(max_retries=3, backoff_base_s=0.0, backoff_cap_s=0.0)
def flaky(i: int) -> None:
    """Fails its first run and succeeds its second, each with one Redis write like ``incr``."""
    if side().hincrby(RETRY_KEY, str(i), 1) == 1:
        raise RuntimeError("planned first failure")


# The asyncio worker's bodies live in an app of their own: an app with any async task runs
# asyncio workers, which must not change the sync figures above.
async_app = streamq.App("redis://127.0.0.1:1/0", AppSettings(default_queue=QUEUE))
ASYNC_SLEEP_S = 0.05


@async_app.task(name="amark")
async def amark(i: int) -> None:
    """``mark`` for the asyncio pool (a quick blocking SET: it runs once per drain)."""
    side(async_app.redis_url).set(T0_KEY, repr(time.time()), nx=True)


@async_app.task(name="anoop")
async def anoop(i: int) -> None:
    """An async task that does nothing: the asyncio worker's own cost per job."""


@async_app.task(name="asleep")
async def asleep(i: int) -> None:
    """Waits 50 ms without blocking the loop: concurrency, not CPU, bounds the rate."""
    await asyncio.sleep(ASYNC_SLEEP_S)


def raw_consume(url: str, consumer: str, block: bool) -> int:
    """The raw ceiling of one process: read, decode, call, ack and delete; nothing else."""
    app.redis_url = url
    client = redis.Redis.from_url(url)
    client.ping()
    _emit({"event": "worker.started", "pid": os.getpid()})
    stream = QueueKeys(QUEUE).stream
    fns: dict[str, Callable[..., Any]] = {name: t.fn for name, t in app.tasks.items()}
    unpackb = msgpack.unpackb
    done = 0
    while True:
        reply: Any = client.xreadgroup(
            GROUP, consumer, {stream: ">"}, count=RAW_COUNT, block=1000 if block else None
        )
        if not reply:
            if block:
                continue
            return done
        ids = []
        for entry_id, fields in reply[0][1]:
            doc = unpackb(fields[b"j"])
            fns[doc["t"]](*doc["a"], **doc["k"])
            ids.append(entry_id)
        pipe = client.pipeline(transaction=False)
        pipe.xack(stream, GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()
        done += len(ids)


def _emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def raw_pool(url: str, processes: int, block: bool) -> int:
    """Fork ``processes`` raw consumers (after imports, as the streamq pool does); wait for them."""
    pids = []
    for slot in range(processes):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            code = 1
            try:
                done = raw_consume(url, f"raw-{os.getpid()}-{slot}", block)
                times = os.times()
                _emit({"event": "worker.stopped", "processed": done, "cpu_s": times[0] + times[1]})
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
        _emit({"event": "worker.spawned", "slot": slot, "child_pid": pid})
    worst = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        worst = max(worst, abs(os.waitstatus_to_exitcode(status)))
    return worst


def main() -> int:
    """``raw`` subcommand: run the raw ceiling pool until the queue is empty (or forever)."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    raw = sub.add_parser("raw", help="bare redis-py consumers over the bench queue")
    raw.add_argument("--url", required=True)
    raw.add_argument("--processes", type=int, default=1)
    raw.add_argument("--block", action="store_true", help="wait for jobs instead of exiting")
    args = parser.parse_args()
    return raw_pool(args.url, args.processes, args.block)


if __name__ == "__main__":
    sys.exit(main())
