"""The audit events of a walk's batch, each as read, or as `Unreadable` where a field is stored
in no form its column type reads (SQLite stores any text: a time that is not a time). The
walk reports those as a finding; raising instead would stop a checkpoint, and `verify`, from
saying anything (audit/verify.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent


@dataclass(frozen=True)
class Unreadable:
    seq: int
    id: str | None
    hash: str | None


def readable(db: Session, query: Select[Any]) -> list[Any]:
    """The rows of `query` (a select of whole audit events), read one by one when the batch
    cannot be read at once."""
    try:
        return list(db.execute(query).mappings().all())
    except (ValueError, TypeError):
        pass
    table = AuditEvent.__table__
    found: list[Any] = []
    plain = query.with_only_columns(table.c.seq, table.c.id, table.c.hash)
    for seq, event_id, hashed in db.execute(plain).all():
        try:
            found.append(db.execute(select(table).where(table.c.seq == seq)).mappings().one())
        except (ValueError, TypeError):
            found.append(Unreadable(seq, event_id, hashed))
    return found
