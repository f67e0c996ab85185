"""Rows a database writer cannot forge: who a principal is, what a tenant may do, what a
sandbox, a job token, a job or a model speaks for, what a request, a grant, a reviewed change
or an experiment says, where a webhook goes, whose a workspace or a console session is.

A decision trusts some fields of these rows: a principal's name (Casbin decides on names),
kind, owner and creator (separation of duties), `disabled`; a tenant's name and whether it
is the installation's (platform admins); a sandbox's launcher, scope, segment and container
(what its job token reads as whom, what an exec runs in); where a request, grant, change or
console session stands, and its times (a resolved one is never reopened); a model's lineage
and files (who may use it, what its routes serve); and so on, each model's `__sealed__`
naming its own. Someone who can write the
database but not the deployment's key files could rename mallory to alice, or point a
model's report at a raw dataset file. So a model that mixes in `Sealed` names those fields
in `__sealed__`, and its `seal` column holds a keyed MAC of them (`audit.keys.derived_mac`,
domain-separated by table; the row's id is always among the fields).

- **Warden's writes seal themselves**: every ORM flush seals new rows and rows whose sealed
  fields Warden changed; a changed row whose stored seal did not match what was stored is
  refused (RowTampered) rather than sealed in passing.
- **Readers check** (`check` for an ORM row, `check_values` for a selected one) where the
  fields decide something, and fail closed: 401 for a caller, 503 elsewhere.
- An operator who has looked reseals what does not match: `warden data seal` (audited).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import ColumnElement, String, event, inspect, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from warden.audit.keys import ChainKeyring, derived_mac, keys_for
from warden.errors import Unavailable


class RowTampered(Unavailable):
    """A sealed row's fields do not match their seal: written past Warden, or never sealed."""


class Sealed:
    """Mixin: the row carries `seal`, a keyed MAC of its `__sealed__` fields."""

    __sealed__: ClassVar[tuple[str, ...]] = ()
    # The field sets earlier Wardens sealed this table with: a model whose `__sealed__` grows
    # names the set before here, so `warden data seal --all` reseals only rows that match
    # what they were sealed as (an upgrade's leftovers), never a row written past Warden.
    __sealed_before__: ClassVar[tuple[tuple[str, ...], ...]] = ()
    seal: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)  # SQLite reads booleans as 0/1
    if isinstance(value, datetime):  # SQLite reads times back naive, PostgreSQL in its zone
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    return value


def fields_mark(model: type[Sealed]) -> str:
    """A short digest of the model's sealed field set; each seal starts with it and a dot, so
    start-up tells a row sealed with an older field set (an upgrade grew it) from a row
    written past Warden, by a prefix alone (`stale_tables`)."""
    return _mark(model, model.__sealed__)


def _mark(model: type[Sealed], fields: Sequence[str]) -> str:
    table = getattr(model, "__tablename__", model.__name__)
    return hashlib.sha256(json.dumps([table, list(fields)]).encode()).hexdigest()[:6]


def _mac(keys: ChainKeyring, model: type[Sealed], values: Sequence[Any]) -> str:
    text = json.dumps([_plain(v) for v in values], sort_keys=True, default=str)
    table = getattr(model, "__tablename__", model.__name__)
    return derived_mac(keys, f"row:{table}".encode(), text)


def seal_values(keys: ChainKeyring, model: type[Sealed], values: Sequence[Any]) -> str:
    """The seal of `values`, the row's `__sealed__` fields in that order: the field set's
    mark, a dot, and the keyed MAC (cut to fit the 64-character column: 228 bits)."""
    return f"{fields_mark(model)}.{_mac(keys, model, values)[:57]}"


def seal_of(keys: ChainKeyring, row: Sealed) -> str:
    return seal_values(keys, type(row), [getattr(row, f) for f in row.__sealed__])


def intact(
    keys: ChainKeyring, model: type[Sealed], values: Sequence[Any], seal: str | None
) -> bool:
    seal = seal or ""
    if "." not in seal:  # sealed before seals were marked: the whole MAC, no mark
        return hmac.compare_digest(seal, _mac(keys, model, values)) if seal else False
    return hmac.compare_digest(seal, seal_values(keys, model, values))


def intact_row(keys: ChainKeyring, row: Sealed) -> bool:
    return intact(keys, type(row), [getattr(row, f) for f in row.__sealed__], row.seal)


def sealed_earlier(keys: ChainKeyring, row: Sealed) -> bool:
    """Whether `row` matches its seal under a field set an earlier Warden sealed its table
    with (`__sealed_before__`): what an upgrade that grew the fields leaves, nobody's write."""
    model, seal = type(row), row.seal or ""
    for fields in model.__sealed_before__ if seal else ():
        mac = _mac(keys, model, [getattr(row, f, None) for f in fields])
        expected = f"{_mark(model, fields)}.{mac[:57]}" if "." in seal else mac
        if hmac.compare_digest(seal, expected):
            return True
    return False


def stale_tables(db: Session, models: Iterable[type[Sealed]]) -> list[str]:
    """The tables holding a row never sealed, or sealed with another field set than this
    Warden's (its mark differs): one query each, stopping at the first such row. A seal
    without a mark (made before seals were marked) is not told apart here: it is checked
    where the row is read, as a row written past Warden is."""
    found = []
    for model in models:
        seal = model.seal
        other = seal.contains(".") & ~seal.startswith(f"{fields_mark(model)}.")
        if db.scalar(select(seal.is_(None)).where(seal.is_(None) | other).limit(1)) is not None:
            found.append(getattr(model, "__tablename__", model.__name__))
    return found


