"""The access workflow: requests → reviews → grants, break-glass, revocation and expiry.

Rules this module enforces, with no bypass for anyone:
- a requester never reviews (or signs off) their own request, whatever their roles;
- a reviewer holds Casbin's `review` right on the dataset, or owns it;
- quorum by classification (pii 2 distinct approvers, internal 1, public at once), and a
  maximum duration, each overridable per dataset; one deny rejects;
- a grant's duration starts at approval; its rules carry its id and expiry, so expiry and
  revocation hold on the very next decision with no background job.

Services never commit; each state change writes its transition row, its audit event (same
transaction) and its OpenTelemetry span. Callers commit, then reload the policy when
`Outcome.policy_changed` says the rules moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access.events import (
    SYSTEM_ACTOR,
    Actor,
    actor_of,
    notify,
    record,
    resolved_recipients,
)
from warden.access.ids import BREAK_GLASS_PREFIX, GRANT_PREFIX, REQUEST_PREFIX, new_id
from warden.access.models import AccessGrant, AccessRequest, AccessReview, AccessTransition
from warden.access.present import aware
from warden.access.rights import (
    ACCESS_OBJECT,
    BREAK_GLASS_OBJECT,
    can,
    may_review,
    require_person,
    reviewers_of,
    visibility,
)
from warden.access.schemas import BreakGlassCreate, RequestCreate, format_duration
from warden.access.terms import check_columns, terms_of
from warden.api.state import AppState
from warden.catalog.service import DatasetView, load_view
from warden.errors import Conflict, Forbidden, NotFound, Unprocessable
from warden.identity.models import Tenant
from warden.identity.service import Caller, get_tenant
from warden.policy import store
from warden.policy.engine import format_now
from warden.policy.rules import Rule


@dataclass
class Outcome:
    """What a service call changed; the route commits, then reloads policy if asked."""

    request: AccessRequest | None = None
    grant: AccessGrant | None = None
    policy_changed: bool = False


def create_request(db: Session, state: AppState, caller: Caller, body: RequestCreate) -> Outcome:
    """Ask for access. Public data (quorum 0) is granted at once, and audited as such."""
    require_person(caller)
    tenant = get_tenant(db, caller.tenant)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, body.dataset)
    columns = check_columns(view, body.columns, body.purpose)
    terms = terms_of(db, view)
    if body.duration > terms.max_duration_s:
        raise Unprocessable(
            f"duration {format_duration(body.duration)} is over the maximum of"
            f" {format_duration(terms.max_duration_s)} for {view.name!r} ({view.classification})"
        )
    now = state.now()
    req = AccessRequest(
        id=new_id(REQUEST_PREFIX),
        tenant_id=tenant.id,
        dataset_id=view.id,
        dataset=view.name,
        requester_id=caller.principal_id,
        requester=caller.name,
        kind="request",
        columns=columns,
        purpose=body.purpose,
        duration_s=body.duration,
        justification=body.justification,
        classification=view.classification,
        quorum=terms.quorum,
        state="pending",
        created_at=now,
        pending_until=now + timedelta(hours=state.settings.access_pending_ttl_hours),
    )
    db.add(req)
    db.flush()
    record(
        db,
        state,
        actor_of(caller),
        tenant=tenant.name,
        subject="request",
        subject_id=req.id,
        event="created",
        from_state=None,
        to_state="pending",
        action="access.request.created",
        reason=body.justification,
        dataset=view.name,
        purpose=body.purpose,
        columns=columns,
        details={"duration_s": body.duration, "quorum": terms.quorum},
    )
    if terms.quorum == 0:
        grant = _approve(
            db,
            state,
            tenant,
            req,
            view,
            SYSTEM_ACTOR,
            f"{view.classification} data: granted at once",
        )
        recipients = resolved_recipients(db, state, tenant, view, req.requester)
        notify(
            db,
            state,
            tenant,
            "access.request.resolved",
            req.id,
            recipients,
            request=req,
            grant=grant,
        )
        return Outcome(req, grant, policy_changed=True)
    reviewers = [r for r in reviewers_of(db, state, tenant, view) if r != caller.name]
    notify(db, state, tenant, "access.request.created", req.id, reviewers, request=req)
    return Outcome(req)


def _approve(
    db: Session,
    state: AppState,
    tenant: Tenant,
    req: AccessRequest,
    view: DatasetView,
    actor: Actor,
    reason: str,
) -> AccessGrant:
    """Close a pending request as approved and create its grant (duration starts now)."""
    now = state.now()
    req.state = "approved"
    req.resolved_at = now
    record(
        db,
        state,
        actor,
        tenant=tenant.name,
        subject="request",
        subject_id=req.id,
        event="approved",
        from_state="pending",
        to_state="approved",
        action="access.request.approved",
        reason=reason,
        dataset=req.dataset,
        purpose=req.purpose,
        columns=req.columns,
    )
    return _grant(db, state, tenant, req, view, actor, reason, break_glass=False)


def _grant(
    db: Session,
    state: AppState,
    tenant: Tenant,
    req: AccessRequest,
    view: DatasetView,
    actor: Actor,
    reason: str,
    *,
    break_glass: bool,
) -> AccessGrant:
    now = state.now()
    # Whole seconds: the rule's expiry has second precision, and both must say the same.
    expires = (now + timedelta(seconds=req.duration_s)).replace(microsecond=0)
    masked = [c for c in req.columns if c in set(view.identifier_columns)]
    grant = AccessGrant(
        id=new_id(BREAK_GLASS_PREFIX if break_glass else GRANT_PREFIX),
        tenant_id=tenant.id,
        request_id=req.id,
        dataset_id=view.id,
        dataset=view.name,
        principal_id=req.requester_id,
        principal=req.requester,
        columns=list(req.columns),
        masked_columns=masked,
        purpose=req.purpose,
        state="active",
        starts_at=now,
        expires_at=expires,
        rules_present=True,
        break_glass=break_glass,
        needs_review=break_glass,
    )
    db.add(grant)
    req.grant_id = grant.id
    rules = grant_rules(grant, tenant.name)
    change = store.add_rules(db, rules)
    db.flush()
    record(
        db,
        state,
        actor,
        tenant=tenant.name,
        subject="grant",
        subject_id=grant.id,
        event="created",
        from_state=None,
        to_state="active",
        action="access.grant.created",
        reason=reason,
        dataset=view.name,
        purpose=req.purpose,
        columns=grant.columns,
        masked=masked,
        grant_ids=[grant.id],
        policy_version=change.version,
        details={
            "principal": grant.principal,
            "request_id": req.id,
            "expires_at": format_now(aware(expires)),
            "rules": len(rules),
            "break_glass": break_glass,
        },
    )
    return grant


def grant_rules(grant: AccessGrant, tenant: str) -> list[Rule]:
    """One rule per column: identifiers masked, the rest readable, each carrying the grant id
    and expiry (listed column by column: a "*" column would unmask identifiers)."""
    expires = format_now(aware(grant.expires_at))
    masked = set(grant.masked_columns)
    return [
        (
            "p",
            (
                grant.principal,
                tenant,
                grant.dataset,
                column,
                grant.purpose,
                "mask" if column in masked else "read",
                "allow",
                grant.id,
                expires,
            ),
        )
        for column in grant.columns
    ]


def _locked_request(db: Session, caller: Caller, request_id: str) -> tuple[Tenant, AccessRequest]:
    tenant = get_tenant(db, caller.tenant)
    req = repo.lock_request(db, request_id[:32], tenant.id)
    if req is None:
        raise NotFound(f"no access request {request_id[:40]!r}")
    return tenant, req


def _check_pending(state: AppState, req: AccessRequest, verb: str) -> None:
    if req.state == "pending" and state.now() >= aware(req.pending_until):
        raise Conflict(f"request {req.id} expired while pending; it can no longer be {verb}")
    if req.state != "pending":
        raise Conflict(f"request {req.id} is {req.state}; only a pending request can be {verb}")


def review(
    db: Session, state: AppState, caller: Caller, request_id: str, decision: str, comment: str
) -> Outcome:
    """Approve or deny. The request row is locked first, so concurrent reviews run one after
    another: quorum is counted once, and a reviewer counts once (unique per request)."""
    require_person(caller)
    tenant, req = _locked_request(db, caller, request_id)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, req.dataset)
    if req.requester_id == caller.principal_id:
        raise Forbidden("a requester never reviews their own request, whatever their roles")
    if not may_review(state, caller, view.name, view.owner):
        raise Forbidden(f"{caller.name} may not review access requests for {view.name!r}")
    _check_pending(state, req, "reviewed")
    reviews = repo.reviews_of(db, [req.id])[req.id]
    if any(r.reviewer_id == caller.principal_id for r in reviews):
        raise Conflict(f"{caller.name} already reviewed request {req.id}; a reviewer counts once")
    db.add(
        AccessReview(
            request_id=req.id,
            reviewer_id=caller.principal_id,
            reviewer=caller.name,
            decision=decision,
            comment=comment,
            created_at=state.now(),
        )
    )
    try:
        db.flush()
    except IntegrityError:
        raise Conflict(f"{caller.name} already reviewed request {req.id}") from None
    approvals = {r.reviewer_id for r in reviews if r.decision == "approve"}
    if decision == "approve":
        approvals.add(caller.principal_id)
    actor = actor_of(caller)
    record(
        db,
        state,
        actor,
        tenant=tenant.name,
        subject="request",
        subject_id=req.id,
        event=decision,
        from_state="pending",
        to_state="pending",
        action="access.request.reviewed",
        reason=comment,
        dataset=req.dataset,
        purpose=req.purpose,
        details={"decision": decision, "approvals": len(approvals), "quorum": req.quorum},
    )
    if decision == "deny":
        req.state = "denied"
        req.resolved_at = state.now()
        record(
            db,
            state,
            actor,
            tenant=tenant.name,
            subject="request",
            subject_id=req.id,
            event="denied",
            from_state="pending",
            to_state="denied",
            action="access.request.denied",
            reason=comment or "denied",
            dataset=req.dataset,
            purpose=req.purpose,
        )
        recipients = resolved_recipients(db, state, tenant, view, req.requester)
        notify(db, state, tenant, "access.request.resolved", req.id, recipients, request=req)
        return Outcome(req)
    if len(approvals) < req.quorum:
        return Outcome(req)
    reason = f"{len(approvals)} of {req.quorum} approvals"
    grant = _approve(db, state, tenant, req, view, actor, reason)
    recipients = resolved_recipients(db, state, tenant, view, req.requester)
    notify(
        db, state, tenant, "access.request.resolved", req.id, recipients, request=req, grant=grant
    )
    return Outcome(req, grant, policy_changed=True)


def cancel(db: Session, state: AppState, caller: Caller, request_id: str, reason: str) -> Outcome:
    """The requester withdraws a pending request."""
    require_person(caller)
    tenant, req = _locked_request(db, caller, request_id)
    if req.requester_id != caller.principal_id:
        vis = visibility(db, state, caller, tenant)
        if not vis.see_all and req.dataset_id not in vis.reviewable:
            raise NotFound(f"no access request {request_id[:40]!r}")
        raise Forbidden("only the requester may cancel a request")
    _check_pending(state, req, "cancelled")
    req.state = "cancelled"
    req.resolved_at = state.now()
    record(
        db,
        state,
        actor_of(caller),
        tenant=tenant.name,
        subject="request",
        subject_id=req.id,
        event="cancelled",
        from_state="pending",
        to_state="cancelled",
        action="access.request.cancelled",
        reason=reason or "cancelled by the requester",
        dataset=req.dataset,
        purpose=req.purpose,
    )
    view = load_view(db, state.settings.datasets_dir, caller.tenant, req.dataset)
    recipients = resolved_recipients(db, state, tenant, view, req.requester)
    notify(db, state, tenant, "access.request.resolved", req.id, recipients, request=req)
    return Outcome(req)


def show_request(
    db: Session, state: AppState, caller: Caller, request_id: str
) -> tuple[AccessRequest, list[AccessReview], list[AccessTransition]]:
    """One request with its reviews and full history (its grant's too); 404 unless visible."""
    require_person(caller)
    tenant = get_tenant(db, caller.tenant)
    req = repo.get_request(db, request_id[:32], tenant.id)
    if req is None:
        raise NotFound(f"no access request {request_id[:40]!r}")
    if req.requester_id != caller.principal_id:
        vis = visibility(db, state, caller, tenant)
        if not vis.see_all and req.dataset_id not in vis.reviewable:
            raise NotFound(f"no access request {request_id[:40]!r}")
    reviews = repo.reviews_of(db, [req.id])[req.id]
    subjects = [req.id, *([req.grant_id] if req.grant_id else [])]
    return req, reviews, repo.transitions_of(db, subjects)


def list_requests(
    db: Session,
    state: AppState,
    caller: Caller,
    *,
    states: Sequence[str],
    mine: bool,
    reviewable: bool,
    dataset: str | None,
    limit: int,
) -> tuple[list[AccessRequest], dict[str, list[AccessReview]]]:
    require_person(caller)
    tenant = get_tenant(db, caller.tenant)
    vis = visibility(db, state, caller, tenant)
    rows = repo.list_requests(
        db,
        tenant.id,
        visible_to=vis.visible_to(caller),
        reviewable_datasets=vis.reviewable,
        states=states,
        requester_id=caller.principal_id if mine else None,
        reviewable_by=caller.principal_id if reviewable else None,
        dataset=dataset,
        limit=limit,
    )
    return rows, repo.reviews_of(db, [r.id for r in rows])


# ---------------------------------------------------------------------------------------------
# Grants


def _locked_grant(db: Session, caller: Caller, grant_id: str) -> tuple[Tenant, AccessGrant]:
    tenant = get_tenant(db, caller.tenant)
    grant = repo.lock_grant(db, grant_id[:32], tenant.id)
    if grant is None:
        raise NotFound(f"no grant {grant_id[:40]!r}")
    return tenant, grant


def list_grants(
    db: Session,
    state: AppState,
    caller: Caller,
    *,
    states: Sequence[str],
    mine: bool,
    dataset: str | None,
    needs_review: bool | None,
    limit: int,
) -> list[AccessGrant]:
    require_person(caller)
    tenant = get_tenant(db, caller.tenant)
    vis = visibility(db, state, caller, tenant)
    return repo.list_grants(
        db,
        tenant.id,
        visible_to=vis.visible_to(caller),
        reviewable_datasets=vis.reviewable,
        states=states,
        principal_id=caller.principal_id if mine else None,
        dataset=dataset,
        needs_review=needs_review,
        limit=limit,
    )


def show_grant(
    db: Session, state: AppState, caller: Caller, grant_id: str
) -> tuple[AccessGrant, list[AccessTransition]]:
    require_person(caller)
    tenant = get_tenant(db, caller.tenant)
    grant = repo.get_grant(db, grant_id[:32], tenant.id)
    if grant is None:
        raise NotFound(f"no grant {grant_id[:40]!r}")
    if grant.principal_id != caller.principal_id:
        vis = visibility(db, state, caller, tenant)
        if not vis.see_all and grant.dataset_id not in vis.reviewable:
            raise NotFound(f"no grant {grant_id[:40]!r}")
    return grant, repo.transitions_of(db, [grant.request_id, grant.id])


def revoke(db: Session, state: AppState, caller: Caller, grant_id: str, reason: str) -> Outcome:
    """End a grant now: its rules go in this transaction, so the next read is denied.
    The holder, the dataset's reviewers and access admins may revoke."""
    require_person(caller)
    tenant, grant = _locked_grant(db, caller, grant_id)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, grant.dataset)
    allowed = (
        grant.principal_id == caller.principal_id
        or may_review(state, caller, view.name, view.owner)
        or can(state, caller, ACCESS_OBJECT, "manage")
    )
    if not allowed:
        if can(state, caller, ACCESS_OBJECT, "read"):
            raise Forbidden(f"{caller.name} may not revoke grants on {view.name!r}")
        raise NotFound(f"no grant {grant_id[:40]!r}")
    now = state.now()
    if grant.state == "active" and now >= aware(grant.expires_at):
        raise Conflict(f"grant {grant.id} has already expired")
    if grant.state != "active":
        raise Conflict(f"grant {grant.id} is {grant.state}; only an active grant can be revoked")
    change = store.remove_grant(db, grant.id)
    grant.state = "revoked"
    grant.ended_at = now
    grant.revoked_by = caller.name
    grant.revoke_reason = reason
    grant.rules_present = False
    record(
        db,
        state,
        actor_of(caller),
        tenant=tenant.name,
        subject="grant",
        subject_id=grant.id,
        event="revoked",
        from_state="active",
        to_state="revoked",
        action="access.grant.revoked",
        reason=reason,
        dataset=grant.dataset,
        purpose=grant.purpose,
        grant_ids=[grant.id],
        policy_version=change.version,
        details={"principal": grant.principal, "rules_removed": change.count},
    )
    recipients = [grant.principal, *reviewers_of(db, state, tenant, view)]
    notify(db, state, tenant, "access.grant.revoked", grant.id, recipients, grant=grant)
    return Outcome(grant=grant, policy_changed=True)


