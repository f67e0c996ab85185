"""Every query of the workspace domain."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from warden.catalog.models import DatasetVersion
from warden.db.sealed import RowTampered, check
from warden.identity.revocations import revocations_for
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
    """Ids of the tenant's live sandboxes that mount `folder`. A sandbox's `status` is not
    sealed (it moves as it runs): one the log saw launched with `folder` and never end holds
    it too, and a row that says otherwise (ended, gone, moved) was written past Warden: 503."""
    rows = db.execute(
        select(Sandbox.id, Sandbox.mounts).where(
            Sandbox.tenant == tenant, Sandbox.status.in_(LIVE_STATUSES)
        )
    )
    live = [sid for sid, mounts in rows if any(m.get("source") == folder for m in mounts or [])]
    over = revocations_for(db).refresh(db)
    unsaid = sorted(s for s, held in over.mounting.items() if folder in held and s not in live)
    if unsaid:
        raise RowTampered(
            f"sandbox {', '.join(unsaid)} mounts this workspace and never ended in the audit"
            " log, but its row says it is not running: it was written past Warden. Nothing is"
            " replaced or deleted until an operator checks it (`warden audit verify`)"
        )
    return live


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
