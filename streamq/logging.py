"""The only place that configures logging (global state, by nature of structlog and stdlib
``logging``).

Library modules call ``structlog.get_logger()`` and never configure anything; the CLI, the
demo and the tests call :func:`configure` once per process. The job a task runs for is in
:data:`current_job_var` (set by whatever runs it); :func:`add_job_fields` copies its
``job_id``, ``task``, ``queue`` and ``attempt`` into every line logged meanwhile, through
structlog or stdlib ``logging``. A ContextVar that the runner sets anyway costs a job nothing;
binding four ``structlog.contextvars`` per job cost ~8 us, a quarter of a no-op job.
"""

from __future__ import annotations

import io
import json
import logging as std_logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO

import structlog

from streamq.job import Envelope

FORMATS = ("json", "console")
JOB_FIELDS = ("job_id", "task", "queue", "attempt")

# (envelope, progress writer) of the job running in this context; None outside a job. Set by
# the worker loops and eager mode, read by current_job() and by add_job_fields.
current_job_var: ContextVar[tuple[Envelope, Any] | None] = ContextVar(
    "streamq_current_job", default=None
)

_state: dict[str, Any] = {"format": None, "processors": None, "handler": None}


def add_job_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add the running job's fields (values given in the call win).

    Put it in your own processor chain to keep job fields when you configure structlog
    yourself (see docs/monitoring.md).
    """
    ctx = current_job_var.get()
    if ctx is not None:
        env = ctx[0]
        event_dict.setdefault("job_id", env.id)
        event_dict.setdefault("task", env.task)
        event_dict.setdefault("queue", env.queue)
        event_dict.setdefault("attempt", env.attempt)
    return event_dict


def _dumps(obj: Any, **_kw: Any) -> str:
    # default=repr: a log line never fails because a value is not JSON (bytes, exceptions).
    return json.dumps(obj, default=repr, separators=(",", ":"))


def configure(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Send one event per line to ``stream`` (stdout): JSON for machines, or console text.

    structlog lines and stdlib ``logging`` records (through one root handler) are rendered
    alike, with the running job's fields. Whatever configures logging after this call wins
    (``structlog.configure`` replaces this; a root handler of your own replaces ours).
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    out = stream or sys.stdout
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        add_job_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    processors = [
        *shared,
        structlog.processors.format_exc_info,  # log.exception() carries the traceback
        renderer,
    ]
    numeric = std_logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(out, numeric, shared, renderer)
    _state.update(format=fmt, processors=processors)


def _configure_stdlib(out: TextIO, level: int, shared: list[Any], renderer: Any) -> None:
    """One root handler rendering stdlib records like structlog events; the record factory
    gives records ``job_id``, ``task``, ``queue``, ``attempt`` for formatters of your own."""
    handler = std_logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = std_logging.getLogger()
    if _state["handler"] in root.handlers:
        root.removeHandler(_state["handler"])
    root.addHandler(handler)
    root.setLevel(level)
    _state["handler"] = handler
    factory = std_logging.getLogRecordFactory()
    if not getattr(factory, "streamq", False):
        std_logging.setLogRecordFactory(_record_factory(factory))


def _record_factory(inner: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> std_logging.LogRecord:
        record: std_logging.LogRecord = inner(*args, **kwargs)
        ctx = current_job_var.get()
        if ctx is not None:
            env = ctx[0]
            record.job_id, record.task, record.queue, record.attempt = (
                env.id,
                env.task,
                env.queue,
                env.attempt,
            )
        return record

    make.streamq = True  # type: ignore[attr-defined]  # marks ours, so it wraps only once
    return make


def in_force() -> str | None:
    """The format of :func:`configure` if its structlog configuration is still in force
    (the app did not replace it), else None."""
    if structlog.get_config()["processors"] is _state["processors"]:
        fmt: str | None = _state["format"]
        return fmt
    return None


class PrintLines(io.TextIOBase):
    """A stand-in for ``sys.stdout`` in worker processes: each line a task prints becomes a
    ``task.print`` event (with the job's fields), so stray output never breaks a JSON stream.

    Log lines themselves go to the real stdout (structlog and our root handler hold it), and
    anything written while an event is being emitted goes there too, so a logger that writes
    to ``sys.stdout`` cannot loop.
    """

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self._partial = ""
        self._busy = False
        self._log = structlog.get_logger("streamq.task")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.real.fileno()

    def write(self, text: str) -> int:
        if self._busy:
            return self.real.write(text)
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def release(self) -> None:
        """Emit what is left of an unfinished line, and give ``sys.stdout`` back."""
        if self._partial:
            self._emit(self._partial)
            self._partial = ""
        if sys.stdout is self:
            sys.stdout = self.real

    def _emit(self, line: str) -> None:
        self._busy = True
        try:
            self._log.info("task.print", line=line)
        finally:
            self._busy = False


def capture_prints() -> PrintLines | None:
    """In a worker process logging JSON with this module's configuration in force, turn
    stray stdout lines into ``task.print`` events; None (nothing changed) otherwise."""
    if in_force() != "json" or isinstance(sys.stdout, PrintLines):
        return None
    capture = PrintLines(sys.stdout)
    sys.stdout = capture
    return capture
