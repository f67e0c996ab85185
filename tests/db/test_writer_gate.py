"""SQLite writers queue across processes on a file lock beside the database, not on SQLite's
own lock (whose busy handler sleeps up to 100 ms between tries: the tail of `serve --workers`
on SQLite). Two engines stand for two processes: `flock` locks belong to an open file, so two
engines in one process exclude each other exactly as two processes do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from warden.db.session import make_engine


@pytest.fixture
def engines(tmp_path: Path) -> tuple[Engine, Engine]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    first = make_engine(url)
    second = make_engine(url, sqlite_busy_timeout_s=0.3)
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield first, second
    first.dispose()
    second.dispose()


def _write(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))


@pytest.mark.parametrize(
    "end",
    [Connection.commit, Connection.rollback, Connection.close],
    ids=["commit", "rollback", "close"],
)
def test_a_second_process_waits_for_the_writer_then_writes(
    engines: tuple[Engine, Engine], end: Callable[[Connection], None], tmp_path: Path
) -> None:
    first, second = engines
    writing = first.connect()
    writing.execute(text("INSERT INTO t VALUES (1)"))  # a write transaction, left open
    with pytest.raises(OperationalError, match="another process writes"):
        _write(second)  # queued on the file lock, and the wait is bounded
    end(writing)
    _write(second)  # the lock was given back with the transaction
    writing.close()
    assert (tmp_path / "w.db.writer").exists()


def test_reads_do_not_queue(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    with first.connect() as writing:
        writing.execute(text("INSERT INTO t VALUES (1)"))
        with second.connect() as reading:  # WAL: a reader beside the open write
            assert reading.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        writing.commit()
