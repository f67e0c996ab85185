"""End to end over the wire: OTLP/HTTP protobuf to a real receiver process, set up from OTEL_*."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from warden.audit import telemetry
from warden.audit.service import AuditRecord, record

RECEIVER = Path(__file__).with_name("otlp_receiver.py")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    out = tmp_path / "received.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def received(out: Path, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) >= want or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def test_a_read_span_and_its_audit_log_reach_an_otlp_collector(
    sessions: sessionmaker[Session],
    otel_env: pytest.MonkeyPatch,
    receiver: tuple[int, Path],
) -> None:
    port, out = receiver
    otel_env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    otel_env.setenv("OTEL_LOGS_EXPORTER", "otlp")
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    otel_env.setenv("OTEL_TRACES_SAMPLER", "always_off")  # reads are sampled regardless
    otel_env.setenv("OTEL_SERVICE_NAME", "warden-otlp-test")
    telemetry.shutdown()
    setup = telemetry.setup_telemetry(install_global=False)
    assert setup.traces_exporters == ("otlp",) and setup.logs_exporters == ("otlp",)
    try:
        with telemetry.read_span(
            "warden.read", {"warden.dataset": "engagements", "warden.purpose": "training"}
        ) as span:
            event = record(
                sessions,
                AuditRecord(
                    action="read",
                    decision="allow",
                    actor="alice",
                    actor_kind="job",
                    on_behalf_of="bob",
                    tenant="acme",
                    dataset="engagements",
                    dataset_version="sha256:" + "d" * 64,
                    purpose="training",
                    rule="p, role:ml_engineer, acme, engagements, pin_id, training, read, allow",
                    policy_version=7,
                    columns=["pin_id", "user_id"],
                    masked_columns=["user_id"],
                    grant_ids=["grant-1", "grant-2"],
                    rows=42,
                    bytes=4096,
                ),
            )
            telemetry.annotate_span(span, event)
        assert telemetry.force_flush(10_000)
    finally:
        telemetry.shutdown()

    items = received(out, want=2)
    spans = [i for i in items if i["signal"] == "span"]
    logs = [i for i in items if i["signal"] == "log"]
    assert len(spans) == 1 and len(logs) == 1, items
    span_out, log_out = spans[0], logs[0]

    assert span_out["path"] == "/v1/traces" and log_out["path"] == "/v1/logs"
    assert span_out["name"] == "warden.read"
    assert span_out["resource"]["service.name"] == "warden-otlp-test"
    assert log_out["body"] == "audit read allow" and log_out["event_name"] == "warden.audit"
    # The log record is correlated with the read span, and the event remembers the trace.
    assert log_out["trace_id"] == span_out["trace_id"] == event.trace_id
    assert log_out["span_id"] == span_out["span_id"]
    expected = {
        "warden.audit.event_id": event.id,
        "warden.audit.seq": event.seq,
        "warden.actor": "alice",
        "warden.actor_kind": "job",
        "warden.on_behalf_of": "bob",
        "warden.tenant": "acme",
        "warden.dataset": "engagements",
        "warden.dataset_version": "sha256:" + "d" * 64,
        "warden.purpose": "training",
        "warden.decision": "allow",
        "warden.rule": "p, role:ml_engineer, acme, engagements, pin_id, training, read, allow",
        "warden.policy_version": 7,
        "warden.columns": ["pin_id", "user_id"],
        "warden.masked_columns": ["user_id"],
        "warden.grant_ids": ["grant-1", "grant-2"],
        "warden.rows": 42,
        "warden.bytes": 4096,
    }
    for where in (span_out, log_out):
        got = where["attributes"]
        assert {k: got.get(k) for k in expected} == expected, where["signal"]
