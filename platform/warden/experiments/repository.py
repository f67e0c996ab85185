"""Queries on experiments and serving defaults, each held to the log: an experiment's state
is the one its last stop, decision or rollback left it in, and a tenant's serving default
the row its last promotion or rollback set (identity/revocations.py), so a row deleted,
reordered or written back to its earlier self in SQL is refused (RowTampered, 503)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.db.sealed import RowTampered, check, digest_of
from warden.experiments.models import Experiment, ServingDefault
from warden.identity.revocations import revocations_for


def _held(db: Session, row: Experiment) -> Experiment:
    state, results = "", ""
    for second_look in (False, True):
        if second_look:  # a stop or decision committed between the row's read and the log's
            db.refresh(row)
        check(db, row)
        logged = revocations_for(db).refresh(db).experiments.get(row.id)
        if logged is None or logged[1] == held_by(row):
            return row
        state, results = logged[1]
    raise RowTampered(
        f"experiment {row.name!r} is {row.state} in the database, but the audit log says"
        f" {state}{'' if results == held_by(row)[1] else ', with other results'}:"
        " it was written past Warden"
    )


def held_by(row: Experiment) -> tuple[str, str]:
    """What the log holds an experiment to: its state and a digest of its results."""
    return row.state, digest_of(row.results or {})


def by_name(db: Session, tenant: str, name: str, *, lock: bool = False) -> Experiment | None:
    query = select(Experiment).where(Experiment.tenant == tenant, Experiment.name == name)
    if lock:
        query = query.with_for_update()
    row = db.scalars(query).first()
    return None if row is None else _held(db, row)


def running(db: Session, tenant: str) -> list[Experiment]:
    query = select(Experiment).where(Experiment.tenant == tenant, Experiment.state == "running")
    return [_held(db, row) for row in db.scalars(query.order_by(Experiment.created_at))]


def current_default(db: Session, tenant_id: str) -> ServingDefault | None:
    query = (
        select(ServingDefault)
        .where(ServingDefault.tenant_id == tenant_id)
        .order_by(ServingDefault.created_at.desc(), ServingDefault.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    for _ in range(2):  # twice: a promotion committed between the row's read and the log's
        row = db.scalars(query).first()
        logged = revocations_for(db).refresh(db).defaults.get(tenant_id)
        if logged is None or (row is not None and row.id == logged[1]):
            return None if row is None else check(db, row)
    raise RowTampered(
        "the serving default is not the one the audit log says was set last: a"
        " serving_default row was deleted, reordered or written past Warden"
    )
