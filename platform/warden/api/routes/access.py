"""/v1/access: requests, reviews, grants, break-glass, per-dataset terms, webhook deliveries.

Every call first applies due expiries (in a transaction of its own), then does its work in
the request's transaction; a call that changed rules commits, then reloads the policy.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from warden.access import changes, expiry, service, terms, webhooks
from warden.access import repository as repo
from warden.access.present import delivery_out, grant_out, request_out
from warden.access.rights import ACCESS_OBJECT
from warden.access.schemas import (
    BreakGlassCreate,
    CancelBody,
    DeliveryOut,
    GrantOut,
    RequestCreate,
    RequestOut,
    ReviewCreate,
    RevokeBody,
    SettingsOut,
    SettingsUpdate,
    SignOffBody,
)
from warden.access.service import Outcome
from warden.api.deps import CurrentCaller, DbSession, State, get_process
from warden.catalog.service import load_view
from warden.core.platform import Platform
from warden.errors import Conflict, NotFound
from warden.identity.service import get_tenant
from warden.policy.authz import require
from warden.policy.reads import require_visible

router = APIRouter(prefix="/v1/access", tags=["access"])

RequestState = Literal["pending", "approved", "denied", "cancelled", "expired"]
GrantState = Literal["active", "expired", "revoked"]
DeliveryState = Literal["pending", "delivered", "failed"]
Limit = Annotated[int, Query(ge=1, le=repo.MAX_LIST)]
DatasetName = Annotated[str | None, Query(max_length=64)]
Body = TypeVar("Body", RequestOut, GrantOut, DeliveryOut)


def take_effect(request: Request, state: Platform, outcome: Outcome) -> None:
    """After the commit, make an access change visible: reload the rules if it changed them,
    wake the webhook sender (the console's actions share this)."""
    if outcome.policy_changed:
        state.policy.ensure_fresh()
    worker = get_process(request).access
    if worker is not None:
        worker.wake()


def _finish(request: Request, db: DbSession, state: Platform, outcome: Outcome, body: Body) -> Body:
    """Commit, then make the change visible. The response `body` is built by the caller
    before the commit."""
    db.commit()
    take_effect(request, state, outcome)
    return body


def _request_body(db: DbSession, outcome: Outcome) -> RequestOut:
    assert outcome.request is not None
    req = outcome.request
    return request_out(req, repo.reviews_of(db, [req.id])[req.id], with_reviews=True)


def _grant_body(outcome: Outcome) -> GrantOut:
    assert outcome.grant is not None
    return grant_out(outcome.grant)


@router.post("/requests", status_code=201, response_model=RequestOut, summary="Ask for access")
def create_request(
    body: RequestCreate, caller: CurrentCaller, db: DbSession, state: State, request: Request
) -> RequestOut:
    """{dataset, columns (optional subset), purpose, duration (e.g. 7d), justification}."""
    expiry.expire_due_now(state)
    outcome = service.create_request(db, state, caller, body)
    return _finish(request, db, state, outcome, _request_body(db, outcome))


@router.get(
    "/requests", summary="Requests you made or may review (filters: state, mine, reviewable)"
)
def list_requests(
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    state_: Annotated[list[RequestState] | None, Query(alias="state")] = None,
    mine: bool = False,
    reviewable: Annotated[bool, Query(description="pending, and yours to review")] = False,
    dataset: DatasetName = None,
    limit: Limit = 100,
) -> dict[str, list[RequestOut]]:
    expiry.expire_due_now(state)
    rows, reviews = service.list_requests(
        db,
        state,
        caller,
        states=state_ or [],
        mine=mine,
        reviewable=reviewable,
        dataset=dataset,
        limit=limit,
    )
    return {"requests": [request_out(r, reviews[r.id]) for r in rows]}


@router.get(
    "/requests/{request_id}", response_model=RequestOut, summary="One request and its history"
)
def show_request(request_id: str, caller: CurrentCaller, db: DbSession, state: State) -> RequestOut:
    expiry.expire_due_now(state)
    req, reviews, history = service.show_request(db, state, caller, request_id)
    return request_out(req, reviews, history=history, with_reviews=True)


@router.post("/requests/{request_id}/review", response_model=RequestOut, summary="Approve or deny")
def review_request(
    request_id: str,
    body: ReviewCreate,
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    request: Request,
) -> RequestOut:
    """A reviewer's {decision: approve | deny, comment}; the quorum's last approval grants."""
    expiry.expire_due_now(state)
    outcome = service.review(db, state, caller, request_id, body.decision, body.comment)
    return _finish(request, db, state, outcome, _request_body(db, outcome))


@router.post(
    "/requests/{request_id}/cancel", response_model=RequestOut, summary="Withdraw a pending request"
)
def cancel_request(
    request_id: str,
    body: CancelBody,
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    request: Request,
) -> RequestOut:
    expiry.expire_due_now(state)
    outcome = service.cancel(db, state, caller, request_id, body.reason)
    return _finish(request, db, state, outcome, _request_body(db, outcome))


@router.get("/grants", summary="Grants you hold or may review")
def list_grants(
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    state_: Annotated[list[GrantState] | None, Query(alias="state")] = None,
    mine: bool = False,
    needs_review: bool | None = None,
    dataset: DatasetName = None,
    limit: Limit = 100,
) -> dict[str, list[GrantOut]]:
    expiry.expire_due_now(state)
    rows = service.list_grants(
        db,
        state,
        caller,
        states=state_ or [],
        mine=mine,
        dataset=dataset,
        needs_review=needs_review,
        limit=limit,
    )
    return {"grants": [grant_out(g) for g in rows]}


@router.get("/grants/{grant_id}", response_model=GrantOut, summary="One grant and its history")
def show_grant(grant_id: str, caller: CurrentCaller, db: DbSession, state: State) -> GrantOut:
    expiry.expire_due_now(state)
    grant, history = service.show_grant(db, state, caller, grant_id)
    return grant_out(grant, history=history)


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut, summary="End a grant now")
def revoke_grant(
    grant_id: str,
    body: RevokeBody,
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    request: Request,
) -> GrantOut:
    """{reason}: the grant's rules go at once; the very next read on any replica is denied."""
    expiry.expire_due_now(state)
    outcome = service.revoke(db, state, caller, grant_id, body.reason)
    return _finish(request, db, state, outcome, _grant_body(outcome))


