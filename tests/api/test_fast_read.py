"""The read route's fast path (api/fast_read.py) answers exactly as FastAPI's routing did:
same statuses, bodies, headers and audit events for served reads and for every refusal, and
the same server span (its route template) for telemetry."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

import warden.api.fast_read as fast_read
from tests.conftest import WardenHarness
from warden.audit.models import AuditEvent

COLUMNS = ["user_id", "pin_id", "region"]
# (who, method, dataset name, body): a served read and one of each kind of refusal
CASES: list[tuple[str | None, str, str, Any]] = [
    ("alice", "POST", "engagements", {"purpose": "training", "columns": COLUMNS, "limit": 5}),
    ("alice", "POST", "nope", {"purpose": "training"}),
    ("alice", "POST", "a/b", {"purpose": "training"}),
    ("alice", "POST", "engagements", {"purpose": "training", "limit": 10**9}),
    ("alice", "POST", "engagements", {"purpose": "nonsense-purpose"}),
    ("alice", "POST", "engagements", {"purpose": "training", "where": "x"}),
    ("mallory", "POST", "engagements", {"purpose": "training"}),
    (None, "POST", "engagements", {"purpose": "training"}),
    ("alice", "GET", "engagements", None),
]
VARYING = {"x-warden-audit-event", "x-warden-dataset-snapshot", "date"}


def _answer(warden: WardenHarness, who: str | None, method: str, name: str, body: Any) -> Any:
    headers = warden.as_(who) if who else {"authorization": "Bearer not-a-token"}
    response = warden.http.request(method, f"/v1/datasets/{name}/read", json=body, headers=headers)
    kept = {k: v for k, v in response.headers.items() if k not in VARYING}
    content = response.content if response.status_code == 200 else response.json()
    return response.status_code, kept, content


def _events(warden: WardenHarness, after: int) -> list[tuple[str, str, str | None]]:
    """The events a request left, less the checkpoint a process writes after its first raw
    read of a place (audit/anchor.py): whichever path reads first pays it."""
    with warden.state.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.seq > after).order_by("seq"))
        return [(e.action, e.decision, e.reason) for e in rows if e.action != "audit.checkpoint"]


def _last_seq(warden: WardenHarness) -> int:
    with warden.state.sessions() as db:
        return max(db.scalars(select(AuditEvent.seq)), default=0)


def test_the_fast_path_answers_as_the_routed_read(
    warden: WardenHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = []
    real = fast_read.read_dataset

    async def counted(name: str, request: Any) -> Any:
        served.append(name)
        return await real(name, request)

    monkeypatch.setattr(fast_read, "read_dataset", counted)
    for case in CASES:
        start = _last_seq(warden)
        fast = _answer(warden, *case), _events(warden, start)
        with monkeypatch.context() as routed:  # the same request through FastAPI's routing
            routed.setattr(fast_read.FastRead, "_serves", lambda self, app: False)
            start = _last_seq(warden)
            slow = _answer(warden, *case), _events(warden, start)
        assert fast == slow, case
    assert served == [name for _, method, name, _ in CASES if method == "POST"]


def test_the_fast_path_names_its_route_on_the_server_span(warden: WardenHarness) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    warden.app._telemetry["tracer_provider"] = provider  # type: ignore[attr-defined]
    try:
        body = {"purpose": "training", "columns": COLUMNS, "limit": 5}
        assert warden.read("alice", "engagements", **body).status_code == 200  # type: ignore[attr-defined]
    finally:
        warden.app._telemetry["tracer_provider"] = None  # type: ignore[attr-defined]
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.name == "POST /v1/datasets/{name}/read"
    attributes = dict(server.attributes or {})
    assert attributes["http.route"] == "/v1/datasets/{name}/read"
    assert attributes["http.response.status_code"] == 200
