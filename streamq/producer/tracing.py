"""W3C trace context in the envelope (the ``otel`` extra): the producer side.

When opentelemetry is importable and a span is active where a job is built, its context goes
into ``Envelope.headers`` (``traceparent``, ``tracestate``, through the global propagator), so
the worker's consumer span (:class:`streamq.Tracing`) becomes that span's child. Workers of
any version accept headers they do not use, and envelopes without them. Without
opentelemetry, or outside a span, an envelope costs what it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_otel: list[Any] = []  # [trace, propagate] once imported, [None] if not installed


def _modules() -> Any:
    if not _otel:
        try:
            from opentelemetry import propagate, trace  # noqa: PLC0415 - optional extra
        except ImportError:
            _otel.append(None)
        else:
            _otel.extend([trace, propagate])
    return _otel


def with_trace_context(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` plus the active span's trace context, if there is one."""
    out = dict(headers or {})
    mods = _modules()
    if mods[0] is None:
        return out
    trace, propagate = mods
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(out)
    return out
