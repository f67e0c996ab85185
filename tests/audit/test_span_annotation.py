"""A read's span carries its audit event whenever some processor sees its spans; a span that
goes nowhere (no exporter configured, the default) is not annotated for nobody."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from warden.audit import telemetry
from warden.audit.models import AuditEvent


def _event() -> AuditEvent:
    return AuditEvent(
        seq=7, id="e" * 32, ts=datetime.now(UTC), actor="alice", action="dataset.read",
        decision="allow", prev_hash="0" * 64, hash="1" * 64,
    )  # fmt: skip


def _annotated(provider: TracerProvider, event: AuditEvent) -> dict[str, Any]:
    with provider.get_tracer("t").start_as_current_span("warden.read") as span:
        telemetry.annotate_span(span, event)
        return dict(span.attributes or {})  # type: ignore[attr-defined]


def test_a_span_some_processor_sees_carries_its_audit_event() -> None:
    provider, event = TracerProvider(), _event()
    assert "warden.audit.event_id" not in _annotated(provider, event)  # goes nowhere
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))  # added later: seen from then on
    attributes = _annotated(provider, event)
    assert attributes["warden.audit.event_id"] == event.id
    assert attributes["warden.audit.hash"] == event.hash
    (finished,) = spans.get_finished_spans()
    assert dict(finished.attributes or {})["warden.audit.seq"] == 7


def test_a_span_this_cannot_look_into_is_annotated() -> None:
    class Foreign:
        def __init__(self) -> None:
            self.attributes: dict[str, Any] = {}

        def set_attributes(self, attributes: dict[str, Any]) -> None:
            self.attributes.update(attributes)

    span = Foreign()
    telemetry.annotate_span(span, _event())  # type: ignore[arg-type]
    assert span.attributes["warden.audit.event_id"] == "e" * 32
