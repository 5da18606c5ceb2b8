"""The fault scenarios' tasks as ``async def``: same names, same ledger, same environment as
:mod:`tests.faults.app`, so a scenario runs unchanged against a pool of asyncio workers.

The ledger is written through ``redis.asyncio`` (one client per process: the pool forks after
importing us), so a task never blocks its worker's event loop.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio as aioredis

import streamq
from tests.faults.app import DONE, RUNS, STARTS, TRIES
from tests.faults.app import app as sync_app

# Same URL, settings and queue as the sync fault app; only the task bodies differ.
app = streamq.App(sync_app.redis_url, settings=sync_app.settings)

_ledgers: dict[int, aioredis.Redis] = {}


def _ledger() -> aioredis.Redis:
    """This process's ledger client."""
    pid = os.getpid()
    client = _ledgers.get(pid)
    if client is None:
        client = aioredis.Redis.from_url(os.environ["SQ_FAULT_LEDGER_URL"], socket_timeout=10)
        _ledgers.clear()
        _ledgers[pid] = client
    return client


async def _finished(tag: str) -> None:
    pipe = _ledger().pipeline(transaction=True)
    pipe.hincrby(DONE, tag, 1)
    pipe.rpush(RUNS, f"{tag} {os.getpid()} {time.time():.3f}")
    await pipe.execute()


@app.task
async def work(tag: str, ms: float) -> None:
    """Work for ``ms`` milliseconds without blocking the loop; start and finish recorded."""
    await _ledger().hincrby(STARTS, tag, 1)
    if ms > 0:
        await asyncio.sleep(ms / 1000)
    await _finished(tag)


@app.task(max_retries=3, backoff_base_s=0.01, backoff_cap_s=0.05)
async def flaky(tag: str, failures: int) -> None:
    """Fail the first ``failures`` attempts, then finish."""
    if int(await _ledger().hincrby(TRIES, tag, 1)) <= failures:
        raise RuntimeError(f"planned failure of {tag}")
    await _finished(tag)


@app.task(max_retries=1, backoff_base_s=0.01, backoff_cap_s=0.05)
async def doomed(tag: str) -> None:
    """Fail every attempt, so the job ends in the dead-letter stream."""
    await _ledger().hincrby(TRIES, tag, 1)
    raise ValueError(f"{tag} always fails")
