"""Job records (status, progress, cancel, result waits) and dead letters.

Each verb is a plan (module-level, no I/O) and a one-line method of :class:`RecordVerbs`;
waiting for a result is the executor's business (pub/sub), so it stays a method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from streamq import scripts
from streamq.keys import QueueKeys
from streamq.plan import Batch, Plan, cmd, one
from streamq.store.base import DeadLetter, StoreBase, as_str
from streamq.store.node import wrapped


def job_record_plan(keys: QueueKeys, job_id: str) -> Plan[dict[str, bytes]]:
    """The job's hash (empty when it expired or never existed)."""
    (raw,) = yield Batch([cmd("HGETALL", keys.job(job_id))])
    return {as_str(k): v for k, v in raw.items()}


def set_progress_plan(keys: QueueKeys, job_id: str, progress: float, note: str) -> Plan[None]:
    """Store a running job's progress (0..1) and a note, for its handle to read."""
    yield Batch([cmd("HSET", keys.job(job_id), "progress", progress, "note", note)])


def cancel_plan(keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> Plan[str]:
    """Cancel a job; see ``lua/cancel.lua`` for what each outcome means."""
    return one(
        scripts.cancel(
            keys.job(job_id), keys.cancels, job_id, now_ms, ttl_ms, keys.done_channel(job_id)
        )
    )


def cancels_plan(keys: QueueKeys) -> Plan[set[str]]:
    """Ids of running jobs whose cancellation was asked for."""
    (raw,) = yield Batch([cmd("SMEMBERS", keys.cancels)])
    return {as_str(m) for m in raw}


def forget_cancel_plan(keys: QueueKeys, job_id: str) -> Plan[None]:
    """Drop a cancel request whose job is no longer running anywhere."""
    yield Batch([cmd("SREM", keys.cancels, job_id)])


def dead_list_plan(keys: QueueKeys, start: str = "-", count: int = 100) -> Plan[list[DeadLetter]]:
    """Dead letters from ``start`` (inclusive), oldest first."""
    (rows,) = yield Batch([cmd("XRANGE", keys.dead, start, "+", "COUNT", count)])
    return [
        DeadLetter(eid.decode(), {k.decode(): v for k, v in fields.items()}) for eid, fields in rows
    ]


def dead_replay_plan(
    keys: QueueKeys, priority: int, now_ms: int, moves: Sequence[tuple[bytes, bytes, str, str]]
) -> Plan[int]:
    """Move (dead id, payload, job id, task) back to the stream atomically; return count."""
    rows = [(keys.job(jid), did, payload, jid, task) for did, payload, jid, task in moves]
    return one(scripts.replay(keys.dead, keys.stream_for(priority), now_ms, rows))


def dead_delete_plan(keys: QueueKeys, ids: list[str]) -> Plan[int]:
    """Delete dead letters by id; return how many existed."""
    if not ids:
        return 0
    (n,) = yield Batch([cmd("XDEL", keys.dead, *ids)])
    return int(n)


class RecordVerbs(StoreBase):
    """Job records (status, progress, cancel, result waits) and dead letters."""

    def job_record(self, keys: QueueKeys, job_id: str) -> dict[str, bytes]:
        """The job's hash (empty when it expired or never existed)."""
        return self._run(job_record_plan(keys, job_id), "job lookup failed")

    def set_progress(self, keys: QueueKeys, job_id: str, progress: float, note: str) -> None:
        """Store a running job's progress (0..1) and a note, for its handle to read."""
        self._run(set_progress_plan(keys, job_id, progress, note), "progress failed")

    def cancel(self, keys: QueueKeys, job_id: str, now_ms: int, ttl_ms: int) -> str:
        """Cancel a job; see ``lua/cancel.lua`` for what each outcome means."""
        return self._run(cancel_plan(keys, job_id, now_ms, ttl_ms), "cancel failed")

    def cancels(self, keys: QueueKeys) -> set[str]:
        """Ids of running jobs whose cancellation was asked for."""
        return self._run(cancels_plan(keys), "cancel list failed")

    def forget_cancel(self, keys: QueueKeys, job_id: str) -> None:
        """Drop a cancel request whose job is no longer running anywhere."""
        self._run(forget_cancel_plan(keys, job_id), "cancel cleanup failed")

    def wait_done(
        self, keys: QueueKeys, job_id: str, timeout_s: float, is_done: Callable[[], bool]
    ) -> bool:
        """Block (pub/sub, no polling) until the job is final or ``timeout_s`` passes.

        Subscribes first and checks ``is_done`` after, so a finish in between is not missed.
        """
        deadline = time.monotonic() + timeout_s
        with wrapped("result wait failed"):
            pubsub = self.client.pubsub(  # type: ignore[no-untyped-call]  # untyped in redis-py
                ignore_subscribe_messages=True
            )
            try:
                pubsub.subscribe(keys.done_channel(job_id))
                while True:
                    if is_done():
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    pubsub.get_message(timeout=left)
            finally:
                pubsub.close()

    def dead_list(self, keys: QueueKeys, start: str = "-", count: int = 100) -> list[DeadLetter]:
        """Dead letters from ``start`` (inclusive), oldest first."""
        return self._run(dead_list_plan(keys, start, count), "dead-letter read failed")

    def dead_replay(
        self,
        keys: QueueKeys,
        priority: int,
        now_ms: int,
        moves: Sequence[tuple[bytes, bytes, str, str]],
    ) -> int:
        """Move (dead id, payload, job id, task) back to the stream atomically; return count."""
        return self._run(dead_replay_plan(keys, priority, now_ms, moves), "replay failed")

    def dead_delete(self, keys: QueueKeys, ids: list[str]) -> int:
        """Delete dead letters by id; return how many existed."""
        return self._run(dead_delete_plan(keys, ids), "dead-letter purge failed")
