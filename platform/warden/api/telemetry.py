"""FastAPI's own telemetry, as both app factories configure it.

A server span and the HTTP metrics for every request, but not FastAPI's operation spans
(dependency resolution, the endpoint, the serialization: three more spans per request, about
a tenth of a small governed read's CPU). A read's own span is `audit.telemetry.read_span`,
which carries its audit event.
"""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

HTTP_TELEMETRY: TelemetryConfig = {"operation_spans": False}
