"""The access workflow: requests → reviews → grants, break-glass, revocation and expiry.
(Kept over 500 lines: requests, reviews and grants share one lifecycle and its rules.)

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
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access.duties import (
    add_review,
    check_awaiting_sign_off,
    check_pending,
    refuse_conflict,
    require_human,
    widen_to_keepers,
)
from warden.access.events import (
    SYSTEM_ACTOR,
    Actor,
    actor_of,
    notify,
    notify_grant,
    notify_resolved,
    record,
)
from warden.access.ids import BREAK_GLASS_PREFIX, GRANT_PREFIX, REQUEST_PREFIX, new_id
from warden.access.models import (
    AccessGrant,
    AccessRequest,
    AccessReview,
    AccessTransition,
    Subject,
)
from warden.access.present import aware
from warden.access.rights import (
    ACCESS_OBJECT,
    BREAK_GLASS_OBJECT,
    may_review,
    require_person,
    reviewers_of,
    visibility,
)
from warden.access.schemas import BreakGlassCreate, RequestCreate, format_duration
from warden.access.terms import Terms, check_columns, terms_of
from warden.audit.keys import keys_for
from warden.catalog.service import load_view
from warden.catalog.view import DatasetView
from warden.core.platform import Platform
from warden.db.sealed import check, intact_row
from warden.errors import Conflict, Forbidden, NotFound, Unprocessable, WardenError
from warden.identity.models import Principal, Tenant
from warden.identity.service import Caller, get_tenant, lock_principal
from warden.policy import exposure, store
from warden.policy.authz import allowed
from warden.policy.engine import format_now
from warden.policy.reads import covers_sources, require_visible
from warden.policy.rules import Rule


@dataclass
class Outcome:
    """What a service call changed; the route commits, then reloads policy if asked."""

    request: AccessRequest | None = None
    grant: AccessGrant | None = None
    policy_changed: bool = False


def create_request(db: Session, state: Platform, caller: Caller, body: RequestCreate) -> Outcome:
    """Ask for access. Public data (quorum 0) is granted at once, and audited as such."""
    require_person(caller)
    ask = _ask(db, state, caller, body)
    view, terms = ask.view, ask.terms
    if body.duration > terms.max_duration_s:
        raise Unprocessable(
            f"duration {format_duration(body.duration)} is over the maximum of"
            f" {format_duration(terms.max_duration_s)} for {view.name!r} ({view.classification})"
        )
    details = {"duration_s": body.duration, "quorum": terms.quorum}
    req = _add_request(db, state, caller, ask, body.duration, body.justification, details)
    if terms.quorum == 0:
        reason = f"{view.classification} data: granted at once"
        grant = _grant(db, state, ask.tenant, req, view, SYSTEM_ACTOR, reason)
        notify_resolved(db, state, ask.tenant, view, req, grant)
        return Outcome(req, grant, policy_changed=True)
    reviewers = _other_reviewers(db, state, caller, ask.tenant, view)
    notify(db, state, ask.tenant, "access.request.created", req.id, reviewers, request=req)
    return Outcome(req)


@dataclass(frozen=True)
class _Ask:
    """What a request (or break-glass) asks for, checked: its dataset, columns, purpose."""

    tenant: Tenant
    view: DatasetView
    columns: list[str]
    purpose: str
    terms: Terms
    break_glass: bool


def _ask(
    db: Session, state: Platform, caller: Caller, body: RequestCreate | BreakGlassCreate
) -> _Ask:
    """The dataset `body` names (404 unless visible), its columns and purpose checked."""
    tenant = get_tenant(db, caller.tenant)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, body.dataset)
    require_visible(state, caller, view)
    columns = check_columns(view, body.columns, body.purpose)
    terms = terms_of(db, view, state.settings)
    return _Ask(tenant, view, columns, body.purpose, terms, isinstance(body, BreakGlassCreate))


def _add_request(
    db: Session,
    state: Platform,
    caller: Caller,
    ask: _Ask,
    duration_s: int,
    justification: str,
    details: dict[str, Any],
) -> AccessRequest:
    """A new request row by `caller`, recorded; a break-glass one is approved as it is made
    (quorum 0)."""
    now = state.now()
    view = ask.view
    req = AccessRequest(
        id=new_id(REQUEST_PREFIX),
        tenant_id=ask.tenant.id,
        dataset_id=view.id,
        dataset=view.name,
        requester_id=caller.principal_id,
        requester=caller.name,
        kind="break_glass" if ask.break_glass else "request",
        columns=ask.columns,
        purpose=ask.purpose,
        duration_s=duration_s,
        justification=justification,
        classification=view.classification,
        quorum=0 if ask.break_glass else ask.terms.quorum,
        state="pending",
        created_at=now,
        pending_until=now + timedelta(hours=state.settings.access_pending_ttl_hours),
    )
    event, action = "created", None
    if ask.break_glass:
        req.state, req.pending_until, req.resolved_at = "approved", now, now
        event, action = "break_glass", "access.break_glass"
    db.add(req)
    db.flush()
    record(db, state, actor_of(caller), ask.tenant, req, event, None, req.state, action=action,
           reason=justification, columns=ask.columns, details=details)  # fmt: skip
    return req


def _other_reviewers(
    db: Session, state: Platform, caller: Caller, tenant: Tenant, view: DatasetView
) -> list[str]:
    return [r for r in reviewers_of(db, state, tenant, view) if r != caller.name]


def _close(
    db: Session,
    state: Platform,
    actor: Actor,
    tenant: Tenant,
    req: AccessRequest,
    to_state: str,
    reason: str,
    columns: Sequence[str] = (),
) -> None:
    """Move a pending request to its final state, and record it."""
    req.state = to_state
    req.resolved_at = state.now()
    record(
        db, state, actor, tenant, req, to_state, "pending", to_state, reason=reason, columns=columns
    )


def _grant(
    db: Session,
    state: Platform,
    tenant: Tenant,
    req: AccessRequest,
    view: DatasetView,
    actor: Actor,
    reason: str,
) -> AccessGrant:
    """Close a pending request as approved (a break-glass one is born approved) and create
    its grant (duration starts now)."""
    _hold_to_sources(db, state, tenant, req, view)
    if req.state == "pending":
        _close(db, state, actor, tenant, req, "approved", reason, columns=req.columns)
    break_glass = req.kind == "break_glass"
    now = state.now()
    # Whole seconds: the rule's expiry has second precision, and both must say the same.
    expires = (now + timedelta(seconds=req.duration_s)).replace(microsecond=0)
    masked = granted_masked(view, req.columns)
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
    if mixed := exposure.change_problems(db, rules, now=now):  # a grant may not unmask a pseudonym
        raise Forbidden(exposure.describe(mixed))
    db.flush()
    record(
        db,
        state,
        actor,
        tenant,
        grant,
        "created",
        None,
        "active",
        reason=reason,
        columns=grant.columns,
        masked=masked,
        policy_version=change.version,
        details={
            "request_id": req.id,
            "expires_at": format_now(aware(expires)),
            "rules": len(rules),
            "break_glass": break_glass,
        },
    )
    return grant


def _hold_to_sources(
    db: Session, state: Platform, tenant: Tenant, req: AccessRequest, view: DatasetView
) -> None:
    """A grant on a derived dataset (a job's output, say) gives no more than its sources
    give the requester: one under a row filter or a deny on a source is refused (403), since
    the copy carries neither. Checked when the grant is made, so policy since then counts."""
    if not view.derived_from:
        return
    home = state.settings.datasets_dir
    sources = [load_view(db, home, tenant.name, s) for s in view.derived_from]
    # a request is never a job's (require_person): its requester reads as themself
    requester = Caller(req.requester, "person", tenant.name, req.requester_id)
    covers_sources(state, requester, sources, req.purpose)


def granted_masked(view: DatasetView, columns: Sequence[str]) -> list[str]:
    """The columns a grant of `columns` gives masked (identifiers); the rest it gives raw."""
    return [c for c in columns if c in set(view.identifier_columns)]


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


def _find(
    db: Session, caller: Caller, model: type[Subject], subject_id: str, *, lock: bool = False
) -> tuple[Tenant, Subject]:
    tenant = get_tenant(db, caller.tenant)
    row = repo.find(db, model, subject_id[:32], tenant.id, lock=lock)
    if row is None:
        raise _not_found(model, subject_id)
    return tenant, check(db, row)  # as Warden wrote it: whose, on what, for how long


def _not_found(model: type[Subject], subject_id: str) -> NotFound:
    what = "access request" if model is AccessRequest else "grant"
    return NotFound(f"no {what} {subject_id[:40]!r}")


def _visible(
    db: Session, state: Platform, caller: Caller, tenant: Tenant, holder_id: str, dataset_id: str
) -> bool:
    """Its holder sees a request or grant; so do those who review or see all of them."""
    if holder_id == caller.principal_id:
        return True
    vis = visibility(db, state, caller, tenant)
    return vis.see_all or dataset_id in vis.reviewable


def _reviewable(
    db: Session,
    state: Platform,
    caller: Caller,
    model: type[Subject],
    subject_id: str,
    own: str,
    verb: str,
    scope: str,
    what: str,
) -> tuple[Tenant, Subject, DatasetView, set[str]]:
    """Lock a request or grant for review by `caller`: a person who may review its dataset
    and neither holds nor benefits from it. Returns its tenant, row, dataset and
    beneficiaries (its holder widened to their keepers)."""
    require_person(caller)
    tenant, row = _find(db, caller, model, subject_id, lock=True)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, row.dataset)
    holder = row.requester_id if isinstance(row, AccessRequest) else row.principal_id
    if holder == caller.principal_id:
        raise Forbidden(own)
    require_human(caller, verb)
    if not may_review(state, caller, view.name, view.owner):
        raise Forbidden(f"{caller.name} may not review {scope} {view.name!r}")
    beneficiaries = widen_to_keepers(db, [holder])
    refuse_conflict(db, caller, holder, beneficiaries, what)
    return tenant, row, view, beneficiaries


def _check_pending(db: Session, state: Platform, req: AccessRequest, verb: str) -> None:
    check_pending(db, state.now(), req, f"request {req.id}", verb, "request")


def request_scope(req: AccessRequest) -> list[Any]:
    """What a review of `req` approves: an edit to any of it voids earlier approvals."""
    columns = sorted(req.columns or [])
    return ["request", req.id, req.dataset_id, req.requester_id, columns, req.purpose,
            req.duration_s, req.kind]  # fmt: skip


def review(
    db: Session, state: Platform, caller: Caller, request_id: str, decision: str, comment: str
) -> Outcome:
    """Approve or deny. The request row is locked first, so concurrent reviews run one after
    another: quorum is counted once, and a reviewer counts once (unique per request)."""
    tenant, req, view, beneficiaries = _reviewable(
        db,
        state,
        caller,
        AccessRequest,
        request_id,
        "a requester never reviews their own request, whatever their roles",
        "review access requests",
        "access requests for",
        "access request",
    )
    _check_pending(db, state, req, "reviewed")
    reviews = repo.reviews_of(db, [req.id])[req.id]
    review_of = partial(AccessReview, request_id=req.id)
    approvals = add_review(
        db,
        caller,
        reviews,
        review_of,
        f"request {req.id}",
        req.requester_id,
        beneficiaries,
        decision,
        comment,
        state.now(),
        scope=request_scope(req),
        may_review=lambda who: may_review(state, who, view.name, view.owner),
    )
    actor = actor_of(caller)
    # the row's quorum is held to the dataset's terms now: one lowered in SQL never counts
    quorum = max(req.quorum, terms_of(db, view, state.settings).quorum)
    record(
        db,
        state,
        actor,
        tenant,
        req,
        decision,
        "pending",
        "pending",
        action="access.request.reviewed",
        reason=comment,
        details={"decision": decision, "approvals": len(approvals), "quorum": quorum},
    )
    if decision == "deny":
        _close(db, state, actor, tenant, req, "denied", comment or "denied")
        notify_resolved(db, state, tenant, view, req)
        return Outcome(req)
    if len(approvals) < quorum:
        return Outcome(req)
    _hold_to_terms(db, state, view, req)
    reason = f"{len(approvals)} of {quorum} approvals"
    grant = _grant(db, state, tenant, req, view, actor, reason)
    notify_resolved(db, state, tenant, view, req, grant)
    return Outcome(req, grant, policy_changed=True)


def _hold_to_terms(db: Session, state: Platform, view: DatasetView, req: AccessRequest) -> None:
    """The dataset's terms as they are when the grant is made, not only when it was asked:
    terms narrowed since (a shorter maximum, a purpose withdrawn, a column now denied)
    refuse the grant (409; the request stays pending for its requester to ask again)."""
    terms = terms_of(db, view, state.settings)
    if req.duration_s > terms.max_duration_s:
        raise Conflict(
            f"request {req.id} asks for {format_duration(req.duration_s)}, over the maximum of"
            f" {format_duration(terms.max_duration_s)} {view.name!r} allows now"
        )
    try:
        check_columns(view, req.columns, req.purpose)
    except WardenError as exc:
        raise Conflict(f"request {req.id} no longer fits {view.name!r}: {exc.detail}") from None


def cancel(db: Session, state: Platform, caller: Caller, request_id: str, reason: str) -> Outcome:
    """The requester withdraws a pending request."""
    require_person(caller)
    tenant, req = _find(db, caller, AccessRequest, request_id, lock=True)
    if req.requester_id != caller.principal_id:
        if not _visible(db, state, caller, tenant, req.requester_id, req.dataset_id):
            raise _not_found(AccessRequest, request_id)
        raise Forbidden("only the requester may cancel a request")
    _check_pending(db, state, req, "cancelled")
    reason = reason or "cancelled by the requester"
    _close(db, state, actor_of(caller), tenant, req, "cancelled", reason)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, req.dataset)
    notify_resolved(db, state, tenant, view, req)
    return Outcome(req)


def show_request(
    db: Session, state: Platform, caller: Caller, request_id: str
) -> tuple[AccessRequest, list[AccessReview], list[AccessTransition]]:
    """One request with its reviews and full history (its grant's too); 404 unless visible."""
    require_person(caller)
    tenant, req = _find(db, caller, AccessRequest, request_id)
    if not _visible(db, state, caller, tenant, req.requester_id, req.dataset_id):
        raise _not_found(AccessRequest, request_id)
    reviews = repo.reviews_of(db, [req.id])[req.id]
    subjects = [req.id, *([req.grant_id] if req.grant_id else [])]
    return req, reviews, repo.transitions_of(db, subjects)


@dataclass(frozen=True)
class Wanted:
    """Which requests or grants a caller asks to list, newest first: in `states` (empty:
    any), only its own (`mine`), only on `dataset`, at most `limit`."""

    states: Sequence[str] = ()
    mine: bool = False
    dataset: str | None = None
    limit: int = 100


def list_requests(
    db: Session, state: Platform, caller: Caller, wanted: Wanted, *, reviewable: bool = False
) -> tuple[list[AccessRequest], dict[str, list[AccessReview]]]:
    """`reviewable`: only pending requests this caller may review."""
    by = caller.principal_id if reviewable else None
    rows = repo.list_requests(db, _listing(db, state, caller, wanted), reviewable_by=by)
    return rows, repo.reviews_of(db, [r.id for r in rows])


def _listing(db: Session, state: Platform, caller: Caller, wanted: Wanted) -> repo.Listing:
    """The requests or grants of its tenant `caller` may list, as `wanted` narrows them."""
    require_person(caller)
    tenant = get_tenant(db, caller.tenant)
    vis = visibility(db, state, caller, tenant)
    holder_id = caller.principal_id if wanted.mine else None
    return repo.Listing(
        tenant.id,
        vis.visible_to(caller),
        vis.reviewable,
        wanted.states,
        holder_id,
        wanted.dataset,
        wanted.limit,
    )


# ---------------------------------------------------------------------------------------------
# Grants


def list_grants(
    db: Session,
    state: Platform,
    caller: Caller,
    wanted: Wanted,
    *,
    needs_review: bool | None = None,
) -> list[AccessGrant]:
    """`needs_review`: only grants whose break-glass sign-off is (True) or is not (False)
    outstanding."""
    return repo.list_grants(db, _listing(db, state, caller, wanted), needs_review=needs_review)


def show_grant(
    db: Session, state: Platform, caller: Caller, grant_id: str
) -> tuple[AccessGrant, list[AccessTransition]]:
    require_person(caller)
    tenant, grant = _find(db, caller, AccessGrant, grant_id)
    if not _visible(db, state, caller, tenant, grant.principal_id, grant.dataset_id):
        raise _not_found(AccessGrant, grant_id)
    return grant, repo.transitions_of(db, [grant.request_id, grant.id])


def revoke(db: Session, state: Platform, caller: Caller, grant_id: str, reason: str) -> Outcome:
    """End a grant now: its rules go in this transaction, so the next read is denied.
    The holder, the dataset's reviewers and access admins may revoke."""
    require_person(caller)
    tenant, grant = _find(db, caller, AccessGrant, grant_id, lock=True)
    view = load_view(db, state.settings.datasets_dir, caller.tenant, grant.dataset)
    may_revoke = (
        grant.principal_id == caller.principal_id
        or may_review(state, caller, view.name, view.owner)
        or allowed(state, caller, ACCESS_OBJECT, "manage")
    )
    if not may_revoke:
        if allowed(state, caller, ACCESS_OBJECT, "read"):
            raise Forbidden(f"{caller.name} may not revoke grants on {view.name!r}")
        raise _not_found(AccessGrant, grant_id)
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
        tenant,
        grant,
        "revoked",
        "active",
        "revoked",
        reason=reason,
        policy_version=change.version,
        details={"rules_removed": change.count},
    )
    notify_grant(db, state, tenant, view, grant, "access.grant.revoked")
    return Outcome(grant=grant, policy_changed=True)


def break_glass(db: Session, state: Platform, caller: Caller, body: BreakGlassCreate) -> Outcome:
    """Immediate, short access in an emergency: needs the `sys:break_glass` right, is flagged
    in every read it allows, and stays "needs review" until a reviewer signs it off."""
    require_person(caller)
    require_human(caller, "break glass")
    if not allowed(state, caller, BREAK_GLASS_OBJECT, "manage"):
        raise Forbidden(f"{caller.name} may not break glass")
    ask = _ask(db, state, caller, body)
    _refuse_unsigned(db, state, caller, ask.tenant)
    duration = min(state.settings.access_break_glass_minutes * 60, ask.terms.max_duration_s)
    details = {"duration_s": duration, "break_glass": True}
    req = _add_request(db, state, caller, ask, duration, body.reason, details)
    tenant, view = ask.tenant, ask.view
    grant = _grant(db, state, tenant, req, view, actor_of(caller), body.reason)
    reviewers = _other_reviewers(db, state, caller, tenant, view)
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


def _refuse_unsigned(db: Session, state: Platform, caller: Caller, tenant: Tenant) -> None:
    """409 while `caller` holds a break-glass grant nobody has signed off (expired or revoked
    ones too): one emergency window, then a second person looks, never a renewable lease."""
    # the caller's row lock serialises two break-glass calls, so both cannot pass this check
    lock_principal(db, db.get_one(Principal, caller.principal_id))
    # The log says whose a break-glass grant is and whether it was signed off; the rows add
    # any grant naming the caller whose seal broke. A broken row naming someone else is theirs.
    held = None
    if logged := repo.logged_unsigned_break_glass(db, tenant.name, caller.name):
        held = db.get(AccessGrant, logged[0])  # its row, if it still has the id the log names
        if held is None or held.principal_id != caller.principal_id:
            row = "is gone" if held is None else "names someone else (it does not match its seal)"
            raise Conflict(
                f"break-glass grant {logged[0]} awaits sign-off in the audit log, and its row"
                f" {row}: it was written past Warden, and no new break-glass is made for you"
                " until an operator checks it (`warden audit verify`, `warden data seal`)"
            )
    held = held or repo.unsigned_break_glass(db, tenant.id, caller.principal_id)
    if held is None:
        return
    if not intact_row(keys_for(db.get_bind()), held):
        raise Conflict(
            f"break-glass grant {held.id} does not match its seal (written past Warden): it"
            " counts as not signed off, and no new break-glass is made for its holder until an"
            " operator checks it (`warden data seal`)"
        )
    view = load_view(db, state.settings.datasets_dir, caller.tenant, held.dataset)
    who = ", ".join(_other_reviewers(db, state, caller, tenant, view)) or "nobody yet"
    raise Conflict(
        f"break-glass grant {held.id} on {held.dataset!r} awaits sign-off (by a reviewer of"
        f" {held.dataset!r} other than {caller.name}: {who}); no new break-glass until then"
    )


def sign_off(db: Session, state: Platform, caller: Caller, grant_id: str, comment: str) -> Outcome:
    """A reviewer (never the holder) signs off a break-glass grant, during or after it."""
    tenant, grant, view, beneficiaries = _reviewable(
        db,
        state,
        caller,
        AccessGrant,
        grant_id,
        "the holder of a break-glass grant never signs it off",
        "sign off break-glass grants",
        "access to",
        "break-glass grant",
    )
    check_awaiting_sign_off(grant, "grant")
    grant.needs_review = False
    grant.signed_off_by = caller.name
    grant.signed_off_at = state.now()
    record(
        db,
        state,
        actor_of(caller),
        tenant,
        grant,
        "signed_off",
        grant.state,
        grant.state,
        reason=comment or "signed off",
        details={"break_glass": True},
    )
    notify_grant(db, state, tenant, view, grant, "access.break_glass.signed_off")
    return Outcome(grant=grant)
