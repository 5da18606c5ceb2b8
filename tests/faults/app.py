"""Tasks the fault scenarios run: each run is written to a ledger Redis that no fault touches.

The system under test may crash, lose its network or freeze; the ledger never does, so what
the tasks record there is ground truth for the accounting in :mod:`tests.faults.ledger`.
Everything is configured from the environment, because the worker pool imports this module
in its own process: ``SQ_FAULT_QUEUE``, ``SQ_FAULT_LEDGER_URL``, ``SQ_FAULT_VT_S`` (visibility
timeout), ``SQ_FAULT_MAX_DELIVERIES`` and ``SQ_FAULT_SOCKET_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import time

import redis

import streamq
from streamq.settings import AppSettings, QueueSettings

QUEUE = os.environ.get("SQ_FAULT_QUEUE", "default")

# Never the App default (the shared server on the default port): a port nothing answers on
# unless the test passes its own server's URL.
app = streamq.App(
    os.environ.get("STREAMQ_REDIS_URL", "redis://127.0.0.1:1/0"),
    settings=AppSettings(
        default_queue=QUEUE,
        socket_timeout_s=float(os.environ.get("SQ_FAULT_SOCKET_TIMEOUT_S", "10")),
        default_queue_settings=QueueSettings(
            visibility_timeout_s=float(os.environ.get("SQ_FAULT_VT_S", "1.5")),
            max_deliveries=int(os.environ.get("SQ_FAULT_MAX_DELIVERIES", "10")),
        ),
    ),
)

# Ledger keys; tests read them through tests.faults.ledger.LedgerKeys (same spelling).
STARTS = f"sqfault:{QUEUE}:starts"  # hash: job tag -> runs started
DONE = f"sqfault:{QUEUE}:done"  # hash: job tag -> runs finished
RUNS = f"sqfault:{QUEUE}:runs"  # list: "tag pid unix_time" per finished run
TRIES = f"sqfault:{QUEUE}:tries"  # hash: job tag -> attempts of flaky/doomed tasks

_ledgers: dict[int, redis.Redis] = {}


def _ledger() -> redis.Redis:
    """This process's ledger client (one per pid: the pool forks after importing us)."""
    pid = os.getpid()
    client = _ledgers.get(pid)
    if client is None:
        client = redis.Redis.from_url(os.environ["SQ_FAULT_LEDGER_URL"], socket_timeout=10)
        _ledgers.clear()
        _ledgers[pid] = client
    return client


def _finished(tag: str) -> None:
    pipe = _ledger().pipeline(transaction=True)
    pipe.hincrby(DONE, tag, 1)
    pipe.rpush(RUNS, f"{tag} {os.getpid()} {time.time():.3f}")
    pipe.execute()


@app.task
def work(tag: str, ms: float) -> None:
    """Work for ``ms`` milliseconds; the start and the finish are both recorded."""
    _ledger().hincrby(STARTS, tag, 1)
    if ms > 0:
        time.sleep(ms / 1000)
    _finished(tag)


@app.task(max_retries=3, backoff_base_s=0.01, backoff_cap_s=0.05)
def flaky(tag: str, failures: int) -> None:
    """Fail the first ``failures`` attempts, then finish."""
    if int(_ledger().hincrby(TRIES, tag, 1)) <= failures:
        raise RuntimeError(f"planned failure of {tag}")
    _finished(tag)


@app.task(max_retries=1, backoff_base_s=0.01, backoff_cap_s=0.05)
def doomed(tag: str) -> None:
    """Fail every attempt, so the job ends in the dead-letter stream."""
    _ledger().hincrby(TRIES, tag, 1)
    raise ValueError(f"{tag} always fails")
