"""What an audit record holds: fields clipped to their columns in one place, and the
intent/completion pair of a streamed read with verify's rule for it."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from warden.audit.models import AuditEvent
from warden.audit.service import (
    MAX_ITEM,
    MAX_LIST,
    MAX_TEXT,
    AuditRecord,
    event_dict,
    record,
    stream_completion,
    stream_intent,
    verify,
)
from warden.db.session import unit_of_work


def test_oversized_fields_are_clipped_to_their_columns_and_still_chain(
    sessions: sessionmaker[Session],
) -> None:
    # PostgreSQL refuses a value longer than its VARCHAR: unclipped, this event failed closed.
    rec = AuditRecord(
        action="read." + "x" * 200,
        decision="deny",
        actor="a" * 300,
        actor_kind="person-with-a-very-long-kind",
        on_behalf_of="b" * 300,
        tenant="t" * 300,
        dataset="d" * 300,
        dataset_version="sha256:" + "f" * 300,
        purpose="p" * 300,
        reason="r" * (MAX_TEXT + 10),
        columns=[f"col{i}" + "c" * 400 for i in range(MAX_LIST + 5)],
        masked_columns=["m" * 400],
        grant_ids=["g"] * (MAX_LIST * 2),
        row_filter=[{"column": "c", "op": "eq", "value": "v"}] * (MAX_LIST + 1),
        details={"keep": True},
    )
    assert len(rec.actor) == 64 and len(rec.purpose or "") == 32 and len(rec.actor_kind) == 16
    assert len(rec.dataset_version or "") == 71 and len(rec.reason or "") == MAX_TEXT
    assert len(rec.columns) == MAX_LIST and all(len(c) == MAX_ITEM for c in rec.columns)
    assert len(rec.grant_ids) == MAX_LIST and len(rec.row_filter) == MAX_LIST
    assert rec.details["keep"] is True
    assert rec.details["clipped"]["actor"] == 300
    assert rec.details["clipped"]["columns"] == MAX_LIST + 5

    event = record(sessions, rec)
    with unit_of_work(sessions) as db:
        stored = db.get(AuditEvent, event.seq)
        assert stored is not None and stored.actor == "a" * 64
        assert verify(db).ok


def test_a_record_changed_after_construction_is_clipped_on_append(
    sessions: sessionmaker[Session],
) -> None:
    rec = AuditRecord(action="read", decision="allow", actor="ok", actor_kind="person")
    rec.dataset = "z" * 500
    event = record(sessions, rec)
    assert event.dataset == "z" * 64 and event.details["clipped"] == {"dataset": 500}


def test_clipping_is_idempotent_and_leaves_fitting_records_alone() -> None:
    rec = AuditRecord(action="read", decision="allow", actor="alice", actor_kind="person")
    assert rec.clip().clip().details == {}
    long = AuditRecord(action="read", decision="allow", actor="a" * 70, actor_kind="person")
    assert long.clip().clip().details == {"clipped": {"actor": 70}}


def _intent() -> AuditRecord:
    return stream_intent(
        AuditRecord(
            action="read",
            decision="allow",
            actor="alice",
            actor_kind="person",
            tenant="acme",
            dataset="engagements",
            columns=["pin_id"],
        )
    )


def test_a_stream_with_its_completion_leaves_no_finding(sessions: sessionmaker[Session]) -> None:
    intent = record(sessions, _intent())
    done = record(
        sessions, stream_completion(intent, rows=10, bytes=100, sha256="ab" * 32, complete=True)
    )
    assert done.details["stream"]["intent_seq"] == intent.seq
    assert done.details["stream"]["id"] == intent.details["stream"]["id"]
    with unit_of_work(sessions) as db:
        result = verify(db)
    assert result.ok and not [f for f in result.findings if f.kind != "no_checkpoint"]


def test_a_tenants_view_of_a_completion_names_no_seq(sessions: sessionmaker[Session]) -> None:
    intent = record(sessions, _intent())
    done = record(
        sessions, stream_completion(intent, rows=1, bytes=9, sha256="cd" * 32, complete=True)
    )
    shown = event_dict(done, whole_chain=False)
    assert shown["seq"] is None and shown["prev_hash"] is None
    assert shown["details"]["stream"] == {
        "phase": "completion", "id": intent.details["stream"]["id"], "status": "complete",
        "sha256": "cd" * 32,
    }  # fmt: skip
    assert done.details["stream"]["intent_seq"] == intent.seq  # the stored event keeps it
    assert event_dict(done)["details"]["stream"]["intent_seq"] == intent.seq


def test_an_intent_without_completion_is_a_finding_not_corruption(
    sessions: sessionmaker[Session],
) -> None:
    intent = record(sessions, _intent())
    gone = record(sessions, _intent())
    left = stream_completion(gone, rows=3, bytes=30, sha256=None, complete=False, reason="left")
    record(sessions, left)
    with unit_of_work(sessions) as db:
        result = verify(db)
    assert result.ok  # a note, not tampering
    opened = [f for f in result.findings if f.kind == "open_intent"]
    assert [(f.seq, f.severity) for f in opened] == [(intent.seq, "note")]


def test_a_completion_needs_an_intent() -> None:
    event = AuditEvent(action="read", details={}, seq=1)
    with pytest.raises(ValueError, match="intent"):
        stream_completion(event, rows=0, bytes=0, sha256=None, complete=True)
