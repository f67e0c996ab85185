"""One group commit of audit events on PostgreSQL in two round trips (docs/audit.md §6).

Through SQLAlchemy a group took five: BEGIN, advance the head, insert the events, store the
new hash, COMMIT, each waited for, each a statement's worth of Core execution in Python. Here
the same transaction runs on the pooled connection's psycopg driver in pipeline mode: BEGIN
and the head's advance go out together (its answer is the previous hash, which the chain step
needs); then the events (one prepared INSERT per event), the new hash and the COMMIT go out
together and are waited for once. Nothing is acknowledged before that COMMIT has answered, and a
failure anywhere leaves nothing of the group (the transaction never committed).

The groups go over one connection of their own per engine and process (`writer_for`), kept
between groups: one group at a time (a leader writes its sessionmaker's groups one after the
other; a lock covers two sessionmakers on one engine). Checked out of SQLAlchemy's pool and back
for each group (its reset on return, its events), the connection cost a tenth of the write.
Any failure closes it and the next group connects again; it is closed when its engine is
disposed or collected.
"""

from __future__ import annotations

import contextlib
import json
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeGuard

import psycopg
from sqlalchemy import Engine, insert
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg

from warden.audit.models import HEAD_ID, AuditEvent
from warden.db.per_engine import PerEngine
from warden.db.session import catalog_first

# Fixed statement texts: psycopg prepares each on a connection after a few uses.
_ADVANCE = "UPDATE audit_head SET seq = seq + %s WHERE id = %s RETURNING seq, hash"
_STORE = "UPDATE audit_head SET hash = %s WHERE id = %s"
# every column, as named parameters (%(seq)s …): SQLAlchemy's own INSERT for the table
_INSERT = str(insert(AuditEvent).compile(dialect=sa_psycopg.dialect()))
_JSON_COLUMNS = frozenset({"columns", "masked_columns", "row_filter", "grant_ids", "details"})

Rows = list[dict[str, Any]]
# (first seq, previous hash) -> the group's rows, chained, and the last one's hash
Chain = Callable[[int, str], tuple[Rows, str]]


def usable(engine: Any) -> TypeGuard[Engine]:
    """Whether `engine` is PostgreSQL through psycopg 3 (the driver pipeline mode needs)."""
    return (
        isinstance(engine, Engine)
        and engine.dialect.name == "postgresql"
        and engine.dialect.driver == "psycopg"
    )


class GroupWriter:
    """Writes one process's groups on `engine`'s PostgreSQL over a connection of its own."""

    def __init__(self, engine: Engine) -> None:
        args, params = engine.dialect.create_connect_args(engine.url)
        self.args, self.params = list(args), {**params, "autocommit": False}
        self.held: list[psycopg.Connection[Any] | None] = [None]  # the connection, if any
        self.lock = threading.Lock()
        weakref.finalize(self, _close, self.held)
        held = self.held  # not the writer: the engine's listener must not keep it alive
        sa_event.listen(engine, "engine_disposed", lambda _: _close(held))

    def write_group(self, n: int, chain: Chain) -> Rows | None:
        """Advance the head by `n`, insert what `chain` makes of (first seq, previous hash),
        store the last hash, commit; the rows once committed. None, with nothing written, when
        the head row is missing (the caller creates it its own way). Raises on any failure;
        the transaction is then rolled back and the connection closed."""
        with self.lock:
            return self._write(n, chain)

    def _write(self, n: int, chain: Chain) -> Rows | None:
        raw = self.held[0]
        if raw is None or raw.closed:
            raw = psycopg.Connection.connect(*self.args, **self.params)
            try:  # not the pool's: its connect hook never ran here
                catalog_first(raw)
            except BaseException:
                raw.close()
                raise
            self.held[0] = raw
        try:
            with raw.pipeline():
                cur = raw.cursor()
                cur.execute(_ADVANCE, (n, HEAD_ID))
                advanced = cur.fetchone()  # syncs: BEGIN and the advance in one round trip
                if advanced is None:
                    raw.rollback()
                    return None
                last_seq, prev_hash = advanced
                rows, last_hash = chain(int(last_seq) - n + 1, str(prev_hash))
                cur.executemany(_INSERT, _values(rows))
                cur.execute(_STORE, (last_hash, HEAD_ID))
                raw.commit()  # syncs: the insert, the hash and the COMMIT in one round trip
        except BaseException:
            self.close()  # whatever state the driver was left in, it is not reused
            raise
        return rows

    def close(self) -> None:
        _close(self.held)


_writers: PerEngine[GroupWriter] = PerEngine()


def writer_for(engine: Engine) -> GroupWriter:
    return _writers.get(engine, lambda: GroupWriter(engine))


def _close(held: list[psycopg.Connection[Any] | None]) -> None:
    conn, held[0] = held[0], None
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _values(rows: Rows) -> list[dict[str, Any]]:
    """The rows with their JSON columns as the JSON text SQLAlchemy sends."""
    return [
        {c: json.dumps(v) if c in _JSON_COLUMNS and v is not None else v for c, v in row.items()}
        for row in rows
    ]
