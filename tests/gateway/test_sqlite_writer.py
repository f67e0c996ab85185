"""SQLite as the embedded default: the threads of a process queue for the one writer (no
`database is locked` among themselves), a stuck writer elsewhere costs a bounded wait and a
clean 503 + Retry-After, and a read is never served without its audit event."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.gateway.servers import READ_BODY, build
from warden.api.app import create_app
from warden.db.session import make_engine


def test_threads_of_one_process_queue_for_the_writer_instead_of_failing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", sqlite_busy_timeout_s=30)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    holding = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (0)"))
            holding.set()
            release.wait(30)

    def other(n: int) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    t0 = threading.Thread(target=first)
    t0.start()
    assert holding.wait(30)
    others = [threading.Thread(target=other, args=(n,)) for n in range(1, 9)]
    for t in others:
        t.start()
    release.set()
    for t in [t0, *others]:
        t.join(60)
    assert not errors, errors[:2]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 9
    engine.dispose()


def test_a_writer_held_past_the_busy_timeout_fails_bounded_then_the_gate_is_free(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}", sqlite_busy_timeout_s=0.2)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    held = engine.connect()
    trans = held.begin()
    held.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(OperationalError, match="locked"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    trans.rollback()  # the writer gives the gate back when its transaction ends
    held.close()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
    # Autocommit statements never keep the gate.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("INSERT INTO t VALUES (4)"))
    with engine.begin() as conn:
        assert [r[0] for r in conn.execute(text("SELECT n FROM t ORDER BY n"))] == [3, 4]
    engine.dispose()


def test_a_stuck_sqlite_writer_answers_503_with_retry_after_and_serves_nothing(
    tmp_path: Path,
) -> None:
    w = build(tmp_path, None)
    settings = w.settings.model_copy(update={"sqlite_busy_timeout_s": 0.3})
    app = create_app(settings, jobs=False)
    headers = {"authorization": f"Bearer {w.alice}"}
    with TestClient(app) as http:
        assert http.post("/v1/datasets/engagements/read", json=READ_BODY, headers=headers)
        before = w.audited_reads()
        # Another process holds SQLite's write lock (a stuck writer, a long migration...).
        stuck = sqlite3.connect(settings.data_dir / "warden.db", isolation_level=None)
        stuck.execute("BEGIN IMMEDIATE")
        try:
            answer = http.post("/v1/datasets/engagements/read", json=READ_BODY, headers=headers)
        finally:
            stuck.execute("ROLLBACK")
            stuck.close()
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == str(settings.unavailable_retry_after_s)
        assert set(answer.json()) == {"error", "detail"}
        assert "x-warden-audit-event" not in answer.headers
        assert w.audited_reads() == before  # nothing served, so nothing to audit
        again = http.post("/v1/datasets/engagements/read", json=READ_BODY, headers=headers)
        assert again.status_code == 200
        assert again.headers["x-warden-audit-event"] in w.audited_reads()
