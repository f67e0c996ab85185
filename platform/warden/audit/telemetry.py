"""OpenTelemetry for Warden: spans for governed reads and one log record per audit event.

Configured from the standard variables, read when `setup_telemetry()` runs:

- `OTEL_TRACES_EXPORTER`, `OTEL_LOGS_EXPORTER`: comma-separated `otlp` (OTLP/HTTP protobuf),
  `console` or `none`; default `none`.
- `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_{TRACES,LOGS}_ENDPOINT`, `…_HEADERS`,
  `…_TIMEOUT`, `…_COMPRESSION`: read by the OTLP exporters themselves.
- `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`: the resource.
- `OTEL_TRACES_SAMPLER` is deliberately ignored: every governed read is sampled.

The providers are this module's own; they are also installed as the process-wide OTel
globals the first time only (OTel refuses to replace them later), so `shutdown()` followed by
another `setup_telemetry()` (tests do this) leaves the globals on the first, shut-down pair.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry import _logs, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry._logs._internal import ProxyLoggerProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from warden.audit.chain import utc

if TYPE_CHECKING:
    from warden.audit.models import AuditEvent

log = logging.getLogger("warden.audit.telemetry")

SCOPE = "warden.audit"
AUDIT_EVENT_NAME = "warden.audit"
_OTLP_NAMES = frozenset({"otlp", "otlp_proto_http"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEVERITY = {
    "allow": (SeverityNumber.INFO, "INFO"),
    "deny": (SeverityNumber.WARN, "WARN"),
    "error": (SeverityNumber.ERROR, "ERROR"),
}


@dataclass
class Telemetry:
    """The providers this process exports through, and which exporters each one feeds."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    traces_exporters: tuple[str, ...] = ()
    logs_exporters: tuple[str, ...] = ()
    # some processor takes log records (an exporter named by the environment or given by the
    # caller): without one, a record would be built for nobody
    logs_wanted: bool = True
    tracer: trace.Tracer = field(init=False)
    logger: _logs.Logger = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer(SCOPE)
        self.logger = self.logger_provider.get_logger(SCOPE)


_lock = threading.Lock()
_current: Telemetry | None = None
_globals_installed = False
_atexit_registered = False


def setup_telemetry(
    service_name: str = "warden",
    *,
    span_exporter: SpanExporter | None = None,
    log_exporter: LogRecordExporter | None = None,
    install_global: bool = True,
) -> Telemetry:
    """Build the providers once per process (later calls return the same ones until `shutdown()`).

    `span_exporter` / `log_exporter` are extra exporters fed synchronously (tests use in-memory
    ones) beside whatever the environment asks for.
    """
    global _current, _globals_installed, _atexit_registered
    with _lock:
        if _current is not None:
            return _current
        resource = _resource(service_name)
        tracer_provider = TracerProvider(
            sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False
        )
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        traces = _exporter_names("OTEL_TRACES_EXPORTER")
        logs = _exporter_names("OTEL_LOGS_EXPORTER")
        for name in traces:
            tracer_provider.add_span_processor(_span_processor(name))
        for name in logs:
            logger_provider.add_log_record_processor(_log_processor(name))
        if span_exporter is not None:
            tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        if log_exporter is not None:
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        _current = Telemetry(
            tracer_provider,
            logger_provider,
            traces,
            logs,
            logs_wanted=bool(logs) or log_exporter is not None,
        )
        if install_global and not _globals_installed:
            _install_globals(_current)
            _globals_installed = True
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return _current


def current() -> Telemetry | None:
    return _current


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Push out everything buffered; True when both providers flushed in time."""
    telemetry = _current
    if telemetry is None:
        return True
    spans_ok = telemetry.tracer_provider.force_flush(timeout_millis)
    logs_ok = telemetry.logger_provider.force_flush(timeout_millis)
    return bool(spans_ok and logs_ok)


def shutdown() -> None:
    """Flush and stop the exporters; the next `setup_telemetry()` builds fresh providers."""
    global _current
    with _lock:
        telemetry, _current = _current, None
    if telemetry is not None:
        telemetry.tracer_provider.shutdown()
        telemetry.logger_provider.shutdown()


@contextmanager
def read_span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A current span around one governed read; the gateway annotates it with the audit event."""
    tracer = _current.tracer if _current is not None else trace.get_tracer(SCOPE)
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.INTERNAL,
        attributes=clean_attributes(attributes or {}),
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a valid span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


# Each event's attributes, made once: a read's event goes both to its log record and its span.
_attributes: weakref.WeakKeyDictionary[AuditEvent, dict[str, AttributeValue]] = (
    weakref.WeakKeyDictionary()
)


def audit_attributes(event: AuditEvent) -> dict[str, AttributeValue]:
    """The attributes an audit event contributes to its log record and to its read span (a
    committed event does not change: they are made once per event; do not modify them)."""
    if event.seq is not None and (made := _attributes.get(event)) is not None:
        return made
    made = _audit_attributes(event)
    if event.seq is not None:
        _attributes[event] = made
    return made


