"""Queries on experiments and serving defaults."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.db.sealed import check
from warden.experiments.models import Experiment, ServingDefault


def by_name(db: Session, tenant: str, name: str, *, lock: bool = False) -> Experiment | None:
    query = select(Experiment).where(Experiment.tenant == tenant, Experiment.name == name)
    if lock:
        query = query.with_for_update()
    row = db.scalars(query).first()
    return None if row is None else check(db, row)


def running(db: Session, tenant: str) -> list[Experiment]:
    query = select(Experiment).where(Experiment.tenant == tenant, Experiment.state == "running")
    return [check(db, row) for row in db.scalars(query.order_by(Experiment.created_at))]


def current_default(db: Session, tenant_id: str) -> ServingDefault | None:
    query = (
        select(ServingDefault)
        .where(ServingDefault.tenant_id == tenant_id)
        .order_by(ServingDefault.created_at.desc(), ServingDefault.id.desc())
        .limit(1)
    )
    row = db.scalars(query).first()
    return None if row is None else check(db, row)
