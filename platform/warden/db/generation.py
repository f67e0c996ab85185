"""Which stored state a process's read caches were filled from.

One counter, `change_generation.value`, is bumped by database triggers (migration
0008_change_generation) on every insert, update or delete of the rows a governed read looks
up: tenants, principals, API tokens, datasets, their versions and columns, and mask key
versions. Being triggers, they also see changes written past Warden (by hand, in SQL). A read
asks for the counter and the policy version in one statement (`read_stamp`), then takes the
token, the dataset view and the mask key versions from in-process caches filled at that same
generation; any change anywhere, by any process or replica, empties them on the next read.

Why it is safe: the stamp is read before anything it validates, and a change becomes visible
in the same commit as its bump, so an entry is never tagged newer than the data it holds.
On PostgreSQL the bump is a deferred trigger, so it takes the counter's row lock at commit,
after every other lock of that transaction (one lock order: no deadlocks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, CheckConstraint, Connection, Engine, Integer, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from warden.db.base import Base
from warden.errors import PolicyUnavailable

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Scalar subqueries: a row even when either is missing (then no caching, and policy version 0).
_STAMP_SQL = (
    "SELECT (SELECT version FROM policy_state WHERE id = 1),"
    " (SELECT value FROM change_generation WHERE id = 1)"
)
_STAMP = text(_STAMP_SQL)


class ChangeGeneration(Base):
    __tablename__ = "change_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class Stamp:
    """The stored policy version and change generation, read together at one instant.
    `generation` None: the counter is missing (a schema not made by the migrations), so
    nothing may be served from a cache."""

    policy_version: int
    generation: int | None


def read_stamp(conn: Connection) -> Stamp:
    """PolicyUnavailable if it cannot be read: every decision rests on it (fail closed)."""
    try:
        policy_version, generation = conn.execute(_STAMP).one()
    except SQLAlchemyError as exc:
        raise PolicyUnavailable(f"policy store unreachable: {exc.__class__.__name__}") from exc
    return _stamp(policy_version, generation)


def _stamp(policy_version: Any, generation: Any) -> Stamp:
    # A counter that is not a plausible integer was written past Warden (a REAL or a value at
    # the top of the range makes the triggers' +1 a no-op, freezing every cache): no caching.
    plausible = isinstance(generation, int) and 0 <= generation < MAX_GENERATION
    return Stamp(int(policy_version or 0), generation if plausible else None)


def read_stamp_of(db: Session) -> Stamp:
    """The stamp for a request whose session `db` has not connected yet: read on a pooled
    DBAPI connection of its own, past SQLAlchemy's execution layer and the session's
    connection and commits (together a tenth of a small read's CPU); the session connects
    only if a cache lacks something. Any failure there (a connection a database restart
    killed, the database away) drops that connection and reads the stamp again through
    SQLAlchemy, whose disconnect handling invalidates the rest of the pool and whose error is
    PolicyUnavailable (503), as before."""
    engine = db.get_bind()
    assert isinstance(engine, Engine)
    try:
        raw = engine.raw_connection()
    except Exception:
        return read_stamp(lookup_connection(db))
    try:
        row = _stamp_on(raw.dbapi_connection, engine.dialect.name == "postgresql")
    except Exception:
        raw.invalidate()  # never back to the pool, whatever state it is in
        row = None
    finally:
        raw.close()
    if row is None:
        return read_stamp(lookup_connection(db))
    return _stamp(*row)


def _stamp_on(dbapi: Any, postgres: bool) -> tuple[Any, Any]:
    if not postgres:  # SQLite's driver starts no transaction for a SELECT
        policy_version, generation = dbapi.execute(_STAMP_SQL).fetchone()
        return policy_version, generation
    dbapi.autocommit = True  # no BEGIN and COMMIT round trips (see lookup_connection)
    try:
        policy_version, generation = dbapi.execute(_STAMP_SQL, prepare=True).fetchone()
        return policy_version, generation
    finally:
        dbapi.autocommit = False  # as the pool hands connections out


def lookup_connection(db: Session) -> Connection:
    """`db`'s connection for a read's lookups (the stamp, then what the caches lack), which
    only read. On PostgreSQL each runs as a statement of its own (autocommit): at READ
    COMMITTED a transaction gives each statement its own snapshot anyway, so the answers are
    the same, without the BEGIN and COMMIT round trips. SQLite keeps its transaction (one
    snapshot for the lookups, and its writer queue keys on it)."""
    if db.get_bind().dialect.name == "postgresql":
        return db.connection(execution_options=_AUTOCOMMIT)
    return db.connection()


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
MAX_GENERATION = 1 << 62
_BUMP = text("UPDATE change_generation SET value = value + 1 WHERE id = 1")


def bump(db: Session) -> None:
    """Move the counter from Warden's own code as well as by trigger, where a revocation or a
    disable must reach every process's caches: a trigger dropped in SQL does not stop it.
    Done just before the commit, as the deferred trigger is, so it takes the counter's lock
    after every other lock of the transaction (one lock order: no deadlocks)."""
    db.info[BUMP_KEY] = True


BUMP_KEY = "bump_generation"  # in a session's info: bump at its commit


@event.listens_for(Session, "before_commit")
def _bump_at_commit(session: Session) -> None:
    if session.info.pop(BUMP_KEY, False):
        session.execute(_BUMP)


@event.listens_for(Session, "after_rollback")
def _forget_bump(session: Session) -> None:
    session.info.pop(BUMP_KEY, None)


class GenerationCache(Generic[K, V]):
    """Entries valid for one generation; a newer generation empties the cache. Only found
    things are kept (a miss is looked up again), and at most `limit` of them."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._items: dict[K, V] = {}
        self.hits = 0  # counters, for tests and operators
        self.loads = 0

    def get(self, generation: int | None, key: K, load: Callable[[], V]) -> V:
        if generation is None:
            return load()
        with self._lock:
            if generation == self._generation:
                if key in self._items:
                    self.hits += 1
                    return self._items[key]
            elif self._generation is None or generation > self._generation:
                self._items.clear()
                self._generation = generation
            else:
                # Older: a request that read the counter before a change, or the counter set
                # back in SQL. Kept, what was cached at the higher value would be served again
                # once the counter was set there after a change made meanwhile: forgotten.
                self._items.clear()
        value = load()  # outside the lock: a slow lookup holds up no other reader
        with self._lock:
            self.loads += 1
            # Kept only if no newer generation arrived meanwhile (an older reader never
            # stores what it saw into a newer cache).
            if generation == self._generation:
                if len(self._items) >= self._limit:
                    self._items.clear()
                self._items[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._generation = None

    def at(self, generation: int | None) -> CacheAt[K, V]:
        """This cache as seen by one request that read `generation`."""
        return CacheAt(self, generation)


@dataclass(frozen=True, slots=True)
class CacheAt(Generic[K, V]):
    cache: GenerationCache[K, V]
    generation: int | None

    def get(self, key: K, load: Callable[[], V]) -> V:
        return self.cache.get(self.generation, key, load)
