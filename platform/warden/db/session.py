"""Engines and sessions. Services never commit; the caller's unit of work does."""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from warden.db.generation import BUMP_KEY

log = logging.getLogger("warden.db")


def make_engine(url: str, *, sqlite_busy_timeout_s: float = 5.0, **kwargs: Any) -> Engine:
    """SQLite: WAL (readers beside the one writer), FULL sync, and a bounded wait for the write
    lock (then `database is locked`, which the API answers 503 + Retry-After).

    PostgreSQL: no pre-ping on checkout (it was one extra round trip per checkout, several per
    read). A connection found dead answers one clean 503 and SQLAlchemy then invalidates every
    older pooled connection, so a restarted server is reconnected to on the next checkouts."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        on_disk = database and database != ":memory:" and not database.startswith("file:")
        lock = Path(f"{database}.writer").resolve() if on_disk else None  # cwd may change
        gate = WriterGate(sqlite_busy_timeout_s, lock)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": sqlite_busy_timeout_s,
                "factory": gate.connection_class(),
            },
            **kwargs,
        )
        gate.install(engine)
        _gates[engine] = gate

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run beside the audit writer; FULL sync keeps audit rows on a crash.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, **kwargs)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", lambda dbapi_conn, _record: catalog_first(dbapi_conn))
    return engine


def catalog_first_path(schemas: list[str]) -> str:
    """The search path `schemas` (`current_schemas(false)`: those that exist, in order) name,
    without `pg_catalog`: PostgreSQL searches it first only where the path does not name it,
    so a schema put before it (`ALTER DATABASE … SET search_path = evil, pg_catalog, …`) would
    give Warden's SQL its own `=` or `to_regclass` (red team 21). Tables are still made in the
    first schema named, as before."""
    return ", ".join('"' + s.replace('"', '""') + '"' for s in schemas if s != "pg_catalog")


# Function calls fully qualified, arguments as parameters: no operator is resolved here.
SCHEMAS_SQL = "SELECT pg_catalog.current_schemas(false)"
CATALOG_FIRST_SQL = "SELECT pg_catalog.set_config('search_path', %s, false)"


def catalog_first(dbapi_conn: Any) -> None:
    """Put `pg_catalog` first on a new PostgreSQL connection: every one Warden opens, the
    pool's and those past it (the audit group writer's: red team 22)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(SCHEMAS_SQL)
        cur.execute(CATALOG_FIRST_SQL, (catalog_first_path(list(cur.fetchone()[0])),))
    finally:
        cur.close()
    dbapi_conn.commit()  # a session setting made in a transaction rolled back would be undone


# Connections one process may open to PostgreSQL: kept, and opened past those under load.
POOL_SIZE, POOL_OVERFLOW = 10, 20
# Beside the pool, with several processes each event loop keeps one for read stamps
# (db/stamp_feed.py), and each process one for its audit group commits (audit/pg_group.py).
LOOP_CONNECTIONS = 1
AUDIT_CONNECTIONS = 1


