"""FastAPI's server span is made when something takes it, and a read's audit event carries the
caller's trace either way (api/telemetry.py)."""

from __future__ import annotations

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from tests.conftest import WardenHarness
from warden.api.telemetry import unobserved
from warden.audit.models import AuditEvent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BODY = {"purpose": "training", "columns": ["user_id", "pin_id"], "limit": 5}


@pytest.mark.parametrize("exported", [False, True])
def test_a_read_carries_the_callers_trace_with_or_without_a_server_span(
    warden: WardenHarness, exported: bool
) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    if exported:
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    config = warden.app._telemetry  # type: ignore[attr-defined]
    saved = dict(config)
    # nothing else listens: no log processor, no meter
    config.update(
        tracer_provider=tracer_provider,
        logger_provider=LoggerProvider(),
        meter_provider=NoOpMeterProvider(),
    )
    try:
        headers = {**warden.as_("alice"), "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
        answer = warden.http.post("/v1/datasets/engagements/read", json=BODY, headers=headers)
        untraced = warden.read("alice", "engagements", **BODY)  # type: ignore[attr-defined]
    finally:
        config.update(saved)
    assert answer.status_code == untraced.status_code == 200  # type: ignore[attr-defined]
    with warden.state.sessions() as db:
        traced_event = db.scalar(
            select(AuditEvent).where(AuditEvent.id == answer.headers["x-warden-audit-event"])
        )
        own_event = db.scalar(
            select(AuditEvent).where(
                AuditEvent.id == untraced.headers["x-warden-audit-event"]  # type: ignore[attr-defined]
            )
        )
    assert traced_event is not None and traced_event.trace_id == TRACE
    # without a caller's trace, the read is a trace of its own
    assert own_event is not None and own_event.trace_id not in (None, TRACE)
    servers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == (2 if exported else 0)
    if exported:
        assert servers[0].context.trace_id == int(TRACE, 16)
        assert servers[0].name == "POST /v1/datasets/{name}/read"


def test_the_server_span_stands_aside_only_while_nothing_listens(warden: WardenHarness) -> None:
    config = warden.app._telemetry  # type: ignore[attr-defined]
    saved = dict(config)
    tracer_provider = TracerProvider()
    config.update(
        tracer_provider=tracer_provider,
        logger_provider=LoggerProvider(),
        meter_provider=NoOpMeterProvider(),
    )
    scope = {"type": "http", "app": warden.app}
    try:
        assert unobserved(scope)
        tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        assert not unobserved(scope)  # an exporter added later is seen on the next request
        config.update(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
        assert not unobserved(scope)  # a meter provider: the HTTP metrics go somewhere
    finally:
        config.update(saved)
