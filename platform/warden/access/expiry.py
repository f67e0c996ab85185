"""Expiry, applied lazily at the start of every access call and by the optional tidy-up;
and pruning the stored rules of ended grants. Correctness never waits for either: an
expired grant's rules stop allowing at their expiry, checked on every decision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access.events import SYSTEM, SYSTEM_ACTOR, notify_resolved, record
from warden.access.models import AccessGrant, AccessRequest, Subject
from warden.access.present import aware
from warden.audit.service import AuditRecord, append
from warden.catalog.service import load_view
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.identity.models import Tenant
from warden.policy import store
from warden.policy.engine import format_now

PRUNE_BATCH = 500


@dataclass
class Tidied:
    requests_expired: int = 0
    grants_expired: int = 0
    rules_pruned: int = 0

    @property
    def policy_changed(self) -> bool:
        return self.rules_pruned > 0


def expire_due(db: Session, state: Platform) -> Tidied:
    """Mark requests pending too long, and grants past their expiry, as expired (each once,
    whoever gets there first). Correctness never waits for this: expired rules never allow."""
    now = state.now()
    done = Tidied()
    for request_id in repo.due_requests(db, now):
        if not repo.move_request(db, request_id, "pending", "expired", now):
            continue
        tenant, req = _reloaded(db, AccessRequest, request_id)
        reason = f"pending for longer than {state.settings.access_pending_ttl_hours:g}h"
        record(db, state, SYSTEM_ACTOR, tenant, req, "expired", "pending", "expired", reason=reason)
        view = load_view(db, state.settings.datasets_dir, tenant.name, req.dataset)
        notify_resolved(db, state, tenant, view, req)
        done.requests_expired += 1
    for grant_id in repo.due_grants(db, now):
        if not repo.move_grant(db, grant_id, "active", "expired", now):
            continue
        tenant, grant = _reloaded(db, AccessGrant, grant_id)
        reason = f"expired at {format_now(aware(grant.expires_at))}"
        record(
            db, state, SYSTEM_ACTOR, tenant, grant, "expired", "active", "expired", reason=reason
        )
        done.grants_expired += 1
    return done


def _reloaded(db: Session, model: type[Subject], subject_id: str) -> tuple[Tenant, Subject]:
    """A row just moved by an UPDATE (which left the session's copy stale), with its tenant."""
    row = db.get(model, subject_id)
    assert row is not None
    db.refresh(row)
    tenant = db.get(Tenant, row.tenant_id)
    assert tenant is not None
    return tenant, row


def prune_rules(db: Session, state: Platform) -> int:
    """Drop the stored rules of grants that ended (they no longer allow anything, but every
    snapshot would still carry them); one audit event per tenant and batch."""
    grants = repo.grants_with_stale_rules(db, PRUNE_BATCH)
    by_tenant: dict[str, list[str]] = {}
    removed = 0
    version: int | None = None
    for grant in grants:
        change = store.remove_grant(db, grant.id)
        removed += change.count
        version = change.version
        grant.rules_present = False
        by_tenant.setdefault(grant.tenant_id, []).append(grant.id)
    for tenant_id, ids in by_tenant.items():
        tenant = db.get(Tenant, tenant_id)
        append(
            db,
            AuditRecord(
                action="access.grants.pruned",
                decision="allow",
                actor=SYSTEM,
                actor_kind=SYSTEM,
                tenant=tenant.name if tenant else None,
                grant_ids=ids,
                policy_version=version,
                reason="rules of ended grants removed by the tidy-up",
            ),
        )
    return removed


def tidy(state: Platform, *, prune: bool = True) -> Tidied:
    """Expire what is due and drop ended grants' rules, in a transaction of its own; reloads
    the policy when rules went."""
    with unit_of_work(state.sessions) as db:
        done = expire_due(db, state)
        if prune:
            done.rules_pruned = prune_rules(db, state)
    if done.policy_changed:
        state.policy.ensure_fresh()
    return done


def expire_due_now(state: Platform) -> Tidied:
    """The lazy part of expiry, run at the start of every access call in its own transaction
    (so a refusal that follows does not roll it back). Two cheap queries when nothing is due."""
    with unit_of_work(state.sessions) as db:
        return expire_due(db, state)
