"""One group commit of audit events on PostgreSQL in two round trips (docs/audit.md §6).

Through SQLAlchemy a group took five: BEGIN, advance the head, insert the events, store the
new hash, COMMIT, each waited for, each a statement's worth of Core execution in Python. Here
the same transaction runs on the pooled connection's psycopg driver in pipeline mode: BEGIN
and the head's advance go out together (its answer is the previous hash, which the chain step
needs); then the events (one prepared INSERT per event), the new hash and the COMMIT go out
together and are waited for once. Nothing is acknowledged before that COMMIT has answered, and a
failure anywhere leaves nothing of the group (the transaction never committed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeGuard

from sqlalchemy import Engine, insert
from sqlalchemy.dialects.postgresql import psycopg

from warden.audit.models import HEAD_ID, AuditEvent

# Fixed statement texts: psycopg prepares each on a connection after a few uses.
_ADVANCE = "UPDATE audit_head SET seq = seq + %s WHERE id = %s RETURNING seq, hash"
_STORE = "UPDATE audit_head SET hash = %s WHERE id = %s"
# every column, as named parameters (%(seq)s …): SQLAlchemy's own INSERT for the table
_INSERT = str(insert(AuditEvent).compile(dialect=psycopg.dialect()))
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


def write_group(engine: Engine, n: int, chain: Chain) -> Rows | None:
    """Advance the head by `n`, insert what `chain` makes of (first seq, previous hash), store
    the last hash, commit; the rows once committed. None, with nothing written, when the head
    row is missing (the caller creates it its own way) or the connection is in autocommit.
    Raises on any failure; the transaction is then rolled back and the connection dropped."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if raw is None or raw.autocommit:
            return None
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
            conn.invalidate()  # whatever state the driver was left in, it is not reused
            raise
        return rows


def _values(rows: Rows) -> list[dict[str, Any]]:
    """The rows with their JSON columns as the JSON text SQLAlchemy sends."""
    return [
        {c: json.dumps(v) if c in _JSON_COLUMNS and v is not None else v for c, v in row.items()}
        for row in rows
    ]
