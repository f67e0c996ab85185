"""Every query of the workspace domain."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from warden.catalog.models import DatasetVersion
from warden.db.sealed import check
from warden.sandbox.models import LIVE_STATUSES, Sandbox
from warden.workspace.models import Workspace


def find(db: Session, tenant: str, owner: str, name: str) -> Workspace | None:
    row = db.scalars(
        select(Workspace).where(
            Workspace.tenant == tenant, Workspace.owner == owner, Workspace.name == name
        )
    ).first()
    return None if row is None else check(db, row)  # whose it is, as Warden wrote it


def visible(db: Session, tenant: str, person: str, everyone: bool) -> list[Workspace]:
    """A person's own workspaces and those shared in the tenant (everyone's for `everyone`)."""
    query = select(Workspace).where(Workspace.tenant == tenant)
    if not everyone:
        query = query.where(or_(Workspace.owner == person, Workspace.shared.is_(True)))
    return [check(db, row) for row in db.scalars(query.order_by(Workspace.owner, Workspace.name))]


def mounted_in(db: Session, tenant: str, folder: str) -> list[str]:
    """Ids of the tenant's live sandboxes that mount `folder`."""
    rows = db.execute(
        select(Sandbox.id, Sandbox.mounts).where(
            Sandbox.tenant == tenant, Sandbox.status.in_(LIVE_STATUSES)
        )
    )
    return [sid for sid, mounts in rows if any(m.get("source") == folder for m in mounts or [])]


def governed_digests(db: Session, digests: Iterable[str]) -> set[str]:
    """Which of these file digests (sha256:<hex>) are a catalog dataset version's file, in any
    tenant: governed data never enters a workspace."""
    wanted = list(digests)
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        batch = wanted[start : start + 500]
        found.update(
            db.scalars(
                select(DatasetVersion.digest).where(DatasetVersion.digest.in_(batch)).distinct()
            )
        )
    return found
