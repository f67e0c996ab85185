"""What the chain walk cannot see: rows numbered outside the chain (the walk starts at 1 and
stops at the head), the same value stored as other text (SQLite), and log tables that are
not plain tables. `verify` reports each as tampering; Warden writes none of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Table, func, inspect, select, text
from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent, AuditHead

OUTSIDE = "outside_chain"  # an event numbered below 1 (or not a number): written around it
NOT_CANONICAL = "not_canonical"  # a column stored as other text for the same value (SQLite)
# the log is a view, or has triggers, rules or row security; or a constraint, an index or a
# NOT NULL Warden's tables lack, which fails some appends (a refusal's event: no trace at all)
NOT_A_TABLE = "not_a_table"
MAX_FINDINGS = 200

Found = tuple[str, int | None, str | None, str]  # kind, seq, event id, detail


def unwalked(db: Session) -> Iterator[Found]:
    yield from _outside(db)
    yield from _not_plain_tables(db)
    yield from _narrowed(db)
    if db.get_bind().dialect.name == "sqlite":
        yield from _not_canonical_time(db)


def _outside(db: Session) -> Iterator[Found]:
    """The chain starts at 1 and the walk reads from there: a row numbered below it is never
    walked, yet every query of the log would show it."""
    table = AuditEvent.__table__
    below = select(table.c.seq, table.c.id).where(table.c.seq < 1).order_by(table.c.seq)
    first = db.execute(below.limit(1)).first()
    if first is not None:
        count = db.scalar(select(func.count()).select_from(below.subquery()))
        detail = f"{count} event(s) numbered below 1, where the chain starts: written around it"
        yield OUTSIDE, first.seq, first.id, detail


_LOG_TABLES = ("audit_event", "audit_head")
# What the name Warden's queries use resolves to (the search path decides, so a view placed
# earlier in it counts), and what could make it answer queries unlike the walk.
_PG_RELATION = text(
    "SELECT c.relkind, c.relrowsecurity,"
    " (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),"
    " (SELECT count(*) FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')"
    " FROM pg_class c WHERE c.oid = to_regclass(:name)"
)
_SQLITE_RELATION = text(
    "SELECT (SELECT type FROM sqlite_master WHERE name = :name),"
    " (SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :name)"
)


def _not_plain_tables(db: Session) -> Iterator[Found]:
    """The walk vouches for the rows it reads; a view, a trigger, a rule or row security on
    the log's tables could show other queries other rows. Warden creates none of them."""
    postgres = db.get_bind().dialect.name == "postgresql"
    for name in _LOG_TABLES:
        if postgres:
            row = db.execute(_PG_RELATION, {"name": name}).first()
            odd = row is None or row[0] not in ("r", "p") or row[1] or row[2] or row[3]
        else:
            kind, triggers = db.execute(_SQLITE_RELATION, {"name": name}).one()
            odd = kind != "table" or bool(triggers)
        if odd:
            detail = f"{name} is not a plain table (a view, a trigger, a rule or row security)"
            yield NOT_A_TABLE, None, None, detail


def _narrowed(db: Session) -> Iterator[Found]:
    """A check, a foreign key, a unique key Warden's tables lack, an index that is partial or
    over an expression, a NOT NULL where Warden leaves a column empty, a shorter column or a
    narrower integer: each
    makes some appends fail, and a request refused whose event fails leaves no trace at all,
    while every event that exists still chains (red team 21). Warden makes none of them."""
    look = inspect(db.connection())
    for table in (AuditEvent.__table__, AuditHead.__table__):
        assert isinstance(table, Table)
        odd = _narrowings(look, table)
        if odd:
            detail = f"{table.name} has {', '.join(odd)}: some events cannot be appended"
            yield NOT_A_TABLE, None, None, detail


def _narrowings(look: Any, table: Table) -> list[str]:
    name = table.name
    keys = {tuple(c.name for c in k.columns) for k in table.constraints if hasattr(k, "columns")}
    odd = ["a check constraint"] if look.get_check_constraints(name) else []
    odd += ["a foreign key"] if look.get_foreign_keys(name) else []
    uniques = [tuple(u["column_names"]) for u in look.get_unique_constraints(name)]
    for index in look.get_indexes(name):
        options = index.get("dialect_options") or {}
        if (
            None in index["column_names"]
            or index.get("expressions")
            or any(key.endswith("_where") and value is not None for key, value in options.items())
        ):
            odd.append(f"index {index['name']} (partial or over an expression)")
        elif index.get("unique"):
            uniques.append(tuple(index["column_names"]))
    odd += [f"a unique key on {', '.join(u)}" for u in uniques if u not in keys]
    found = {c["name"]: c for c in look.get_columns(name)}
    for column in table.columns:
        seen = found.get(column.name)
        if seen is None:
            continue  # a column gone fails every append: loud
        if column.nullable and not seen["nullable"]:
            odd.append(f"NOT NULL on {column.name}")
        ours, theirs = getattr(column.type, "length", None), getattr(seen["type"], "length", None)
        shorter = bool(ours and theirs and theirs < ours)
        narrower = _int_bytes(seen["type"]) < _int_bytes(column.type)  # counts past 2**31 fail
        if type(seen["type"]).__name__ == "DOMAIN" or shorter or narrower:
            odd.append(f"{column.name} narrowed to {seen['type']}")
    return odd


def _int_bytes(kind: Any) -> int:
    """An integer column's width (a BIGINT is an Integer too: the first match wins); 8 for
    what is no integer, so only a narrower integer compares lower."""
    for cls in type(kind).__mro__:
        if cls.__name__ in _INT_BYTES:
            return _INT_BYTES[cls.__name__]
    return 8


_INT_BYTES = {"SmallInteger": 2, "BigInteger": 8, "Integer": 4}


# How SQLAlchemy writes a timestamp into SQLite; the chain hashes the parsed instant, so the
# same instant as other text (an offset, a 'T') would hash alike yet sort apart in queries.
_SQLITE_TS = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9]*"


def _not_canonical_time(db: Session) -> Iterator[Found]:
    table = AuditEvent.__table__
    odd = (
        select(table.c.seq, table.c.id)
        .where(text("typeof(ts) != 'text' OR length(ts) != 26 OR ts NOT GLOB :canonical"))
        .params(canonical=_SQLITE_TS)
        .order_by(table.c.seq)
        .limit(MAX_FINDINGS)
    )
    for seq, event_id in db.execute(odd):
        detail = (
            "its timestamp is stored as other text for the same instant: hidden from time queries"
        )
        yield NOT_CANONICAL, seq, event_id, detail
