"""Fires periodic schedules: every pool runs this, with no beat process and no leader.

Each due schedule is one compare-and-set script call (``lua/tick.lua``): it advances the
schedule's next fire time and enqueues the tick's job, whose id is the schedule id plus the
tick time. Pools racing on a tick all read the same stored state; only the first call finds
it unchanged, so a tick fires once however many pools run, and a restart, a failover or a
clock step cannot fire it again (see ``docs/periodic.md`` for what each guarantee rests on).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import structlog

from streamq import codec
from streamq.cron import iso, plan
from streamq.errors import DecodeError, EnqueueError
from streamq.keys import QueueKeys
from streamq.producer.schedule import save
from streamq.schedule import ScheduleSpec, decode_spec
from streamq.scripts import Tick
from streamq.store import Store, field_text

log = structlog.get_logger("streamq.periodic")

# How far a tick may be ahead of the Redis server's clock and still fire: more means this
# pool's clock runs ahead, and firing would be early (see lua/tick.lua).
MAX_AHEAD_MS = 1000


class Periodic:
    """The periodic schedules of ``queues``, one :meth:`run_once` at a time.

    Args:
        store: this process's store.
        queues: the queues whose schedules this pool fires (the ones it serves).
        tasks: names of the tasks this pool can run; a schedule of another task is reported
            and left for a pool that knows it.
        defined: the schedules of this pool's code, written to Redis on the first step.
        max_payload_bytes: the App's payload limit, for tick jobs.
        max_sleep_ms: longest wait between steps, so a schedule added elsewhere with an
            earlier tick is seen at most this late.
    """

    def __init__(
        self,
        store: Store,
        queues: Sequence[QueueKeys],
        tasks: Collection[str],
        defined: Sequence[ScheduleSpec] = (),
        max_payload_bytes: int = codec.DEFAULT_MAX_PAYLOAD_BYTES,
        max_sleep_ms: int = 100,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.queues = list(queues)
        self.tasks = set(tasks)
        served = {k.queue for k in self.queues}
        self.defined = [s for s in defined if s.queue in served]
        self.max_payload_bytes = max_payload_bytes
        self.max_sleep_ms = max_sleep_ms
        self.batch = batch
        self._published = False
        self._started = 0.0  # monotonic start of the current step
        self._specs: dict[bytes, ScheduleSpec] = {}
        self._reported: set[tuple[str, str, str]] = set()  # (queue, id, what): once each

    def run_once(self, now_ms: int) -> int:
        """Fire what is due at ``now_ms``; return the time (ms) to call again."""
        if not self._published:
            self.publish(now_ms)
        self._started = time.monotonic()
        wake = now_ms + self.max_sleep_ms
        for keys in self.queues:
            due, earliest = self.store.schedules_due(keys, now_ms, self.batch)
            if due:
                wake = min(wake, self._fire(keys, due, now_ms))
            if len(due) >= self.batch:
                wake = now_ms
            elif earliest > now_ms:
                wake = min(wake, earliest)
        return wake

    def publish(self, now_ms: int) -> None:
        """Write this code's definitions where they differ from the stored ones, and report
        stored schedules written from code that this code no longer defines."""
        for spec in self.defined:
            what, old = save(self.store, spec, "code", now_ms)
            if what != "same":
                log.info(
                    "schedule.created" if what == "created" else "schedule.updated",
                    schedule_id=spec.id,
                    queue=spec.queue,
                    task=spec.task,
                    content_hash=spec.content_hash,
                    previous_hash=old or None,
                )
        ours = {(s.queue, s.id) for s in self.defined}
        for keys in self.queues:
            for schedule_id in self.store.schedule_ids(keys):
                rec = self.store.schedule_record(keys, schedule_id)
                if (keys.queue, schedule_id) not in ours and field_text(rec, "source") == "code":
                    log.warning(
                        "schedule.not_in_code",
                        schedule_id=schedule_id,
                        queue=keys.queue,
                        hint="still fired; retire it with `streamq schedules remove`",
                    )
        self._published = True

    def _fire(self, keys: QueueKeys, due: list[tuple[str, int]], now_ms: int) -> int:
        """Fire the due schedules of one queue: one round trip to read them, one to fire
        them all; return when the earliest of them next needs a step."""
        wake = now_ms + self.max_sleep_ms
        records = self.store.schedule_records(keys, [schedule_id for schedule_id, _ in due])
        batch: list[tuple[ScheduleSpec, Tick, int]] = []
        for (schedule_id, due_ms), rec in zip(due, records, strict=True):
            got = self._prepare(keys, schedule_id, rec, due_ms, now_ms)
            if isinstance(got, int):
                wake = min(wake, got) if got >= 0 else wake
            else:
                batch.append(got)
        if batch:
            rows = [(tick, spec.priority) for spec, tick, _ in batch]
            results = self.store.schedule_ticks(keys, rows, now_ms, MAX_AHEAD_MS)
            # Lateness as of the reply, the moment the jobs are in: the same for the batch.
            done_ms = now_ms + round((time.monotonic() - self._started) * 1000)
            for (spec, tick, skipped), (status, detail) in zip(batch, results, strict=True):
                nxt = self._outcome(spec, tick, skipped, status, detail, done_ms)
                wake = min(wake, nxt) if nxt >= 0 else wake
        return wake

    def _spec(self, raw: bytes) -> ScheduleSpec:
        """The decoded definition, cached by its bytes: it changes rarely, ticks often."""
        spec = self._specs.get(raw)
        if spec is None:
            if len(self._specs) > 10_000:
                self._specs.clear()
            spec = self._specs[raw] = decode_spec(raw)
        return spec

    def _prepare(
        self, keys: QueueKeys, schedule_id: str, rec: dict[str, bytes], due_ms: int, now_ms: int
    ) -> tuple[ScheduleSpec, Tick, int] | int:
        """The tick to send for one due schedule, with how many ticks it skips; or when to
        look again (-1: no opinion) when there is nothing to send."""
        if not rec:
            return now_ms  # removed since the poll
        try:
            spec = self._spec(rec.get("def", b""))
        except DecodeError as e:
            self._report(keys, schedule_id, "schedule.undecodable", error_message=str(e))
            return -1
        if spec.task not in self.tasks:
            self._report(keys, schedule_id, "schedule.task_unknown", task=spec.task)
            return -1
        p = plan(spec.timing, spec.missed, due_ms, now_ms)
        if p.fire_ms < 0 and p.skipped == 0:
            return p.next_ms  # not due after all (another pool moved it): nothing to do
        job_id = spec.job_id(p.fire_ms) if p.fire_ms >= 0 else ""
        try:
            payload = (
                codec.encode(spec.envelope(job_id, now_ms, p.fire_ms), self.max_payload_bytes)
                if job_id
                else b""
            )
        except EnqueueError as e:
            self._report(keys, schedule_id, "schedule.unencodable", error_message=str(e))
            return -1
        tick = Tick(
            spec.id,
            due_ms,
            p.next_ms,
            p.fire_ms if job_id else spec.timing.latest_at_or_before(now_ms),
            job_id,
            payload,
            p.fire_ms + spec.jitter_for(p.fire_ms) if job_id and spec.jitter_ms else 0,
            spec.task,
            spec.overlap == "skip",
            field_text(rec, "hash"),
            field_text(rec, "last_job"),
        )
        return spec, tick, p.skipped

    def _outcome(
        self, spec: ScheduleSpec, tick: Tick, skipped: int, status: str, detail: str, now_ms: int
    ) -> int:
        """Log what the tick script did; return when the schedule next needs a step."""
        if status == "stale":
            return now_ms  # another pool won (or the definition changed): read it again
        if status == "gone":
            return -1
        if status == "early":
            ahead_ms = now_ms - int(detail)
            self._report(QueueKeys(spec.queue), spec.id, "schedule.clock_ahead", ahead_ms=ahead_ms)
            return -1
        base = {"schedule_id": spec.id, "queue": spec.queue, "task": spec.task}
        if skipped:
            log.warning(
                "schedule.skipped",
                **base,
                reason="missed",
                policy=spec.missed,
                ticks=skipped,
                first_tick=iso(tick.expected_ms, spec.timing.tz),
            )
        if tick.job_id:
            fields = {
                **base,
                "tick": iso(tick.tick_ms, spec.timing.tz),
                "tick_ms": tick.tick_ms,
                "job_id": tick.job_id,
                "lateness_ms": now_ms - tick.tick_ms,
            }
            if status == "fired":
                jitter = {"due_ms": tick.due_ms} if tick.due_ms else {}
                log.info("schedule.fired", **fields, **jitter)
            elif status == "overlap":
                log.info("schedule.skipped", **fields, reason="overlap",
                         previous_job_id=tick.expected_last_job, previous_state=detail)  # fmt: skip
            else:  # duplicate: the tick's job exists (state a failover rolled back)
                log.warning("schedule.skipped", **fields, reason="duplicate", existing_state=detail)
        return tick.next_ms

    def _report(self, keys: QueueKeys, schedule_id: str, event: str, **fields: object) -> None:
        """Log a problem with a schedule once per process, not on every step."""
        if (keys.queue, schedule_id, event) not in self._reported:
            self._reported.add((keys.queue, schedule_id, event))
            log.warning(event, schedule_id=schedule_id, queue=keys.queue, **fields)
