"""Queries on sandbox rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from warden.db.queries import where_given
from warden.sandbox.models import LIVE_STATUSES, Sandbox


def tenant_sandboxes(
    db: Session, tenant: str, launcher: str | None, status: str | None, limit: int
) -> list[Sandbox]:
    """Newest first; `launcher` None lists everyone's."""
    query = where_given(
        select(Sandbox).where(Sandbox.tenant == tenant),
        (Sandbox.launcher, launcher),
        (Sandbox.status, status or None),
    )
    return list(db.scalars(query.order_by(Sandbox.created_at.desc()).limit(limit)))


def live_rows(db: Session, instance: str) -> list[Sandbox]:
    """Sandboxes of this installation that have not ended, as the database sees them."""
    query = select(Sandbox).where(Sandbox.instance == instance, Sandbox.status.in_(LIVE_STATUSES))
    return list(db.scalars(query))


def heartbeat(db: Session, sandbox_ids: Sequence[str], owner: str, now: datetime) -> None:
    """Only rows this owner still holds: another process may have reaped one meanwhile."""
    db.execute(
        update(Sandbox)
        .where(Sandbox.id.in_(list(sandbox_ids)), Sandbox.owner == owner)
        .values(heartbeat_at=now)
    )
