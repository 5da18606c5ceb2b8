"""What each page shows, read through store verbs and ops (no HTTP here, no Redis commands).

Every read is bounded (see :mod:`streamq.store.views`), so a page costs the same with
200,000 dead letters as with none. Job arguments and results are left out unless the
dashboard was started with ``show_args`` (they may hold personal data, as in logs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamq import codec
from streamq.clock import now_ms
from streamq.errors import DecodeError
from streamq.job import Envelope
from streamq.keys import MINUTE_MS, QueueKeys, keys_of
from streamq.ops import schedules as ops_schedules
from streamq.ops.dead import DeadJob, DeadLetters, DeadPage
from streamq.producer.app import App
from streamq.producer.handle import JobInfo
from streamq.producer.schedule import ScheduleInfo
from streamq.store.views import Consumer, Depth, Pending
from streamq.web.chart import Chart, chart

HOUR_MS, DAY_MS = 60 * MINUTE_MS, 1440 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as a table row: whatever its bytes tell (``error`` when they do not decode)."""

    job_id: str
    task: str
    attempt: int
    args: str  # '' unless arguments are shown
    error: str = ""


def job_row(payload: bytes | None, max_bytes: int, show_args: bool) -> JobRow:
    """Decode a payload for display; undecodable bytes become a row that says why."""
    if not payload:
        return JobRow("", "", 0, "", "no payload")
    try:
        env = codec.decode(payload, max(max_bytes, len(payload)))
    except DecodeError as e:
        return JobRow(e.job_id or "", e.task or "", 0, "", f"{e.reason}: {e}")
    return JobRow(env.id, env.task, env.attempt, arguments(env) if show_args else "")


def arguments(env: Envelope) -> str:
    """The call's arguments as text (JSON-like; anything else by repr)."""
    return json.dumps({"args": list(env.args), "kwargs": dict(env.kwargs)}, default=repr)


@dataclass(frozen=True, slots=True)
class QueueOverview:
    """One queue on the overview page."""

    depth: Depth
    hour: Chart
    day: Chart

    @property
    def oldest_ms(self) -> int | None:
        """When the oldest job that no worker has read yet was queued."""
        found = [lv.oldest_ms for lv in self.depth.levels if lv.oldest_ms is not None]
        return min(found) if found else None