def connection_shortfall(engine: Engine, processes: int) -> str | None:
    """What is wrong when `processes` processes on `engine`'s PostgreSQL could ask it for more
    connections than it allows (they would fail with "too many clients" under load); None when
    they fit, or on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        allowed = int(conn.execute(text("SHOW max_connections")).scalar_one())
        reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
    wanted = processes * (POOL_SIZE + POOL_OVERFLOW + LOOP_CONNECTIONS + AUDIT_CONNECTIONS)
    if wanted <= allowed - reserved:
        return None
    return (
        f"{processes} processes may open up to {wanted} PostgreSQL connections"
        f" ({POOL_SIZE} + {POOL_OVERFLOW} + {LOOP_CONNECTIONS} + {AUDIT_CONNECTIONS} each),"
        " but the server allows"
        f" {allowed - reserved} (max_connections {allowed}, {reserved} reserved):"
        " under load some reads would fail; raise max_connections or run fewer workers"
    )


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


class WriterGate:
    """SQLite has one writer. Without this, the threads and processes that want to write all
    poll SQLite's lock, each sleeping longer between tries (up to 100 ms), and the unlucky ones
    wait many times the median: the SQLite tail. Here they queue instead: the threads of a
    process on one Python lock, then the processes on one file lock beside the database
    (`<database>.writer`, `flock`: the kernel drops it when a process dies), both taken at a
    connection's first write and given back when its transaction ends (commit, rollback,
    close). Waits are bounded by the busy timeout (then `database is locked`: a 503). A
    writer that does not use this gate (another tool on the file) still meets SQLite's own
    lock and busy timeout, so the gate decides only the order, never whether data is safe."""

    # How often a process waiting for another process's write looks again: short, so the
    # wait ends about when the write does (SQLite's own handler sleeps up to 100 ms).
    POLL_S = 0.0005

    def __init__(self, timeout_s: float, lock_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._timeout_s = timeout_s
        self._holder: object | None = None
        self._lock_path = lock_path
        self._file: IO[bytes] | None = None

    def enter(self, dbapi_conn: sqlite3.Connection, statement: str) -> None:
        if self._holder is dbapi_conn or dbapi_conn.isolation_level is None:
            return  # already the writer, or autocommit (each statement its own transaction)
        deadline = time.monotonic() + self._timeout_s
        if not self._lock.acquire(timeout=self._timeout_s):
            raise _locked(statement, "writer queue")
        try:
            self._take_file_lock(statement, deadline)
        except BaseException:
            self._lock.release()
            raise
        self._holder = dbapi_conn

    def leave(self, dbapi_conn: object) -> None:
        if self._holder is dbapi_conn:
            self._holder = None
            try:
                if self._file is not None:
                    fcntl.flock(self._file, fcntl.LOCK_UN)
            finally:
                self._lock.release()

    def _take_file_lock(self, statement: str, deadline: float) -> None:
        if self._lock_path is None:
            return
        if self._file is None:
            try:
                self._file = self._lock_path.open("ab")
            except OSError as exc:  # a read-only folder: SQLite's own lock still holds
                log.warning("no writer queue across processes (%s): %s", self._lock_path, exc)
                self._lock_path = None
                return
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _locked(statement, "another process writes") from None
                time.sleep(self.POLL_S)

    def connection_class(self) -> type[sqlite3.Connection]:
        gate = self

        class GatedConnection(sqlite3.Connection):
            def commit(self) -> None:
                try:
                    super().commit()
                finally:
                    gate.leave(self)

            def rollback(self) -> None:
                try:
                    super().rollback()
                finally:
                    gate.leave(self)

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    gate.leave(self)

        return GatedConnection

    def install(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip()[:7].upper().startswith(_WRITES):
                self.enter(conn.connection.dbapi_connection, statement)

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn: Any, *_: Any) -> None:
            raw = conn.connection.dbapi_connection
            if not raw.in_transaction:  # the statement wrote nothing that is still pending
                self.leave(raw)

        @event.listens_for(engine, "handle_error")
        def _error(context: Any) -> None:
            raw = getattr(context.connection, "connection", None)
            raw = getattr(raw, "dbapi_connection", None)
            if raw is not None and not raw.in_transaction:
                self.leave(raw)


_gates: weakref.WeakKeyDictionary[Engine, WriterGate] = weakref.WeakKeyDictionary()


def take_writer_turn(conn: Connection, why: str) -> None:
    """Queue for SQLite's one writer now, before the transaction's first write (the turn ends
    with the transaction, as a write's own would). A writer that decides what to write only
    once its turn has come (the audit group) then holds everything that queued meanwhile.
    Nothing on PostgreSQL, or on an engine made elsewhere."""
    gate = _gates.get(conn.engine)
    if gate is not None:
        gate.enter(conn.connection.dbapi_connection, why)  # type: ignore[arg-type]


def _locked(statement: str, why: str) -> OperationalError:
    return OperationalError(
        statement, None, sqlite3.OperationalError(f"database is locked ({why})")
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        commit_begun(session)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def commit_begun(session: Session) -> None:
    """Commit `session`'s transaction if it began one (or a generation bump was asked for). One
    that never began (a warm read: every lookup came from a cache) has nothing to commit or
    hand back; SQLAlchemy's empty commit (a transaction begun only to end, its events) cost a
    small read about 2% of its CPU, twice."""
    if session.in_transaction() or session.info.get(BUMP_KEY):
        session.commit()
