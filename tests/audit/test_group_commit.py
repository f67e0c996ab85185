"""Group commit behind `record()`: appends that arrive while one is being written share the
next transaction; each caller returns only once its event is durable, and a failed group
fails every caller in it and writes none of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from warden.audit import pg_group, service, telemetry
from warden.audit.checkpoints import Checkpointer
from warden.audit.keys import bind_settings
from warden.audit.models import AuditEvent
from warden.audit.service import AuditRecord, record, verify
from warden.config import Settings
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.errors import AuditUnavailable


def rec(actor: str) -> AuditRecord:
    return AuditRecord(action="read", decision="allow", actor=actor, actor_kind="person")


def wait_until(batcher: Any, predicate: Callable[[], bool], within_s: float = 120) -> None:
    deadline = time.monotonic() + within_s
    with batcher.cond:
        while not predicate():
            assert time.monotonic() < deadline, "the batcher never got there"
            batcher.cond.wait(0.05)


def held_first_write(batcher: Any, gate: threading.Event, after: Callable[[], None] | None = None):  # type: ignore[no-untyped-def]
    original = batcher._write
    sizes: list[int] = []

    def write(take: Callable[[], list[Any]]) -> None:
        sizes.append(len(take()))  # the group as it stands when the write starts
        if len(sizes) == 1:
            gate.wait(120)
        elif len(sizes) == 2 and after is not None:
            after()
        original(take)

    batcher._write = write
    return sizes


def run(n: int, results: dict[int, Any], sessions: sessionmaker[Session]) -> threading.Thread:
    def work() -> None:
        try:
            results[n] = record(sessions, rec(f"u{n}"))
        except Exception as exc:
            results[n] = exc

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_waiting_appends_share_one_commit(sessions: sessionmaker[Session]) -> None:
    batcher = service._batcher_for(sessions)
    gate = threading.Event()
    sizes = held_first_write(batcher, gate)
    results: dict[int, Any] = {}
    threads = [run(0, results, sessions)]
    wait_until(batcher, lambda: batcher.leading)
    threads += [run(n, results, sessions) for n in range(1, 8)]
    wait_until(batcher, lambda: len(batcher.queue) == 7)
    assert results == {}  # nobody is released before their event is durable
    gate.set()
    for t in threads:
        t.join()

    assert sizes == [1, 7] and batcher.batches == 2
    assert sorted(e.seq for e in results.values()) == list(range(1, 9))
    with unit_of_work(sessions) as db:
        assert verify(db).ok
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == 8


def test_on_sqlite_callers_who_queue_while_another_process_writes_join_the_group(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    """The group is taken once the leader's turn at SQLite's one writer has come: the callers
    who queued while another process held it are written with the leader, in one commit, not
    in a second group after it."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the writer queue across processes is SQLite's")
    record(sessions, rec("first"))  # the head exists: the next groups take the usual path
    batcher = service._batcher_for(sessions)
    written = batcher.batches
    other = make_engine(engine.url.render_as_string(hide_password=False))  # another process
    try:
        with other.connect() as writing:
            writing.execute(text("UPDATE audit_head SET seq = seq"))  # its turn, held open
            results: dict[int, Any] = {}
            threads = [run(0, results, sessions)]
            wait_until(batcher, lambda: batcher.leading)
            threads += [run(n, results, sessions) for n in range(1, 8)]
            # The leader's own event is still queued: nothing was taken before its turn.
            wait_until(batcher, lambda: len(batcher.queue) == 8, within_s=4)
            assert results == {}
            writing.commit()
        for t in threads:
            t.join()
    finally:
        other.dispose()

    assert batcher.batches == written + 1
    assert sorted(e.seq for e in results.values()) == list(range(2, 10))
    with unit_of_work(sessions) as db:
        assert verify(db).ok


