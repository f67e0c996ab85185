"""Queries on the model registry."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent
from warden.identity.models import Tenant
from warden.registry.models import Model


def by_name(db: Session, tenant: str, name: str, version: int | None) -> Model | None:
    """The named model (its newest version unless `version`)."""
    query = select(Model).where(Model.tenant == tenant, Model.name == name)
    if version is not None:
        query = query.where(Model.version == version)
    return db.scalars(query.order_by(Model.version.desc()).limit(1)).first()


def newest_version(db: Session, tenant_id: str, name: str) -> int:
    """The newest version, read under a lock on the tenant's row so that two registrations in
    one tenant take turns: a row lock on PostgreSQL (whose next statement then sees the other's
    committed row), SQLite's write lock (taken by this write before the read)."""
    db.execute(update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name))
    query = select(func.max(Model.version)).where(Model.tenant_id == tenant_id, Model.name == name)
    return int(db.scalar(query) or 0)


def models(db: Session, tenant: str, name: str | None, limit: int) -> list[Model]:
    query = select(Model).where(Model.tenant == tenant)
    if name:
        query = query.where(Model.name == name)
    return list(db.scalars(query.order_by(Model.created_at.desc()).limit(limit)))


def reads_by(db: Session, actor: str) -> list[AuditEvent]:
    """The audited reads of one actor (a job's sandbox), oldest first: its lineage."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.actor == actor, AuditEvent.action == "dataset.read")
        .order_by(AuditEvent.seq)
    )
    return list(db.scalars(query))
