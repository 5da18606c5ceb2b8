"""OpenTelemetry: trace context travels in the envelope and each job runs in a consumer span
that is the producer span's child (SDK in-memory exporter)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import streamq
from streamq import codec
from streamq.testing import drain


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_consumer_span_is_the_producer_spans_child(
    app: streamq.App, queue: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A job enqueued inside a span runs in a CONSUMER span under it, with the job's id,
    task, queue and attempt; a span the task starts nests under the consumer span."""
    provider, exporter = spans
    tracer = provider.get_tracer("shop")

    @app.task
    def ship(order: int) -> None:
        with tracer.start_as_current_span("inside"):
            pass

    app.add_middleware(streamq.Tracing(tracer_provider=provider))
    with tracer.start_as_current_span("checkout") as producer:
        job = ship.enqueue(7)
    drain(app)
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    consumer, inside = by_name["ship process"], by_name["inside"]
    assert consumer.kind is trace.SpanKind.CONSUMER
    assert consumer.context.trace_id == producer.get_span_context().trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.get_span_context().span_id
    assert inside.parent is not None
    assert inside.parent.span_id == consumer.context.span_id
    attrs = dict(consumer.attributes or {})
    assert attrs["messaging.message.id"] == job.id
    assert attrs["messaging.destination.name"] == queue
    assert (attrs["streamq.task"], attrs["streamq.attempt"]) == ("ship", 1)
    assert attrs["streamq.outcome"] == "succeeded"


def test_a_failed_attempt_is_recorded_on_its_span(
    app: streamq.App, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Each attempt gets a span; an exception that made it retry or die is recorded on it."""
    provider, exporter = spans

    @app.task(max_retries=1, backoff_base_s=0, backoff_cap_s=0)
    def boom() -> None:
        raise ValueError("out of stock")

    app.add_middleware(streamq.Tracing(tracer_provider=provider))
    boom.enqueue()  # no active span: no trace context in the envelope, a root span each
    drain(app)
    attempts = [s for s in exporter.get_finished_spans() if s.name == "boom process"]
    assert [dict(s.attributes or {})["streamq.outcome"] for s in attempts] == [
        "retrying",
        "dead",
    ]
    for s in attempts:
        assert s.parent is None
        assert s.status.status_code is trace.StatusCode.ERROR
        (event,) = [e for e in s.events if e.name == "exception"]
        assert dict(event.attributes or {})["exception.message"] == "out of stock"


def test_trace_context_is_carried_only_inside_a_span(
    app: streamq.App, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The envelope gets a W3C traceparent header inside a span and none outside, and the
    header survives encoding (workers that do not trace decode it and ignore it)."""
    provider, _ = spans

    @app.task
    def t() -> None:
        pass

    assert t.prepare().headers == {}
    with provider.get_tracer("shop").start_as_current_span("checkout") as span:
        env = t.prepare()
    header = env.headers["traceparent"]
    assert header.split("-")[1] == format(span.get_span_context().trace_id, "032x")
    assert codec.decode(codec.encode(env)).headers == env.headers
