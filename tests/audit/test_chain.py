"""The hash chain: appends link up, verify finds tampering, concurrent appenders stay linear."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from warden.audit import chain
from warden.audit.keys import keys_for
from warden.audit.models import AuditEvent, AuditHead
from warden.audit.service import AuditRecord, append, ensure_head, record, verify
from warden.audit.verify import expected_hash
from warden.db.session import unit_of_work
from warden.errors import AuditUnavailable, Unprocessable

HERE = Path(__file__).parent
PLATFORM = HERE.parents[1] / "platform"


def read(actor: str = "alice", **extra: object) -> AuditRecord:
    fields: dict[str, object] = {
        "action": "read",
        "decision": "allow",
        "actor": actor,
        "actor_kind": "person",
        "tenant": "acme",
        "dataset": "engagements",
        "dataset_version": "sha256:" + "ab" * 32,
        "purpose": "training",
        "columns": ("user_id", "pin_id"),
        "masked_columns": ("user_id",),
        "row_filter": [{"column": "country", "op": "eq", "value": "FR"}],
        "rows": 10,
        "bytes": 2048,
        "grant_ids": ("g-1",),
        "details": {"limit": 10, "ratio": 0.25, "nested": {"b": 1, "a": [1, 2]}},
    }
    fields.update(extra)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def fill(sessions: sessionmaker[Session], n: int) -> list[AuditEvent]:
    return [record(sessions, read(actor=f"user{i}")) for i in range(n)]


def test_appends_link_into_a_chain_that_verifies(sessions: sessionmaker[Session]) -> None:
    events = fill(sessions, 5)

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == chain.GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    with unit_of_work(sessions) as db:
        result = verify(db)
        head = db.get(AuditHead, 1)
    assert result.ok and result.first_broken is None
    assert result.checked == 5 and result.head_seq == 5
    assert head is not None and head.hash == events[-1].hash


def test_empty_chain_verifies(sessions: sessionmaker[Session]) -> None:
    with unit_of_work(sessions) as db:
        ensure_head(db)
        ensure_head(db)  # idempotent
    with unit_of_work(sessions) as db:
        result = verify(db)
    assert result.ok and result.checked == 0 and result.head_seq == 0


def test_canonical_form_survives_the_database_round_trip(sessions: sessionmaker[Session]) -> None:
    written = record(sessions, read(details={"z": 1, "a": {"y": [1.5, None, True]}, "k": "é"}))
    with unit_of_work(sessions) as db:
        loaded = db.get(AuditEvent, written.seq)
        assert loaded is not None
        assert chain.canonical(loaded) == chain.canonical(written)
        assert loaded.chain_v == 2 and loaded.key_id == keys_for(db.get_bind()).current.id
        assert expected_hash(loaded, keys_for(db.get_bind())) == written.hash
        row = db.execute(select(AuditEvent.__table__).where(AuditEvent.seq == 1)).mappings().one()
        assert chain.canonical(row) == chain.canonical(written)


def test_timestamps_hash_the_same_naive_or_in_any_zone() -> None:
    aware = datetime(2025, 3, 1, 12, 0, 0, 7, tzinfo=UTC)
    paris = aware.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    naive = aware.replace(tzinfo=None)
    assert chain.iso_utc(aware) == chain.iso_utc(paris) == chain.iso_utc(naive)
    assert chain.iso_utc(aware) == "2025-03-01T12:00:00.000007Z"


def test_every_column_but_the_hash_is_chained() -> None:
    columns = {c.name for c in AuditEvent.__table__.columns}
    assert columns - set(chain.CHAIN_FIELDS_V2) == {"hash"}
    assert set(chain.CHAIN_FIELDS_V2) <= columns


def test_unserialisable_details_are_refused_before_anything_is_written(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(Unprocessable), unit_of_work(sessions) as db:
        append(db, read(details={"bad": float("nan")}))
    with pytest.raises(Unprocessable), unit_of_work(sessions) as db:
        append(db, read(decision="maybe"))  # type: ignore[arg-type]


def test_an_altered_row_is_named(engine: Engine, sessions: sessionmaker[Session]) -> None:
    events = fill(sessions, 6)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 4"))

    with unit_of_work(sessions) as db:
        result = verify(db)

    assert not result.ok and result.first_broken is not None
    assert result.first_broken.seq == 4 and result.first_broken.id == events[3].id
    assert "altered" in result.first_broken.reason
    assert [(f.kind, f.seq) for f in result.findings if f.severity == "tampering"] == [
        ("rewritten", 4)
    ]
    assert result.checked == 6  # the walk goes on past a break, to report every kind


def test_an_altered_json_column_is_named(engine: Engine, sessions: sessionmaker[Session]) -> None:
    events = fill(sessions, 3)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET masked_columns = :v WHERE seq = 2"), {"v": "[]"})
    with unit_of_work(sessions) as db:
        broken = verify(db).first_broken
    assert broken is not None and broken.id == events[1].id


def test_a_rehashed_forgery_breaks_the_next_link(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    events = fill(sessions, 4)
    with unit_of_work(sessions) as db:
        forged = db.get(AuditEvent, 2)
        assert forged is not None
        forged.actor = "mallory"
        forged.hash = chain.event_hash(forged)

    with unit_of_work(sessions) as db:
        result = verify(db)
    # Re-hashed without the chain key: the forged event itself fails, and the next link.
    broken = result.first_broken
    assert broken is not None and broken.seq == 2 and broken.id == events[1].id
    kinds = [(f.kind, f.seq) for f in result.findings if f.severity == "tampering"]
    assert kinds == [("rewritten", 2), ("relinked", 3)]


def test_a_deleted_middle_row_is_detected(engine: Engine, sessions: sessionmaker[Session]) -> None:
    events = fill(sessions, 6)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq = 3"))

    with unit_of_work(sessions) as db:
        result = verify(db)

    assert result.first_broken is not None
    assert result.first_broken.seq == 4 and result.first_broken.id == events[3].id
    assert "3 missing" in result.first_broken.reason
    assert result.checked == 5


def test_a_truncated_tail_is_detected(engine: Engine, sessions: sessionmaker[Session]) -> None:
    fill(sessions, 6)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq > 4"))

    with unit_of_work(sessions) as db:
        result = verify(db)

    assert result.first_broken is not None
    assert result.first_broken.seq == 5 and result.first_broken.id is None
    assert "tail" in result.first_broken.reason
    assert result.checked == 4 and result.head_seq == 6


def test_a_missing_head_is_detected_and_appends_refuse(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    fill(sessions, 2)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))

    with unit_of_work(sessions) as db:
        result = verify(db)
    assert result.first_broken is not None and "head" in result.first_broken.reason
    with pytest.raises(AuditUnavailable):
        record(sessions, read())


def test_an_event_written_around_the_head_is_detected(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    events = fill(sessions, 2)
    stray = {c: getattr(events[-1], c) for c in chain.CHAIN_FIELDS}
    stray.update(seq=3, id="f" * 32, prev_hash=events[-1].hash)
    stray["hash"] = chain.event_hash(stray)
    with engine.begin() as conn:
        conn.execute(insert(AuditEvent).values(**stray))

    with unit_of_work(sessions) as db:
        result = verify(db)
    assert result.first_broken is not None and result.first_broken.seq == 3
    assert "head" in result.first_broken.reason


def test_append_commits_with_the_callers_transaction(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), unit_of_work(sessions) as db:
        append(db, read())
        raise RuntimeError("the change failed")
    with unit_of_work(sessions) as db:
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == 0
    with unit_of_work(sessions) as db:
        first = append(db, read())
        second = append(db, read())  # the same transaction may append twice
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    with unit_of_work(sessions) as db:
        assert verify(db).ok


def test_eight_threads_append_one_linear_chain(sessions: sessionmaker[Session]) -> None:
    per_thread, errors = 15, []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                record(sessions, read(actor=f"t{n}-{i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with unit_of_work(sessions) as db:
        result = verify(db)
        seqs = list(db.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
    assert result.ok, result.first_broken
    assert result.checked == 8 * per_thread
    assert seqs == list(range(1, 8 * per_thread + 1))


def test_processes_append_one_linear_chain(
    db_url: str, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with unit_of_work(sessions) as db:
        ensure_head(db)
    env = {**os.environ, "PYTHONPATH": str(PLATFORM)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "append_worker.py"), db_url, f"p{n}", "20"], env=env
        )
        for n in range(4)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]

    with unit_of_work(sessions) as db:
        result = verify(db)
    assert result.ok, result.first_broken
    assert result.checked == 80


@pytest.mark.slow
def test_verify_walks_a_large_chain_in_bounded_memory(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # WARDEN_AUDIT_VERIFY_N=1000000 for the full-size run; the memory bound holds at any n.
    n = int(os.environ.get("WARDEN_AUDIT_VERIFY_N", "10000"))
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    prev, batch = chain.GENESIS_HASH, []
    with engine.begin() as conn:
        for seq in range(1, n + 1):
            row = {
                "seq": seq,
                "id": f"{seq:032x}",
                "ts": t0 + timedelta(microseconds=seq),
                "actor": "bulk",
                "actor_kind": "service",
                "on_behalf_of": None,
                "tenant": "acme",
                "action": "read",
                "dataset": "engagements",
                "dataset_version": None,
                "purpose": "training",
                "decision": "allow",
                "rule": None,
                "policy_version": 1,
                "columns": ["pin_id"],
                "masked_columns": [],
                "row_filter": [],
                "rows": seq,
                "bytes": None,
                "grant_ids": [],
                "trace_id": None,
                "reason": None,
                "details": {},
                "prev_hash": prev,
            }
            row["hash"] = prev = chain.event_hash(row)
            batch.append(row)
            if len(batch) == 10_000:
                conn.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            conn.execute(insert(AuditEvent), batch)
        conn.execute(insert(AuditHead).values(id=1, seq=n, hash=prev))

    tracemalloc.start()
    with unit_of_work(sessions) as db:
        result = verify(db, batch_size=1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok and result.checked == n
    # One batch of rows at a time (about 4 MB); all 10k rows at once would take over 20 MB.
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
