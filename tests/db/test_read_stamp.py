"""A read's stamp is taken on a pooled DBAPI connection past SQLAlchemy's execution layer
(db/generation.read_stamp_of): it answers as `read_stamp` does, leaves the pool as it found
it, and a connection a database restart killed costs at most one clean PolicyUnavailable
(503) before the pool is reconnected, as with SQLAlchemy's own handling."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from warden.db.generation import Stamp, read_stamp, read_stamp_of
from warden.db.session import make_sessionmaker, unit_of_work
from warden.errors import PolicyUnavailable


def _stamp_of(engine: Engine) -> Stamp:
    with unit_of_work(make_sessionmaker(engine)) as db:
        return read_stamp_of(db)


def test_the_stamp_is_the_one_sqlalchemy_reads(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE change_generation SET value = 41 WHERE id = 1"))
    with engine.connect() as conn:
        expected = read_stamp(conn)
    assert _stamp_of(engine) == expected
    assert expected.generation == 41


def test_the_connection_goes_back_to_the_pool_in_a_transaction_as_usual(engine: Engine) -> None:
    _stamp_of(engine)
    with engine.connect() as conn:  # the same pooled connection
        conn.execute(text("UPDATE change_generation SET value = 7 WHERE id = 1"))
        conn.rollback()  # had it been left in autocommit, the update would have stayed
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM change_generation")).scalar_one() != 7


def _kill_pooled(engine: Engine, how_many: int) -> None:
    """Check `how_many` connections out together, then end their server sessions."""
    held = [engine.connect() for _ in range(how_many)]
    pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in held]
    for c in held:
        c.close()
    admin = create_engine(engine.url, poolclass=NullPool)  # a connection outside the pool
    with admin.begin() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_killed_pooled_connection_is_dropped_and_the_next_one_reads(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a server restart is PostgreSQL's")
    expected = _stamp_of(engine)
    _kill_pooled(engine, 1)
    assert _stamp_of(engine) == expected
    assert _stamp_of(engine) == expected


def test_a_pool_of_killed_connections_answers_one_503_then_reads(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a server restart is PostgreSQL's")
    expected = _stamp_of(engine)
    _kill_pooled(engine, 3)
    answers = []
    for _ in range(3):
        try:
            answers.append(_stamp_of(engine))
        except PolicyUnavailable:
            answers.append(None)
    assert answers[1:] == [expected, expected], answers