def shown(row: Sealed) -> dict[str, Any]:
    """The sealed fields of `row` as stored, for an operator to look at before resealing."""
    return {f: _plain(getattr(row, f)) for f in row.__sealed__}


def digest_of(what: Any) -> str:
    """A short digest of what an operator was shown: resealing names it, so a row changed
    after they looked is not sealed with it."""
    text = json.dumps(what, sort_keys=True, default=str).encode()
    return hashlib.sha256(text).hexdigest()[:32]


def _refusal(model: type[Sealed], ident: Any) -> RowTampered:
    table = getattr(model, "__tablename__", model.__name__)
    return RowTampered(
        f"{table} {str(ident)[:64]!r} does not match its seal: it was written past Warden."
        " Nothing is decided on it until an operator checks it and runs `warden data seal`"
    )


def check_values(db: Session, model: type[Sealed], values: Sequence[Any], seal: str | None) -> None:
    """RowTampered unless `values` (the `__sealed__` fields, in order) match `seal`."""
    if not intact(keys_for(db.get_bind()), model, values, seal):
        raise _refusal(model, values[0] if values else "?")


R = TypeVar("R", bound=Sealed)


def check(db: Session, row: R) -> R:
    """`row`, once its seal checks out; RowTampered otherwise."""
    check_values(db, type(row), [getattr(row, f) for f in row.__sealed__], row.seal)
    return row


def update_sealed(
    db: Session, model: type[Sealed], where: Sequence[ColumnElement[bool]], values: dict[str, Any]
) -> bool:
    """UPDATE the one row `where` selects with `values`, its seal carried along (a bulk UPDATE
    skips the flush that seals): False when no row matched, or another writer changed it
    between. A row whose stored seal did not match keeps that seal, so it stays refused."""
    fields = model.__sealed__
    seal_column = model.seal
    columns = [getattr(model, f) for f in fields]
    found = db.execute(select(*columns, seal_column).where(*where)).first()
    if found is None:
        return False
    stored, seal = list(found[:-1]), found[-1]
    keys = keys_for(db.get_bind())
    new_seal = seal
    if intact(keys, model, stored, seal):
        after = dict(zip(fields, stored, strict=True)) | values
        new_seal = seal_values(keys, model, [after[f] for f in fields])
    unchanged = seal_column.is_(None) if seal is None else seal_column == seal
    result = db.execute(
        update(model).where(*where, unchanged).values(**values, seal=new_seal),
        execution_options={"synchronize_session": False},
    )
    return getattr(result, "rowcount", 0) == 1


def broken(db: Session, models: Iterable[type[Sealed]]) -> list[Sealed]:
    """Every row of `models` whose seal does not match (for `warden data seal`)."""
    keys = keys_for(db.get_bind())
    found: list[Sealed] = []
    for model in models:
        found += [r for r in db.scalars(select(model)) if not intact_row(keys, r)]
    return found


def remark(db: Session, models: Iterable[type[Sealed]]) -> int:
    """Give every row whose seal predates marks, and matches, a marked seal of the same fields
    (no new trust: the row is as it was sealed); how many. After it, start-up tells every row
    sealed with an older field set by its mark alone (`stale_tables`)."""
    keys = keys_for(db.get_bind())
    count = 0
    for model in models:
        unmarked = model.seal.is_not(None) & ~model.seal.contains(".")
        for row in db.scalars(select(model).where(unmarked)):
            if intact_row(keys, row):
                row.seal = seal_of(keys, row)
                count += 1
    return count


def _fill_defaults(row: Sealed) -> None:
    """Apply the Python-side column defaults of the sealed fields now (the flush would apply
    them after this hook), so the seal covers what is stored."""
    columns = inspect(type(row)).columns
    for field in row.__sealed__:
        default = columns[field].default if field in columns else None
        if getattr(row, field) is None and default is not None:
            value = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
            setattr(row, field, value)


def _stored(session: Session, row: Sealed) -> tuple[list[Any], str | None] | None:
    """The row's sealed fields and seal as stored now (read past the session's own state)."""
    model = type(row)
    columns = [getattr(model, f) for f in (*row.__sealed__, "seal")]
    key = inspect(row).identity
    if key is None:
        return None
    primary = inspect(model).primary_key
    where = [c == k for c, k in zip(primary, key, strict=True)]
    found = session.connection().execute(select(*columns).where(*where)).first()
    return None if found is None else (list(found[:-1]), found[-1])


@event.listens_for(Session, "before_flush")
def _seal_writes(session: Session, _context: Any, _instances: Any) -> None:
    keys: ChainKeyring | None = None
    for row in [*session.new, *session.dirty]:
        if not isinstance(row, Sealed) or not row.__sealed__:
            continue
        if row not in session.new:
            state = inspect(row)
            if not any(state.attrs[f].history.has_changes() for f in row.__sealed__):
                continue  # nothing sealed changed: the seal stays as it is
            stored = _stored(session, row)
            keys = keys or keys_for(session.get_bind())
            if stored is not None and not intact(keys, type(row), *stored):
                raise _refusal(type(row), stored[0][0] if stored[0] else "?")
        else:
            _fill_defaults(row)
        keys = keys or keys_for(session.get_bind())
        row.seal = seal_of(keys, row)