def test_a_failed_group_fails_every_caller_and_writes_none(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = service._batcher_for(sessions)
    gate = threading.Event()

    def break_the_store() -> None:
        def boom(_engine: object) -> None:
            raise RuntimeError("the key store went away")

        monkeypatch.setattr(service, "keys_for", boom)

    held_first_write(batcher, gate, after=break_the_store)
    results: dict[int, Any] = {}
    threads = [run(0, results, sessions)]
    wait_until(batcher, lambda: batcher.leading)
    threads += [run(n, results, sessions) for n in range(1, 4)]
    wait_until(batcher, lambda: len(batcher.queue) == 3)
    gate.set()
    for t in threads:
        t.join()

    assert isinstance(results[0], AuditEvent)
    assert all(isinstance(results[n], AuditUnavailable) for n in range(1, 4))
    monkeypatch.undo()
    with unit_of_work(sessions) as db:
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == 1
        assert verify(db).ok
    assert record(sessions, rec("after")).seq == 2  # the chain carries on


def test_concurrent_appends_and_checkpoints_chain_and_verify(
    engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", config_dir=tmp_path / "config", audit_checkpoint_interval_s=0
    )
    bind_settings(engine, settings)
    platform = SimpleNamespace(settings=settings, sessions=sessions, engine=engine)
    checkpointer = Checkpointer(platform)  # type: ignore[arg-type]
    start = threading.Barrier(9)
    errors: list[BaseException] = []
    written: list[int] = []

    def append(n: int) -> None:
        try:
            start.wait()
            for i in range(15):
                record(sessions, rec(f"t{n}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    appended = threading.Event()

    def checkpoints() -> None:
        try:
            start.wait()
            while not appended.wait(0.01):
                outcome = checkpointer.checkpoint_now()
                assert not outcome.findings, outcome.findings
                if outcome.checkpoint is not None:
                    written.append(outcome.checkpoint.seq)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    appenders = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    ticker = threading.Thread(target=checkpoints)
    for t in [*appenders, ticker]:
        t.start()
    for t in appenders:
        t.join()
    appended.set()
    ticker.join()
    final = checkpointer.checkpoint_now()
    if final.checkpoint is not None:
        written.append(final.checkpoint.seq)

    assert errors == []
    assert written
    with unit_of_work(sessions) as db:
        result = verify(db, checkpoints=checkpointer.store.read())
        versions = set(db.scalars(select(AuditEvent.chain_v)))
    assert result.ok, result.findings
    assert result.checked == 8 * 15 + len(written)  # reads plus one record per checkpoint
    assert result.checkpoints_checked == len(written) and versions == {2}


def test_each_event_keeps_its_own_callers_trace(
    sessions: sessionmaker[Session], captured: Any
) -> None:
    batcher = service._batcher_for(sessions)
    gate = threading.Event()
    held_first_write(batcher, gate)
    results: dict[int, Any] = {}
    spans: dict[int, int] = {}

    def traced(n: int) -> threading.Thread:
        def work() -> None:
            with telemetry.read_span("warden.read") as span:
                spans[n] = span.get_span_context().trace_id
                results[n] = record(sessions, rec(f"u{n}"))

        thread = threading.Thread(target=work)
        thread.start()
        return thread

    threads = [traced(0)]
    wait_until(batcher, lambda: batcher.leading)
    threads += [traced(1), traced(2)]
    wait_until(batcher, lambda: len(batcher.queue) == 2)
    gate.set()
    for t in threads:
        t.join()

    assert batcher.batches == 2  # 1 and 2 were written together, by one of them
    logs = {
        dict(r.log_record.attributes or {})["warden.audit.event_id"]: r.log_record.trace_id
        for r in captured.logs.get_finished_logs()
    }
    for n in range(3):
        event = results[n]
        assert event.trace_id == f"{spans[n]:032x}"
        assert logs[event.id] == spans[n]


def test_a_postgres_group_is_pipelined_and_stores_what_it_returns(
    engine: Engine, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the group goes through the driver's pipeline (audit/pg_group.py); the
    row it stores is the event `record()` returned, field for field, and the chain verifies."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the pipelined group is PostgreSQL's")
    groups: list[int] = []
    original = pg_group.GroupWriter.write_group

    def counted(*args: Any) -> Any:
        groups.append(args[1])
        return original(*args)

    monkeypatch.setattr(pg_group.GroupWriter, "write_group", counted)
    first = record(sessions, rec("first"))  # may create the head on the session path
    event = record(
        sessions,
        AuditRecord(
            action="dataset.read",
            decision="allow",
            actor="alice",
            actor_kind="person",
            columns=["user_id", "région"],
            row_filter=[{"column": "region", "op": "ne", "value": "zz"}],
            rows=100,
            details={"where": [], "limit": 100, "nested": {"ü": [1, 2.5, None, True]}},
        ),
    )
    assert len(groups) == 2 and event.seq == first.seq + 1
    with unit_of_work(sessions) as db:
        stored = db.get(AuditEvent, event.seq)
        assert stored is not None
        assert service.event_dict(stored) == service.event_dict(event)
        assert verify(db).ok


def test_a_postgres_group_whose_connection_died_fails_alone_and_the_next_reconnects(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """The groups' own connection (pg_group.writer_for): killed under it, one group answers
    AuditUnavailable and writes nothing; the next connects again and the chain carries on."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the groups' own connection is PostgreSQL's")
    record(sessions, rec("first"))  # may create the head on the session path
    record(sessions, rec("second"))
    writer = pg_group.writer_for(engine)
    dead = writer.held[0]
    assert dead is not None
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead.info.backend_pid})
        conn.commit()
    with pytest.raises(AuditUnavailable):
        record(sessions, rec("lost"))
    assert writer.held[0] is None  # dropped with its group
    after = record(sessions, rec("after"))
    assert writer.held[0] is not None and writer.held[0] is not dead
    with unit_of_work(sessions) as db:
        actors = list(db.scalars(select(AuditEvent.actor).order_by(AuditEvent.seq)))
        assert verify(db).ok
    assert "lost" not in actors and actors[-1] == "after" == after.actor


def test_the_groups_connection_closes_with_its_engine(db_url: str) -> None:
    engine = make_engine(db_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("the groups' own connection is PostgreSQL's")
    record(make_sessionmaker(engine), rec("first"))
    conn = pg_group.writer_for(engine).held[0]
    assert conn is not None and not conn.closed
    engine.dispose()
    assert conn.closed