def break_glass(db: Session, state: AppState, caller: Caller, body: BreakGlassCreate) -> Outcome:
    """Immediate, short access in an emergency: needs the `sys:break_glass` right, is flagged
    in every read it allows, and stays "needs review" until a reviewer signs it off."""
    require_person(caller)
    if not can(state, caller, BREAK_GLASS_OBJECT, "manage"):
        raise Forbidden(f"{caller.name} may not break glass")
    tenant = get_tenant(db, caller.tenant)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, body.dataset)
    columns = check_columns(view, body.columns, body.purpose)
    terms = terms_of(db, view)
    duration = min(state.settings.access_break_glass_minutes * 60, terms.max_duration_s)
    now = state.now()
    req = AccessRequest(
        id=new_id(REQUEST_PREFIX),
        tenant_id=tenant.id,
        dataset_id=view.id,
        dataset=view.name,
        requester_id=caller.principal_id,
        requester=caller.name,
        kind="break_glass",
        columns=columns,
        purpose=body.purpose,
        duration_s=duration,
        justification=body.reason,
        classification=view.classification,
        quorum=0,
        state="approved",
        created_at=now,
        pending_until=now,
        resolved_at=now,
    )
    db.add(req)
    db.flush()
    record(
        db,
        state,
        actor_of(caller),
        tenant=tenant.name,
        subject="request",
        subject_id=req.id,
        event="break_glass",
        from_state=None,
        to_state="approved",
        action="access.break_glass",
        reason=body.reason,
        dataset=view.name,
        purpose=body.purpose,
        columns=columns,
        details={"duration_s": duration, "break_glass": True},
    )
    grant = _grant(db, state, tenant, req, view, actor_of(caller), body.reason, break_glass=True)
    reviewers = [r for r in reviewers_of(db, state, tenant, view) if r != caller.name]
    notify(
        db,
        state,
        tenant,
        "access.break_glass.created",
        grant.id,
        reviewers,
        request=req,
        grant=grant,
    )
    return Outcome(req, grant, policy_changed=True)


