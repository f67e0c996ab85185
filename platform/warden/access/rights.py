"""Who may do what in the access workflow; Casbin decides every right."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.catalog.view import DatasetView
from warden.core.platform import Platform
from warden.errors import Forbidden
from warden.identity.models import Tenant
from warden.identity.service import Caller
from warden.policy.authz import allowed
from warden.policy.engine import PolicySnapshot

ACCESS_OBJECT = "sys:access"
BREAK_GLASS_OBJECT = "sys:break_glass"


def require_person(caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("job tokens cannot request, review or change access")


def may_review(state: Platform, caller: Caller, dataset: str, owner: str) -> bool:
    """The dataset's owner, or whoever Casbin gives `review` on it (stewards, owners); only
    ever a person: service accounts and job tokens never review."""
    if caller.kind != "person":
        return False
    if caller.name == owner:
        return True
    snapshot = state.policy.ensure_fresh()
    return snapshot.can(caller.name, caller.tenant, dataset, "review", state.now())


@dataclass(frozen=True)
class Visibility:
    """What a caller may see: everything (sys:access read), or its own plus what it reviews."""

    see_all: bool
    reviewable: frozenset[str]  # dataset ids

    def visible_to(self, caller: Caller) -> str | None:
        return None if self.see_all else caller.principal_id


def visibility(db: Session, state: Platform, caller: Caller, tenant: Tenant) -> Visibility:
    snapshot = state.policy.ensure_fresh()
    now = state.now()
    owned_or_reviewed = frozenset(
        d.id
        for d in repo.tenant_datasets(db, tenant.id)
        if caller.kind == "person"
        and (
            d.owner_id == caller.principal_id
            or snapshot.can(caller.name, caller.tenant, d.name, "review", now)
        )
    )
    return Visibility(allowed(state, caller, ACCESS_OBJECT, "read"), owned_or_reviewed)


def reviewers_of(db: Session, state: Platform, tenant: Tenant, view: DatasetView) -> list[str]:
    """Every person in the tenant who may review requests on the dataset."""
    return people_who(
        db,
        state,
        tenant,
        lambda snapshot, name, now: (
            name == view.owner or snapshot.can(name, tenant.name, view.name, "review", now)
        ),
    )


def people_who(
    db: Session,
    state: Platform,
    tenant: Tenant,
    may: Callable[[PolicySnapshot, str, datetime], bool],
) -> list[str]:
    """The names of the tenant's people for whom `may(snapshot, name, now)` holds."""
    snapshot = state.policy.ensure_fresh()
    now = state.now()
    return [
        p.name
        for p in repo.tenant_principals(db, tenant.id)
        if p.kind == "person" and may(snapshot, p.name, now)
    ]