def _audit_attributes(event: AuditEvent) -> dict[str, AttributeValue]:
    raw: dict[str, Any] = {
        "warden.audit.event_id": event.id,
        "warden.audit.seq": event.seq,
        "warden.audit.hash": event.hash,
        "warden.action": event.action,
        "warden.decision": event.decision,
        "warden.actor": event.actor,
        "warden.actor_kind": event.actor_kind,
        "warden.on_behalf_of": event.on_behalf_of,
        "warden.tenant": event.tenant,
        "warden.dataset": event.dataset,
        "warden.dataset_version": event.dataset_version,
        "warden.purpose": event.purpose,
        "warden.rule": event.rule,
        "warden.policy_version": event.policy_version,
        "warden.columns": list(event.columns or ()),
        "warden.masked_columns": list(event.masked_columns or ()),
        "warden.row_filter": event.row_filter or None,
        "warden.grant_ids": list(event.grant_ids or ()),
        "warden.rows": event.rows,
        "warden.bytes": event.bytes,
        "warden.reason": event.reason,
        "warden.details": event.details or None,
    }
    return clean_attributes(raw)


def annotate_span(span: Span, event: AuditEvent) -> None:
    if _exported(span):
        span.set_attributes(audit_attributes(event))


def _exported(span: Span) -> bool:
    """Whether some processor will see the span, i.e. its attributes are read by anyone. A
    span of a provider with no processor (no exporter configured, the default) goes nowhere:
    its audit attributes (~20, each cleaned twice) would be a small read's ~0.06 ms of CPU
    for nobody, as a log record is (see `Telemetry.logs_wanted`). Asked of the span's own
    processors when it ends up there (a processor may be added to a provider later); anything
    this cannot tell (another SDK, another version of this one) is taken as exported."""
    processors = getattr(getattr(span, "_span_processor", None), "_span_processors", None)
    return not isinstance(processors, tuple) or bool(processors)


def emit_audit_log(event: AuditEvent) -> None:
    """One log record per audit event, correlated with the current span (if any)."""
    telemetry = _current
    if telemetry is None or not telemetry.logs_wanted:
        return
    severity, severity_text = _SEVERITY.get(event.decision, (SeverityNumber.INFO, "INFO"))
    telemetry.logger.emit(
        timestamp=(utc(event.ts) - _EPOCH) // timedelta(microseconds=1) * 1000,
        severity_number=severity,
        severity_text=severity_text,
        body=f"audit {event.action} {event.decision}",
        attributes=audit_attributes(event),
        event_name=AUDIT_EVENT_NAME,
    )


CHECKPOINT_EVENT_NAME = "warden.audit.checkpoint"


def emit_checkpoint_log(checkpoint: Mapping[str, Any], *, refused: bool = False) -> None:
    """One log record per signed checkpoint (or refusal to sign), so a copy of every checkpoint
    leaves the host in the OTel log stream, beside the checkpoint file."""
    telemetry = _current
    if telemetry is None:
        return
    attributes = clean_attributes(
        {f"warden.checkpoint.{key}": value for key, value in checkpoint.items()}
    )
    telemetry.logger.emit(
        severity_number=SeverityNumber.ERROR if refused else SeverityNumber.INFO,
        severity_text="ERROR" if refused else "INFO",
        body="audit checkpoint refused: the chain does not verify"
        if refused
        else f"audit checkpoint {checkpoint.get('n')} at seq {checkpoint.get('seq')}",
        attributes=attributes,
        event_name=CHECKPOINT_EVENT_NAME,
    )


def clean_attributes(raw: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """OTel-legal attributes: None dropped, mappings and mixed lists sent as JSON text."""
    out: dict[str, AttributeValue] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            out[key] = [str(v) for v in value]
        else:
            out[key] = json.dumps(value, sort_keys=True, default=str)
    return out


def _resource(service_name: str) -> Resource:
    env = OTELResourceDetector().detect()
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over the built-in name.
    named = "service.name" in env.attributes or bool(os.environ.get("OTEL_SERVICE_NAME"))
    return Resource.create({} if named else {"service.name": service_name})


def _exporter_names(variable: str) -> tuple[str, ...]:
    names = [n.strip().lower() for n in os.environ.get(variable, "none").split(",") if n.strip()]
    if not names or "none" in names:
        return ()
    chosen: list[str] = []
    for name in names:
        if name in _OTLP_NAMES:
            name = "otlp"
        elif name != "console":
            log.warning(
                "%s=%s is not supported (use otlp, console or none); ignored", variable, name
            )
            continue
        if name not in chosen:
            chosen.append(name)
    if "otlp" in chosen:
        _check_protocol(variable)
    return tuple(chosen)


def _check_protocol(variable: str) -> None:
    signal = "TRACES" if "TRACES" in variable else "LOGS"
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol and protocol.strip().lower() != "http/protobuf":
        log.warning(
            "OTLP protocol %r is not supported here; exporting over http/protobuf", protocol
        )


def _span_processor(name: str) -> BatchSpanProcessor | SimpleSpanProcessor:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())
    return SimpleSpanProcessor(ConsoleSpanExporter())


def _log_processor(name: str) -> BatchLogRecordProcessor | SimpleLogRecordProcessor:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return BatchLogRecordProcessor(OTLPLogExporter())
    return SimpleLogRecordProcessor(ConsoleLogRecordExporter())


def _install_globals(telemetry: Telemetry) -> None:
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(telemetry.tracer_provider)
    if isinstance(_logs.get_logger_provider(), ProxyLoggerProvider):
        _logs.set_logger_provider(telemetry.logger_provider)


__all__ = [
    "Telemetry",
    "annotate_span",
    "audit_attributes",
    "current",
    "current_trace_id",
    "emit_audit_log",
    "force_flush",
    "read_span",
    "setup_telemetry",
    "shutdown",
]
