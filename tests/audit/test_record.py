"""record() fails closed; every committed event, and only those, produces one OTel log record."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from warden.audit import telemetry
from warden.audit.models import AuditEvent
from warden.audit.service import AuditRecord, append, record
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.errors import AuditUnavailable


def rec(**extra: object) -> AuditRecord:
    fields: dict[str, object] = {
        "action": "read",
        "decision": "allow",
        "actor": "alice",
        "actor_kind": "person",
        "dataset": "engagements",
        "columns": ["pin_id", "user_id"],
        "masked_columns": ["user_id"],
        "grant_ids": ["g-7"],
        "rows": 3,
    }
    fields.update(extra)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_an_unreachable_database_is_audit_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'warden.db'}")
    with pytest.raises(AuditUnavailable):
        record(make_sessionmaker(engine), rec())


def test_a_database_without_the_audit_tables_is_audit_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(AuditUnavailable):
        record(make_sessionmaker(engine), rec())


def test_a_locked_database_is_audit_unavailable(engine: Engine, db_url: str) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    record(make_sessionmaker(engine), rec())
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    impatient = create_engine(db_url, connect_args={"timeout": 0.2})
    try:
        with pytest.raises(AuditUnavailable):
            record(make_sessionmaker(impatient), rec())
    finally:
        impatient.dispose()
        holder.execute("ROLLBACK")
        holder.close()


def test_a_constraint_failure_is_audit_unavailable_and_writes_nothing(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = record(sessions, rec())
    # Force a duplicate event id: the unique constraint fails inside record().
    monkeypatch.setattr("warden.audit.service.uuid.uuid4", lambda: type("U", (), {"hex": first.id}))
    with pytest.raises(AuditUnavailable):
        record(sessions, rec())
    with unit_of_work(sessions) as db:
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_record_emits_one_correlated_log_record(
    sessions: sessionmaker[Session], captured: Any
) -> None:
    with telemetry.read_span("warden.read", {"warden.dataset": "engagements"}) as span:
        event = record(sessions, rec(purpose="training", policy_version=4, rule="p, alice, …"))
        telemetry.annotate_span(span, event)

    (log,) = captured.logs.get_finished_logs()
    (finished,) = captured.spans.get_finished_spans()
    trace_id = finished.context.trace_id
    assert event.trace_id == f"{trace_id:032x}"
    assert log.log_record.trace_id == trace_id
    assert log.log_record.span_id == finished.context.span_id
    assert log.log_record.body == "audit read allow"
    attrs = dict(log.log_record.attributes or {})
    assert attrs["warden.audit.event_id"] == event.id
    assert attrs["warden.actor"] == "alice" and attrs["warden.actor_kind"] == "person"
    assert list(attrs["warden.columns"]) == ["pin_id", "user_id"]  # type: ignore[call-overload]
    assert list(attrs["warden.masked_columns"]) == ["user_id"]  # type: ignore[call-overload]
    assert list(attrs["warden.grant_ids"]) == ["g-7"]  # type: ignore[call-overload]
    assert attrs["warden.policy_version"] == 4 and attrs["warden.rows"] == 3
    assert attrs["warden.purpose"] == "training" and attrs["warden.decision"] == "allow"
    assert "warden.bytes" not in attrs  # None values are left out
    span_attrs = dict(finished.attributes or {})
    assert span_attrs["warden.audit.event_id"] == event.id
    assert span_attrs["warden.dataset"] == "engagements"


def test_non_read_events_are_logged_too(sessions: sessionmaker[Session], captured: Any) -> None:
    with unit_of_work(sessions) as db:
        append(db, rec(action="policy.change", decision="allow", details={"added": 2}))
    record(sessions, rec(action="read", decision="deny", reason="no grant"))

    bodies = [r.log_record.body for r in captured.logs.get_finished_logs()]
    severities = [r.log_record.severity_text for r in captured.logs.get_finished_logs()]
    assert bodies == ["audit policy.change allow", "audit read deny"]
    assert severities == ["INFO", "WARN"]
    assert captured.log_attributes()[0]["warden.details"] == '{"added": 2}'


def test_rolled_back_events_are_never_logged(
    sessions: sessionmaker[Session], captured: Any
) -> None:
    with pytest.raises(RuntimeError), unit_of_work(sessions) as db:
        append(db, rec(action="policy.change"))
        raise RuntimeError("the change failed")
    db = sessions()
    try:
        with db.begin():
            with db.begin_nested() as savepoint:
                append(db, rec(action="in.savepoint"))
                savepoint.rollback()
            append(db, rec(action="kept"))
    finally:
        db.close()

    assert [r.log_record.body for r in captured.logs.get_finished_logs()] == ["audit kept allow"]


def test_a_failing_exporter_does_not_fail_the_write(
    sessions: sessionmaker[Session], captured: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_: object) -> None:
        raise RuntimeError("collector exploded")

    monkeypatch.setattr("warden.audit.service.emit_audit_log", boom)
    event = record(sessions, rec())
    assert event.seq == 1


def test_reads_are_sampled_whatever_the_sampler_says(
    otel_env: pytest.MonkeyPatch, captured: Any
) -> None:
    otel_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry.shutdown()
    spans = InMemorySpanExporter()
    telemetry.setup_telemetry(span_exporter=spans, install_global=False)
    with telemetry.read_span("warden.read", {}) as span:
        assert span.is_recording()
    assert len(spans.get_finished_spans()) == 1


def test_setup_is_idempotent_and_exporters_come_from_the_environment(
    otel_env: pytest.MonkeyPatch,
) -> None:
    telemetry.shutdown()
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    otel_env.setenv("OTEL_LOGS_EXPORTER", "bogus,none")
    try:
        first = telemetry.setup_telemetry(install_global=False)
        assert telemetry.setup_telemetry(install_global=False) is first
        assert first.traces_exporters == ("console",)
        assert first.logs_exporters == ()
        assert telemetry.force_flush()
    finally:
        telemetry.shutdown()
    otel_env.delenv("OTEL_TRACES_EXPORTER")
    try:
        bare = telemetry.setup_telemetry(install_global=False)
        assert bare.traces_exporters == () and bare.logs_exporters == ()
    finally:
        telemetry.shutdown()