def sign_off(db: Session, state: AppState, caller: Caller, grant_id: str, comment: str) -> Outcome:
    """A reviewer (never the holder) signs off a break-glass grant, during or after it."""
    require_person(caller)
    tenant, grant = _locked_grant(db, caller, grant_id)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, grant.dataset)
    if grant.principal_id == caller.principal_id:
        raise Forbidden("the holder of a break-glass grant never signs it off")
    if not may_review(state, caller, view.name, view.owner):
        raise Forbidden(f"{caller.name} may not review access to {view.name!r}")
    if not grant.break_glass:
        raise Conflict(f"grant {grant.id} is not a break-glass grant")
    if not grant.needs_review:
        raise Conflict(f"grant {grant.id} was already signed off by {grant.signed_off_by}")
    grant.needs_review = False
    grant.signed_off_by = caller.name
    grant.signed_off_at = state.now()
    record(
        db,
        state,
        actor_of(caller),
        tenant=tenant.name,
        subject="grant",
        subject_id=grant.id,
        event="signed_off",
        from_state=grant.state,
        to_state=grant.state,
        action="access.grant.signed_off",
        reason=comment or "signed off",
        dataset=grant.dataset,
        purpose=grant.purpose,
        grant_ids=[grant.id],
        details={"principal": grant.principal, "break_glass": True},
    )
    recipients = [grant.principal, *reviewers_of(db, state, tenant, view)]
    notify(db, state, tenant, "access.break_glass.signed_off", grant.id, recipients, grant=grant)
    return Outcome(grant=grant)
