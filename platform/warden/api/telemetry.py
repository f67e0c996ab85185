"""FastAPI's own telemetry, as both app factories configure it.

A server span and the HTTP metrics for every request, but not FastAPI's operation spans
(dependency resolution, the endpoint, the serialization: three more spans per request, about
a tenth of a small governed read's CPU). A read's own span is `audit.telemetry.read_span`,
which carries its audit event.

FastAPI's telemetry stands aside for a request nothing would receive anything of: no span
processor on the tracer provider (no exporter configured: `OTEL_TRACES_EXPORTER` unset or
`none`), none on the logger provider, no meter provider. Its server span was then made, filled
and ended for nobody, about a seventh of a small read's CPU. What a request's audit events
carry still holds: `TraceContext` attaches the caller's `traceparent`, as the server span did,
so an event's `trace_id` is the caller's trace; without one, the read span starts a trace of its
own. An exporter added later (FastAPI's auto-configuration, a test's) is seen on the next request.
"""

from __future__ import annotations

from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import _logs, metrics, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry._logs._internal import ProxyLoggerProvider
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

# Providers that hand nothing on: OTel's deferred (unconfigured) ones and its no-ops. Asked by
# exact type, as is the SDK's (asked every request: isinstance on OTel's abstract classes cost
# more than the rest of the check).
_IDLE_PROVIDERS = frozenset(
    {
        ProxyTracerProvider,
        NoOpTracerProvider,
        _ProxyMeterProvider,
        NoOpMeterProvider,
        ProxyLoggerProvider,
        NoOpLoggerProvider,
    }
)


def _idle(provider: Any) -> bool:
    """Whether `provider` hands nothing on; anything this cannot tell (another SDK, another
    version of this one, a subclass) is taken as listening (as `audit.telemetry._exported`)."""
    kind = type(provider)
    if kind in _IDLE_PROVIDERS:
        return True
    if kind is TracerProvider:
        processors = getattr(provider._active_span_processor, "_span_processors", None)
    elif kind is LoggerProvider:
        processors = getattr(provider._multi_log_record_processor, "_log_record_processors", None)
    else:
        return False
    return isinstance(processors, tuple) and not processors


def unobserved(scope: Scope) -> bool:
    """FastAPI's `exclude`: whether this request's server span, metrics and log records would
    reach nobody (FastAPI puts itself in `scope["app"]` just before it asks)."""
    config = scope["app"]._telemetry
    return (
        (not config["tracing"] or _idle(config["tracer_provider"] or trace.get_tracer_provider()))
        and (not config["logs"] or _idle(config["logger_provider"] or _logs.get_logger_provider()))
        and (
            not config["metrics"]
            or scope["type"] == "websocket"  # FastAPI meters no WebSocket
            or _idle(config["meter_provider"] or metrics.get_meter_provider())
        )
    )


HTTP_TELEMETRY: TelemetryConfig = {"operation_spans": False, "exclude": unobserved}


class TraceContext:
    """The caller's trace context (`traceparent`, `tracestate`, baggage) for a request FastAPI's
    telemetry did not trace; outermost of the app's own middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        telemetry = scope.get("fastapi.telemetry")
        if getattr(telemetry, "span", None) is not None or not any(
            name == b"traceparent" for name, _ in scope.get("headers", ())
        ):
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(propagate.extract(Headers(scope=scope)))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)