@router.post(
    "/grants/{grant_id}/sign-off", response_model=GrantOut, summary="Sign off a break-glass grant"
)
def sign_off_grant(
    grant_id: str,
    body: SignOffBody,
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    request: Request,
) -> GrantOut:
    expiry.expire_due_now(state)
    outcome = service.sign_off(db, state, caller, grant_id, body.comment)
    return _finish(request, db, state, outcome, _grant_body(outcome))


@router.post("/break-glass", status_code=201, response_model=GrantOut, summary="Emergency access")
def break_glass(
    body: BreakGlassCreate, caller: CurrentCaller, db: DbSession, state: State, request: Request
) -> GrantOut:
    """{dataset, purpose, reason}: a short grant at once, flagged in every read it allows,
    "needs review" until a reviewer signs it off."""
    expiry.expire_due_now(state)
    outcome = service.break_glass(db, state, caller, body)
    return _finish(request, db, state, outcome, _grant_body(outcome))


@router.get("/settings/{dataset}", response_model=SettingsOut, summary="A dataset's access terms")
def show_terms(dataset: str, caller: CurrentCaller, db: DbSession, state: State) -> SettingsOut:
    view = load_view(db, state.settings.datasets_dir, caller.tenant, dataset)
    require_visible(state, caller, view)
    return terms.terms_of(db, view, state.settings).out()


@router.put(
    "/settings/{dataset}",
    response_model=SettingsOut,
    summary="Override quorum or max duration",
    responses={202: {"description": "Proposed: a different person must approve it"}},
)
def update_terms(
    dataset: str, body: SettingsUpdate, caller: CurrentCaller, db: DbSession, state: State
) -> Any:
    """{quorum, max_duration}; null puts a value back to its classification default. Never
    below the class floors (pii: quorum 2, at most 90 days). Raising a quorum or shortening
    a maximum applies now; lowering or lengthening is proposed (202) for another's review."""
    current, outcome = changes.update_terms(db, state, caller, dataset, body)
    if outcome.applied:
        return current.out()
    assert outcome.change is not None
    change = changes.change_out(db, outcome.change, state.now(), with_reviews=True)
    db.commit()
    return JSONResponse(
        status_code=202,
        content={
            "state": "pending",
            "change": change.model_dump(),
            "terms": current.out().model_dump(),
        },
    )


@router.get("/webhooks/deliveries", summary="Webhook deliveries (failed ones stay visible)")
def list_deliveries(
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    state_: Annotated[list[DeliveryState] | None, Query(alias="state")] = None,
    limit: Limit = 100,
) -> dict[str, object]:
    require(state, caller, ACCESS_OBJECT, "read")
    tenant = get_tenant(db, caller.tenant)
    rows = repo.deliveries(db, tenant.id, state_ or [], limit)
    return {
        "deliveries": [delivery_out(d) for d in rows],
        "failed": repo.count_deliveries(db, tenant.id, "failed"),
        "pending": repo.count_deliveries(db, tenant.id, "pending"),
    }


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(
    delivery_id: str, caller: CurrentCaller, db: DbSession, state: State, request: Request
) -> DeliveryOut:
    """Queue a failed delivery again, due now."""
    require(state, caller, ACCESS_OBJECT, "manage")
    tenant = get_tenant(db, caller.tenant)
    delivery = repo.get_delivery(db, delivery_id[:32], tenant.id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id[:40]!r}")
    if delivery.state != "failed":
        raise Conflict(f"delivery {delivery.id} is {delivery.state}; only a failed one is retried")
    webhooks.retry(db, delivery)
    return _finish(request, db, state, Outcome(), delivery_out(delivery))


@router.post("/tidy", summary="Expire what is due and drop ended grants' rules now")
def tidy(caller: CurrentCaller, state: State) -> dict[str, int]:
    require(state, caller, ACCESS_OBJECT, "manage")
    done = expiry.tidy(state)
    return {
        "requests_expired": done.requests_expired,
        "grants_expired": done.grants_expired,
        "rules_pruned": done.rules_pruned,
    }


__all__ = ["router"]
