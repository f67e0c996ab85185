"""/v1/access: requests, reviews, grants, break-glass, per-dataset terms, webhook deliveries.

Every call first applies due expiries (in a transaction of its own, `AccessCall`), then does
its work in the request's transaction; a call that changed rules commits, then reloads the
policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

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
from warden.identity.service import Caller, get_tenant
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


@dataclass(frozen=True)
class AccessCall:
    """What an access route works with, due expiries already applied."""

    caller: Caller
    db: Session
    state: Platform
    request: Request

    def finish(self, outcome: Outcome, body: Body) -> Body:
        """Commit, then make the change visible. The response `body` is built by the caller
        before the commit."""
        self.db.commit()
        take_effect(self.request, self.state, outcome)
        return body


def _access_call(
    caller: CurrentCaller, db: DbSession, state: State, request: Request
) -> AccessCall:
    # in a transaction of its own, so a refusal that follows does not roll the expiry back
    expiry.expire_due_now(state)
    return AccessCall(caller, db, state, request)


Call = Annotated[AccessCall, Depends(_access_call)]


def _request_body(db: Session, outcome: Outcome) -> RequestOut:
    assert outcome.request is not None
    req = outcome.request
    return request_out(req, repo.reviews_of(db, [req.id])[req.id], with_reviews=True)


def _grant_body(outcome: Outcome) -> GrantOut:
    assert outcome.grant is not None
    return grant_out(outcome.grant)


@router.post("/requests", status_code=201, response_model=RequestOut, summary="Ask for access")
def create_request(body: RequestCreate, call: Call) -> RequestOut:
    """{dataset, columns (optional subset), purpose, duration (e.g. 7d), justification}."""
    outcome = service.create_request(call.db, call.state, call.caller, body)
    return call.finish(outcome, _request_body(call.db, outcome))


@router.get(
    "/requests", summary="Requests you made or may review (filters: state, mine, reviewable)"
)
def list_requests(
    call: Call,
    state_: Annotated[list[RequestState] | None, Query(alias="state")] = None,
    mine: bool = False,
    reviewable: Annotated[bool, Query(description="pending, and yours to review")] = False,
    dataset: DatasetName = None,
    limit: Limit = 100,
) -> dict[str, list[RequestOut]]:
    wanted = service.Wanted(state_ or [], mine, dataset, limit)
    rows, reviews = service.list_requests(
        call.db, call.state, call.caller, wanted, reviewable=reviewable
    )
    return {"requests": [request_out(r, reviews[r.id]) for r in rows]}


@router.get(
    "/requests/{request_id}", response_model=RequestOut, summary="One request and its history"
)
def show_request(request_id: str, call: Call) -> RequestOut:
    req, reviews, history = service.show_request(call.db, call.state, call.caller, request_id)
    return request_out(req, reviews, history=history, with_reviews=True)


@router.post("/requests/{request_id}/review", response_model=RequestOut, summary="Approve or deny")
def review_request(request_id: str, body: ReviewCreate, call: Call) -> RequestOut:
    """A reviewer's {decision: approve | deny, comment}; the quorum's last approval grants."""
    outcome = service.review(
        call.db, call.state, call.caller, request_id, body.decision, body.comment
    )
    return call.finish(outcome, _request_body(call.db, outcome))


@router.post(
    "/requests/{request_id}/cancel", response_model=RequestOut, summary="Withdraw a pending request"
)
def cancel_request(request_id: str, body: CancelBody, call: Call) -> RequestOut:
    outcome = service.cancel(call.db, call.state, call.caller, request_id, body.reason)
    return call.finish(outcome, _request_body(call.db, outcome))


@router.get("/grants", summary="Grants you hold or may review")
def list_grants(
    call: Call,
    state_: Annotated[list[GrantState] | None, Query(alias="state")] = None,
    mine: bool = False,
    needs_review: bool | None = None,
    dataset: DatasetName = None,
    limit: Limit = 100,
) -> dict[str, list[GrantOut]]:
    wanted = service.Wanted(state_ or [], mine, dataset, limit)
    rows = service.list_grants(call.db, call.state, call.caller, wanted, needs_review=needs_review)
    return {"grants": [grant_out(g) for g in rows]}


@router.get("/grants/{grant_id}", response_model=GrantOut, summary="One grant and its history")
def show_grant(grant_id: str, call: Call) -> GrantOut:
    grant, history = service.show_grant(call.db, call.state, call.caller, grant_id)
    return grant_out(grant, history=history)


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut, summary="End a grant now")
def revoke_grant(grant_id: str, body: RevokeBody, call: Call) -> GrantOut:
    """{reason}: the grant's rules go at once; the very next read on any replica is denied."""
    outcome = service.revoke(call.db, call.state, call.caller, grant_id, body.reason)
    return call.finish(outcome, _grant_body(outcome))