def overview(app: App, queues: Sequence[str], group: str) -> list[QueueOverview]:
    """Depth, consumers and throughput (last hour per minute, last day per 15 minutes)."""
    now = now_ms()
    out = []
    for q in queues:
        keys = keys_of(q)
        minutes = app.store.throughput(keys, now - DAY_MS + MINUTE_MS, now)
        out.append(
            QueueOverview(
                app.store.depth(keys, group),
                chart("last hour", minutes[-60:], 1),
                chart("last day", minutes, 15),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Held:
    """An entry a consumer holds, with its job and, when the job has a record, since when
    it runs and its progress."""

    pending: Pending
    job: JobRow
    started_ms: int | None
    progress: str
    state: str


def held(
    app: App,
    keys: QueueKeys,
    group: str,
    show_args: bool,
    count: int = 100,
    consumers: Sequence[str] = (),
) -> list[Held]:
    """The first ``count`` entries held by consumers of ``keys`` (or by each of
    ``consumers``), with their jobs."""
    entries = app.store.pending(keys, group, count, consumers)
    rows = [job_row(p.fields.get(b"j"), app.settings.max_payload_bytes, show_args) for p in entries]
    records = app.store.job_fields(
        keys, [r.job_id or "-" for r in rows], ["started_ms", "progress", "state"]
    )
    out = []
    for p, r, rec in zip(entries, rows, records, strict=True):
        started = rec.get("started_ms")
        out.append(
            Held(
                p,
                r,
                int(started) if started else None,
                rec.get("progress", b"").decode(errors="replace"),
                rec.get("state", b"").decode(errors="replace"),
            )
        )
    return out


def delayed(
    app: App, keys: QueueKeys, offsets: dict[int, int], show_args: bool, count: int = 50
) -> dict[int, list[tuple[JobRow, int]]]:
    """Per priority level, a page of delayed jobs (scheduled, or retrying when attempt > 1)
    from that level's offset, soonest first."""
    out = {}
    for p, offset in offsets.items():
        page = app.store.delayed_page(keys, p, offset, count)
        out[p] = [
            (job_row(payload, app.settings.max_payload_bytes, show_args), due)
            for payload, due in page
        ]
    return out


@dataclass(frozen=True, slots=True)
class Pool:
    """The consumers of one host (each is a worker process of a pool there)."""

    host: str
    consumers: list[tuple[str, Consumer]]  # (queue, consumer)
    running: list[tuple[str, Held]]  # (queue, job)


def workers(app: App, queues: Sequence[str], group: str, show_args: bool) -> list[Pool]:
    """Consumers grouped by host (names are ``host:pid:random``), and what each runs."""
    pools: dict[str, Pool] = {}
    for q in queues:
        keys = keys_of(q)

        def pool(name: str) -> Pool:
            host = name.split(":", 1)[0]
            return pools.setdefault(host, Pool(host, [], []))

        names = []
        for c in app.store.depth(keys, group).consumers:
            pool(c.name).consumers.append((q, c))
            if c.pending:
                names.append(c.name)
        # A worker holds its running job and the rest of its batch: a few per consumer.
        for h in held(app, keys, group, show_args, 10, names) if names else []:
            if h.state == "running" or not h.started_ms:
                pool(h.pending.consumer).running.append((q, h))
    return sorted(pools.values(), key=lambda p: p.host)


def dead_page(
    app: App, queue: str, before: str | None, task: str | None, reason: str | None
) -> DeadPage:
    """A page of dead letters, newest first, filtered by task and reason."""
    return DeadLetters(app.store, queue).page(before, 50, task, reason)


def dead_one(app: App, queue: str, dead_id: str, show_args: bool) -> tuple[DeadJob, JobRow] | None:
    """One dead letter with its decoded job."""
    found = DeadLetters(app.store, queue).get(dead_id)
    if found is None:
        return None
    return found, job_row(found.payload, app.settings.max_payload_bytes, show_args)


@dataclass(frozen=True, slots=True)
class Lookup:
    """A job found by id: its record as a handle reads it, and its result if shown."""

    queue: str
    info: JobInfo
    result: str


def find_job(app: App, job_id: str, queues: Sequence[str], show_args: bool) -> Lookup | None:
    """The job with this id in the first of ``queues`` that has its record."""
    for q in queues:
        record = app.store.job_record(keys_of(q), job_id)
        if not record:
            continue
        raw = record.get("result", b"")
        if raw and show_args:
            result = json.dumps(codec.decode_result(raw), default=repr)
        else:
            result = f"hidden ({len(raw)} bytes)" if raw else ""
        return Lookup(q, app.job(job_id, q).info(), result)
    return None


def schedules(app: App, queues: Sequence[str]) -> list[ScheduleInfo]:
    """Every schedule of the dashboard's queues and of any queue that has schedules."""
    found = ops_schedules.list_all(app.store)
    wanted = set(queues) | set(app.store.schedule_queues())
    return sorted((s for s in found if s.queue in wanted), key=lambda s: (s.queue, s.id))


def ago(ms: int | None, now: int | None = None) -> str:
    """A duration from ``ms`` to now, short and human ('3m 12s'); '' for None."""
    if ms is None:
        return ""
    return duration((now if now is not None else now_ms()) - ms)


def duration(ms: int) -> str:
    """'950ms', '12s', '3m 12s', '2h 5m', '3d 4h'."""
    if ms < 0:
        return "-" + duration(-ms)
    s = ms // 1000
    if s < 1:
        return f"{ms}ms"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def template_globals() -> dict[str, Any]:
    """Helpers the templates call."""
    return {"ago": ago, "duration": duration, "now_ms": now_ms}
