"""The App's awaitable producer calls: ``aenqueue``, ``asend``, ``aenqueue_many``, ``aclose``.

A mixin of :class:`~streamq.producer.app.App`. Each call builds its envelope and decides
resends with the same functions as its blocking twin (``App._named``, ``App._when``,
:mod:`streamq.producer.sending`); only the waiting differs: ``redis.asyncio`` through the
running loop's :class:`~streamq.store.aio.AsyncStore`, whose pool is bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from streamq.job import Envelope
from streamq.producer import sending
from streamq.producer.handle import Job
from streamq.producer.inline import asend_inline
from streamq.store.aio import AsyncStore, LoopStores
from streamq.store.base import aconnect

if TYPE_CHECKING:
    from streamq.producer.app import App


class AsyncProducing:
    """Awaitable forms of the App's producer calls; the sync ones keep working alongside."""

    _astores: LoopStores

    def _app(self) -> App:
        return cast("App", self)

    @property
    def astore(self) -> AsyncStore:
        """The running event loop's store (one per loop and process; bounded pool of
        ``AppSettings.max_connections``); closed when the loop ends, or by :meth:`aclose`.

        Raises:
            RuntimeError: no event loop is running in this thread.
        """
        app = self._app()
        s = app.settings
        url = app.redis_url
        return self._astores.current(
            url,
            lambda: AsyncStore(aconnect(url, s.socket_timeout_s, s.tls, s.max_connections)),
        )

    async def aclose(self) -> None:
        """Close the running loop's connections; the next awaitable call opens new ones.

        Not required (a store closes when its loop ends under ``asyncio.run`` or any runner
        that cancels leftover tasks), but call it in a shutdown hook (FastAPI ``lifespan``)
        to close them at a moment of your choosing.
        """
        await self._astores.aclose()

    async def aenqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: str | int | None = None,
        max_retries: int | None = None,
        backoff_base_s: float | None = None,
        backoff_cap_s: float | None = None,
        timeout_s: float | None = None,
        job_id: str | None = None,
        unique_for_s: float | None = None,
    ) -> Job[Any]:
        """:meth:`App.enqueue` (by name) without blocking the event loop; the same checks.

        Raises:
            ConfigError: an option that cannot work.
            EnqueueError: arguments that do not fit a registered task, or Redis did not
                confirm the job.
        """
        env = self._app()._named(
            task,
            args,
            kwargs,
            queue=queue,
            priority=priority,
            max_retries=max_retries,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            timeout_s=timeout_s,
            job_id=job_id,
            unique_for_s=unique_for_s,
        )
        return await self.asend(env, delay=delay, at=at)

    async def aenqueue_in(
        self, delay: float | timedelta, task: str, *a: Any, **kw: Any
    ) -> Job[Any]:
        """:meth:`App.enqueue_in`, awaitable."""
        return await self.aenqueue(task, *a, delay=delay, **kw)

    async def aenqueue_at(self, when: datetime, task: str, *a: Any, **kw: Any) -> Job[Any]:
        """:meth:`App.enqueue_at`, awaitable."""
        return await self.aenqueue(task, *a, at=when, **kw)

    async def asend(
        self,
        env: Envelope,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        unique_for_s: float | None = None,
    ) -> Job[Any]:
        """:meth:`App.send`, awaitable: the same resends with the same job id, the same errors.

        Raises:
            ConfigError: a negative delay, a naive ``at``, or a bad ``unique_for_s``.
            EnqueueError: Redis did not confirm it, or refused it.
            PayloadTooLarge: the encoding is over ``max_payload_bytes``.
        """
        app = self._app()
        env, due = app._when(env, delay, at, unique_for_s)
        mode = app._eager.mode()
        if mode is not None:
            return (await asend_inline(app, [env], mode, due))[0]
        (job,) = await self._asend_batch([env], None, due)
        return job

    async def aenqueue_many(
        self, envelopes: Iterable[Envelope], batch_size: int = 1000
    ) -> list[Job[Any]]:
        """:meth:`App.enqueue_many`, awaitable: one round trip per ``batch_size`` jobs."""
        app = self._app()
        mode = app._eager.mode()
        if mode is not None:
            return await asend_inline(app, list(envelopes), mode, 0)
        jobs: list[Job[Any]] = []
        for batch in sending.batches(envelopes, batch_size):
            jobs.extend(await self._asend_batch(batch, len(jobs)))
        return jobs

    async def _asend_batch(
        self, batch: list[Envelope], done: int | None, due_ms: int = 0
    ) -> list[Job[Any]]:
        app = self._app()
        steps = sending.sending(batch, app._rows(batch, due_ms), done)
        return app._jobs(batch, await sending.asend(self.astore, steps), due_ms)