@router.post(
    "/grants/{grant_id}/sign-off", response_model=GrantOut, summary="Sign off a break-glass grant"
)
def sign_off_grant(grant_id: str, body: SignOffBody, call: Call) -> GrantOut:
    outcome = service.sign_off(call.db, call.state, call.caller, grant_id, body.comment)
    return call.finish(outcome, _grant_body(outcome))


@router.post("/break-glass", status_code=201, response_model=GrantOut, summary="Emergency access")
def break_glass(body: BreakGlassCreate, call: Call) -> GrantOut:
    """{dataset, purpose, reason}: a short grant at once, flagged in every read it allows,
    "needs review" until a reviewer signs it off."""
    outcome = service.break_glass(call.db, call.state, call.caller, body)
    return call.finish(outcome, _grant_body(outcome))


@router.get("/settings/{dataset}", response_model=SettingsOut, summary="A dataset's access terms")
def show_terms(dataset: str, call: Call) -> SettingsOut:
    view = load_view(call.db, call.state.settings.datasets_dir, call.caller.tenant, dataset)
    require_visible(call.state, call.caller, view)
    return terms.terms_of(call.db, view, call.state.settings).out()


@router.put(
    "/settings/{dataset}",
    response_model=SettingsOut,
    summary="Override quorum or max duration",
    responses={202: {"description": "Proposed: a different person must approve it"}},
)
def update_terms(dataset: str, body: SettingsUpdate, call: Call) -> Any:
    """{quorum, max_duration}; null puts a value back to its classification default. Never
    below the class floors (pii: quorum 2, at most 90 days). Raising a quorum or shortening
    a maximum applies now; lowering or lengthening is proposed (202) for another's review."""
    db, state = call.db, call.state
    current, outcome = changes.update_terms(db, state, call.caller, dataset, body)
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
    call: Call,
    state_: Annotated[list[DeliveryState] | None, Query(alias="state")] = None,
    limit: Limit = 100,
) -> dict[str, object]:
    require(call.state, call.caller, ACCESS_OBJECT, "read")
    db = call.db
    tenant = get_tenant(db, call.caller.tenant)
    rows = repo.deliveries(db, tenant.id, state_ or [], limit)
    return {
        "deliveries": [delivery_out(d) for d in rows],
        "failed": repo.count_deliveries(db, tenant.id, "failed"),
        "pending": repo.count_deliveries(db, tenant.id, "pending"),
    }


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(delivery_id: str, call: Call) -> DeliveryOut:
    """Queue a failed delivery again, due now."""
    require(call.state, call.caller, ACCESS_OBJECT, "manage")
    tenant = get_tenant(call.db, call.caller.tenant)
    delivery = repo.get_delivery(call.db, delivery_id[:32], tenant.id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id[:40]!r}")
    if delivery.state != "failed":
        raise Conflict(f"delivery {delivery.id} is {delivery.state}; only a failed one is retried")
    webhooks.retry(call.db, delivery)
    return call.finish(Outcome(), delivery_out(delivery))


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
