"""Time limits and cancellation of running jobs, enforced by the supervisor.

Each child publishes what it runs in a shared-memory slot (:mod:`streamq.worker.slots`). A task gets
the chance to stop on its own first (``Cancelled`` / ``TimeLimitExceeded`` raised in it); one
that does not is killed after ``cancel_grace_s``, its outcome recorded here as its worker
would have, and its process replaced by the supervisor's usual restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from typing import Any

from streamq import codec
from streamq.clock import now_ms
from streamq.errors import TimeLimitExceeded
from streamq.keys import QueueKeys
from streamq.producer.app import App
from streamq.scripts import Finished
from streamq.settings import DEFAULT_RECORD_TTL_MS, WorkerSettings
from streamq.worker.outcomes import Outcomes, Retrying, job_fields
from streamq.worker.slots import Running, Slots


class JobWatch:
    """Checks the running jobs of one pool against cancel requests and deadlines."""

    def __init__(
        self,
        app: App,
        settings: WorkerSettings,
        queues: list[QueueKeys],
        slots: Slots,
        log: Any,
    ) -> None:
        self.app = app
        self.settings = settings
        self.queues = queues
        self.slots = slots
        self.log = log
        self._signalled: dict[str, int] = {}  # job id -> when its child got SIGUSR1 (ms)

    def check(self, children: Iterable[tuple[int, int]]) -> None:
        """One pass over (slot, pid) of the live children."""
        store = self.app.store
        by_queue = {keys: store.cancels(keys) for keys in self.queues}
        cancels = set().union(*by_queue.values())
        grace_ms = int(self.settings.cancel_grace_s * 1000)
        now = now_ms()
        running: set[str] = set()
        for slot, pid in children:
            run = self.slots.get(slot)
            if run is None:
                continue
            running.add(run.job_id)
            if run.job_id in cancels:
                asked = self._signalled.setdefault(run.job_id, now)
                if asked == now:
                    self.slots.request_cancel(slot, run.job_id)
                    _kill(pid, signal.SIGUSR1)
                elif now - asked > grace_ms:
                    _kill(pid, signal.SIGKILL)
                    self._record_killed(run, "cancelled")
            elif run.deadline_ms and now > run.deadline_ms + grace_ms:
                self.log.warning(
                    "job.timed_out",
                    job_id=run.job_id,
                    child_pid=pid,
                    message="task ignored its time limit; killing its process",
                )
                _kill(pid, signal.SIGKILL)
                self._record_killed(run, "timeout")
        for job_id in list(self._signalled):
            if job_id not in running:
                del self._signalled[job_id]
        for keys, ids in by_queue.items():
            for job_id in ids - running:
                # Finished before it could be stopped, or its worker is gone: not ours to wait on.
                if store.job_record(keys, job_id).get("state") != b"running":
                    store.forget_cancel(keys, job_id)

    def _record_killed(self, run: Running, why: str) -> None:
        """Record the outcome of a job whose process we killed, as its worker would have."""
        store = self.app.store
        keys = QueueKeys(run.queue)
        entry = store.entry(keys, run.priority, run.entry_id.encode())
        if entry is None or entry.payload is None:
            return  # already recorded, or reclaimed meanwhile
        env = codec.decode(entry.payload, self.app.settings.max_payload_bytes)
        task = self.app.tasks.get(env.task)
        ttl = task.options.record_ttl_ms if task else DEFAULT_RECORD_TTL_MS
        if why == "cancelled" or task is None:
            done = Finished(entry.id, keys.job(env.id), env.id, "cancelled", b"", ttl)
            store.ack(keys, entry.priority, self.settings.group, now_ms(), [done])
            self.log.info(
                "job.cancelled", **job_fields(env), outcome="cancelled", running=True, killed=True
            )
            return
        outcomes = Outcomes(self.app, self.settings.group, f"supervisor:{os.getpid()}", self.log)
        exc = TimeLimitExceeded(f"job {env.id} ran past its time limit and was killed")
        outcome = outcomes.failed(entry, env, exc, float(now_ms() - run.started_ms))
        if isinstance(outcome, Retrying):
            store.ack(keys, entry.priority, self.settings.group, now_ms(), [], [outcome.row()])
        else:
            store.bury(*outcome)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
