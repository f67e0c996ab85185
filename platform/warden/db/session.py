"""Engines and sessions. Services never commit; the caller's unit of work does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, sqlite_busy_timeout_s: float = 5.0, **kwargs: Any) -> Engine:
    """SQLite: WAL (readers beside the one writer), FULL sync, and a bounded wait for the write
    lock (then `database is locked`, which the API answers 503 + Retry-After).

    PostgreSQL: no pre-ping on checkout (it was one extra round trip per checkout, several per
    read). A connection found dead answers one clean 503 and SQLAlchemy then invalidates every
    older pooled connection, so a restarted server is reconnected to on the next checkouts."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": sqlite_busy_timeout_s},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run beside the audit writer; FULL sync keeps audit rows on a crash.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
