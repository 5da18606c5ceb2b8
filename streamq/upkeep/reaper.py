"""Takes back entries whose worker died, and buries those that keep killing workers.

Safe to run in many processes: each step is one script. The XAUTOCLAIM cursor is carried
between steps, so a long head of healthy pending entries cannot starve the rest of the list.
"""

from __future__ import annotations

import structlog

from streamq import codec
from streamq.errors import DecodeError
from streamq.keys import QueueKeys
from streamq.scripts import ReclaimResult
from streamq.settings import DEFAULT_RECORD_TTL_MS, AppSettings
from streamq.store import Store

log = structlog.get_logger("streamq.reaper")

_START = b"0-0"


class Reaper:
    """Crash recovery for the consumer group ``group`` over ``queues``."""

    def __init__(
        self,
        store: Store,
        queues: list[QueueKeys],
        group: str,
        settings: AppSettings,
        count: int = 100,
    ) -> None:
        self.store = store
        self.queues = queues
        self.group = group
        self.settings = settings
        self.count = count
        self._cursors: dict[str, bytes] = {}

    def run_once(self, now_ms: int) -> bool:
        """One claim step per stream; return True if one has more to scan right away."""
        more = False
        for keys in self.queues:
            qs = self.settings.for_queue(keys.queue)
            for stream in keys.streams:
                cursor = self._cursors.get(stream, _START)
                result = self.store.reclaim_idle(
                    keys,
                    stream,
                    self.group,
                    qs.visibility_timeout_ms,
                    cursor,
                    self.count,
                    qs.max_deliveries,
                    now_ms,
                )
                self._cursors[stream] = result.cursor
                more = more or result.cursor != _START
                self._report(keys, result, now_ms, qs.max_deliveries, "idle")
        return more

    def abandon(self, consumer: str, now_ms: int) -> None:
        """Take back at once everything a consumer whose process is known dead still holds.

        Counted as a delivery, like a reclaim after the timeout: a job that kills its worker
        every time still reaches max_deliveries and the dead-letter stream.
        """
        for keys in self.queues:
            qs = self.settings.for_queue(keys.queue)
            for stream in keys.streams:
                result = self.store.reclaim_idle(
                    keys,
                    stream,
                    self.group,
                    0,
                    _START,
                    10_000,
                    qs.max_deliveries,
                    now_ms,
                    dead_consumer=consumer,
                )
                self._report(keys, result, now_ms, qs.max_deliveries, "worker_died")

    def _report(
        self, keys: QueueKeys, result: ReclaimResult, now_ms: int, limit: int, why: str
    ) -> None:
        if result.requeued or result.buried:
            self.store.settle(keys, result, now_ms, DEFAULT_RECORD_TTL_MS)
        if result.requeued or result.deleted:
            log.warning(
                "job.reclaimed",
                queue=keys.queue,
                group=self.group,
                why=why,
                count=len(result.requeued),
                deleted=result.deleted,
                job_ids=[m.job_id for m in result.requeued][:20],
            )
        for moved in result.buried:
            self._log_buried(keys, moved.old_id, moved.payload, limit)

    def prune(self) -> None:
        """Remove consumers that are long gone and own nothing."""
        for keys in self.queues:
            qs = self.settings.for_queue(keys.queue)
            gone = self.store.prune_consumers(
                keys, self.group, int(qs.prune_consumers_after_s * 1000)
            )
            if gone:
                log.info("consumer.removed", queue=keys.queue, group=self.group, consumers=gone)

    def _log_buried(self, keys: QueueKeys, entry_id: bytes, raw: bytes, limit: int) -> None:
        fields: dict[str, object] = {}
        try:
            env = codec.decode(raw, len(raw))
            fields = {"job_id": env.id, "task": env.task, "attempt": env.attempt}
        except DecodeError:
            fields = {"entry_id": entry_id.decode()}
        log.error(
            "job.dead_lettered",
            queue=keys.queue,
            group=self.group,
            outcome="dead",
            reason="max_deliveries",
            max_deliveries=limit,
            **fields,
        )
