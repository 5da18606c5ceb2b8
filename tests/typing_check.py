"""Checked by mypy only (not collected by pytest): job results of sync and async tasks are
typed as the task's return value, and calling an async task gives its coroutine."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

import streamq

app = streamq.App("redis://127.0.0.1:1/0")


@app.task
def sync_add(a: int, b: int) -> int:
    return a + b


@app.task
async def async_add(a: int, b: int) -> int:
    return a + b


@app.task(max_retries=1)
async def async_name(n: int) -> str:
    return str(n)


@app.task(max_retries=1)
def sync_name(n: int) -> str:
    return str(n)


async def _check() -> None:
    assert_type(await (await sync_add.aenqueue(1, 2)).aresult(), int)
    assert_type(await (await async_add.aenqueue(1, 2)).aresult(), int)
    assert_type(await (await async_name.aenqueue(1)).aresult(), str)
    assert_type(await (await sync_name.with_options(job_id="x").aenqueue(1)).aresult(), str)
    assert_type(async_add.enqueue(1, 2).result(), int)
    assert_type(async_add.with_options(max_retries=0).enqueue(1, 2).result(), int)
    coro = async_add(1, 2)
    _ = assert_type(coro, Coroutine[Any, Any, int])
    assert_type(await coro, int)
    assert_type(sync_add(1, 2), int)
    assert_type(await app.aenqueue("sync_add", args=[1, 2]), streamq.Job[Any])
    await async_add.aenqueue("x", 2)  # type: ignore[arg-type]  # checked like enqueue
