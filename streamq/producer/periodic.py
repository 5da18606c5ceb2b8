"""The App's periodic-job API (``@app.periodic``, ``app.schedule``, ``app.unschedule``).

A mixin of :class:`~streamq.producer.app.App`, kept apart so the App module stays about
producing. Defining a schedule does no I/O: pools serving its queue write it to Redis when
they start (or call :meth:`Schedule.save` to write it at once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from streamq.cron import Timing
from streamq.errors import ConfigError
from streamq.job import PRIORITY_NORMAL
from streamq.keys import check_queue_name
from streamq.producer.schedule import Schedule, remove
from streamq.producer.task import Task
from streamq.schedule import ScheduleSpec
from streamq.settings import TaskOptions

if TYPE_CHECKING:
    from streamq.producer.app import App

P = ParamSpec("P")
R = TypeVar("R")


class Scheduling:
    """Periodic schedules of an App: ``schedules`` maps schedule id to :class:`Schedule`."""

    schedules: dict[str, Schedule]

    def _app(self) -> App:
        return cast("App", self)

    def periodic(
        self,
        *,
        cron: str | None = None,
        every_s: float | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        schedule_id: str | None = None,
        missed: str = "skip",
        overlap: str = "allow",
        jitter_s: float = 0.0,
        name: str | None = None,
        queue: str | None = None,
        max_retries: int = 3,
        timeout_s: float | None = None,
        priority: str | int = "normal",
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task and schedule it: ``@app.periodic(cron="0 * * * *")``.

        The schedule options are those of :meth:`schedule`; ``name``, ``queue``,
        ``max_retries``, ``timeout_s`` and ``priority`` are the task's (see ``App.task``).

        Raises:
            ConfigError: an invalid cron expression, time zone or option, or a taken name.
        """
        timing = _timing(cron, every_s, tz)  # refuse a bad schedule before registering

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task = self._app().task(
                name=name,
                queue=queue,
                max_retries=max_retries,
                timeout_s=timeout_s,
                priority=priority,
            )(fn)
            try:
                self._define(task, timing, args, kwargs, schedule_id, missed, overlap, jitter_s)
            except ConfigError:
                del self._app().tasks[task.name]
                raise
            return task

        return register

    def schedule(
        self,
        task_or_name: Task[Any, Any] | str,
        *,
        cron: str | None = None,
        every_s: float | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        schedule_id: str | None = None,
        missed: str = "skip",
        overlap: str = "allow",
        jitter_s: float = 0.0,
        queue: str | None = None,
    ) -> Schedule:
        """Schedule a task (or a task name, for tasks defined elsewhere).

        Args:
            task_or_name: the task; by name, its queue is ``queue`` or the default queue.
            cron: 5 fields, or 6 with seconds first (``"*/2 * * * * *"``: every 2 s).
            every_s: a fixed interval instead, on multiples of it since the Unix epoch.
            args: positional arguments of every run (msgpack-encodable).
            kwargs: keyword arguments of every run.
            tz: IANA zone the cron expression is read in.
            schedule_id: unique per queue; default the task name.
            missed: ``skip`` (after downtime only a tick at most a minute late fires),
                ``once`` (one catch-up run) or ``all`` (every missed tick, at most 100).
            overlap: ``skip`` passes over a tick while the previous run is not finished.
            jitter_s: delay each run by a fixed pseudo-random amount below this.
            queue: overrides the task's queue.

        Raises:
            ConfigError: both or neither of cron and every_s, a malformed cron expression,
                an unknown time zone, an invalid option, or a schedule id already used.
        """
        timing = _timing(cron, every_s, tz)
        return self._define(
            task_or_name, timing, args, kwargs, schedule_id, missed, overlap, jitter_s, queue
        )

    def unschedule(self, schedule_id: str, queue: str | None = None) -> bool:
        """Forget a schedule here and remove it from Redis (how to retire one removed from code).

        Returns:
            True if Redis had it.
        """
        known = self.schedules.pop(schedule_id, None)
        app = self._app()
        where = queue or (known.spec.queue if known else app.settings.default_queue)
        return remove(app.store, check_queue_name(where), schedule_id)

    def _define(
        self,
        task_or_name: Task[Any, Any] | str,
        timing: Timing,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        schedule_id: str | None,
        missed: str,
        overlap: str,
        jitter_s: float,
        queue: str | None = None,
    ) -> Schedule:
        app = self._app()
        options: TaskOptions | None
        if isinstance(task_or_name, Task):
            name, options = task_or_name.name, task_or_name.options
        else:
            known = app.tasks.get(task_or_name)
            name, options = task_or_name, known.options if known else None
        spec = ScheduleSpec(
            id=schedule_id or name,
            task=name,
            queue=queue or (options.queue if options else app.settings.default_queue),
            timing=timing,
            args=list(args),
            kwargs=dict(kwargs or {}),
            missed=missed,
            overlap=overlap,
            jitter_ms=round(jitter_s * 1000),
            priority=options.priority if options else PRIORITY_NORMAL,
        )
        if spec.id in self.schedules:
            raise ConfigError(f"schedule id {spec.id!r} is taken: pass schedule_id=")
        sched = Schedule(app, spec)
        self.schedules[spec.id] = sched
        return sched


def _timing(cron: str | None, every_s: float | None, tz: str) -> Timing:
    if every_s is not None and every_s <= 0:
        raise ConfigError(f"every_s must be positive, got {every_s}")
    return Timing(cron, round(every_s * 1000) if every_s is not None else None, tz)
