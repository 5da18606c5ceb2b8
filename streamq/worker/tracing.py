"""OpenTelemetry consumer spans around jobs (the ``otel`` extra): ``streamq.Tracing``.

Middleware, like any other: ``app.add_middleware(streamq.Tracing())``. Each job runs in a
``CONSUMER`` span whose parent is the producer's span when the envelope carries its trace
context (see :mod:`streamq.producer.tracing`), current while the task runs, so spans the task
starts nest under it. The span ends with the job's outcome; an exception that made the job
retry or die is recorded on it and sets its status to error.
"""

from __future__ import annotations

from typing import Any

from streamq.errors import ConfigError
from streamq.job import Envelope
from streamq.worker.middleware import CANCELLED, SUCCEEDED, Outcome


class Tracing:
    """A consumer span per job.

    Args:
        tracer_provider: where spans go; default the global one (``trace.set_tracer_provider``).

    Raises:
        ConfigError: opentelemetry-api is not installed (``pip install 'streamq[otel]'``).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import context, propagate, trace  # noqa: PLC0415 - optional
        except ImportError as e:
            raise ConfigError("tracing needs opentelemetry-api: pip install 'streamq[otel]'") from e
        self._context, self._propagate, self._trace = context, propagate, trace
        self._tracer = trace.get_tracer("streamq", tracer_provider=tracer_provider)
        # job id -> (span, context token): a loop runs one job at a time per context, the
        # asyncio loop several, each started and ended in its own task.
        self._open: dict[str, tuple[Any, Any]] = {}

    def before_job(self, job: Envelope) -> None:
        """Start the job's span (a child of the producer's) and make it current."""
        parent = self._propagate.extract(job.headers) if job.headers else None
        span = self._tracer.start_span(
            f"{job.task} process",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "streamq",
                "messaging.operation.type": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "streamq.task": job.task,
                "streamq.attempt": job.attempt,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        self._open[job.id] = (span, token)

    def after_job(self, job: Envelope, outcome: Outcome) -> None:
        """End the job's span with its outcome (and the exception, if one decided it)."""
        opened = self._open.pop(job.id, None)
        if opened is None:
            return  # settled without running: no span was started
        span, token = opened
        span.set_attribute("streamq.outcome", outcome.state)
        if outcome.error is not None and outcome.state not in (SUCCEEDED, CANCELLED):
            span.record_exception(outcome.error)
            status = self._trace.Status(self._trace.StatusCode.ERROR, str(outcome.error))
            span.set_status(status)
        self._context.detach(token)
        span.end()
