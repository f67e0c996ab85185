"""Console pages for access: a steward's pending reviews, one request, live grants (revoke,
break-glass sign-off), and an engineer's own requests and the form to file one.

Each action calls the access service exactly as /v1/access does (routes/access.py) through
`web.act`: the same checks, quorum, separation of duties, audit events and messages."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from warden.access import expiry, service
from warden.access.present import grant_out
from warden.access.schemas import RequestCreate, ReviewCreate, RevokeBody, SignOffBody
from warden.access.service import Outcome
from warden.api.console.views import request_view
from warden.api.console.web import PREFIX, ConsoleRoute, Form, Who, act, done, parse, render
from warden.catalog.service import PURPOSES, list_names, load_view
from warden.core.platform import Platform
from warden.db.session import unit_of_work
from warden.identity.service import Caller
from warden.policy.reads import visible

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


@router.get("/reviews")
def reviews(who: Who) -> HTMLResponse:
    """Pending requests this person may review (never their own)."""
    state, caller = who.state, who.caller
    expiry.expire_due_now(state)
    with unit_of_work(state.sessions) as db:
        pending = service.Wanted(states=["pending"])
        rows, reviews_ = service.list_requests(db, state, caller, pending, reviewable=True)
        items = [request_view(db, state, caller, r, reviews_[r.id]) for r in rows]
    return render(who.request, "reviews.html", who, items=items)


@router.get("/requests/new")
def new_request(who: Who) -> HTMLResponse:
    state, caller = who.state, who.caller
    with unit_of_work(state.sessions) as db:
        views = [
            load_view(db, state.settings.datasets_dir, caller.tenant, n)
            for n in list_names(db, caller.tenant)
        ]
        datasets = [v for v in views if visible(state, caller, v)]
    return render(who.request, "request_new.html", who, datasets=datasets, purposes=PURPOSES)


def _columns(text: str) -> list[str] | None:
    names = [c for c in re.split(r"[\s,]+", text.strip()) if c]
    return names or None


@router.post("/requests")
def file_request(who: Who, form: Form) -> RedirectResponse:
    body = parse(
        RequestCreate,
        form,
        dataset=form.get("dataset", ""),
        columns=_columns(form.get("columns", "")),
        purpose=form.get("purpose", ""),
        duration=form.get("duration", ""),
        justification=form.get("justification", ""),
    )
    outcome = act(
        who,
        "access.request.created",
        lambda db: service.create_request(db, who.state, who.caller, body),
        dataset=body.dataset,
        purpose=body.purpose,
    )
    assert outcome.request is not None
    rid = outcome.request.id
    if outcome.grant is not None:
        return done(f"{PREFIX}/requests/{rid}", f"Granted at once: grant {outcome.grant.id}")
    return done(f"{PREFIX}/requests/{rid}", f"Request {rid} filed; reviewers are told")


@router.get("/requests/{request_id}")
def show_request(request_id: str, who: Who) -> HTMLResponse:
    state, caller = who.state, who.caller
    expiry.expire_due_now(state)
    with unit_of_work(state.sessions) as db:
        req, reviews_, history = service.show_request(db, state, caller, request_id)
        item = request_view(db, state, caller, req, reviews_, history=history)
    return render(who.request, "request.html", who, item=item)


@router.post("/requests/{request_id}/review")
def review(request_id: str, who: Who, form: Form) -> RedirectResponse:
    body = parse(
        ReviewCreate, form, decision=form.get("decision", ""), comment=form.get("comment", "")
    )
    outcome = act(
        who,
        "access.request.reviewed",
        lambda db: service.review(db, who.state, who.caller, request_id, body.decision,
                                  body.comment),
        details={"request_id": request_id[:40], "decision": body.decision},
    )  # fmt: skip
    req = outcome.request
    assert req is not None
    if outcome.grant is not None:
        grant = grant_out(outcome.grant)
        message = f"Approved: quorum reached; grant {grant.id} expires {grant.expires_at}"
    elif req.state == "denied":
        message = f"Denied: request {req.id} is closed"
    else:
        message = f"Your approval of {req.id} is recorded; the quorum is {req.quorum}"
    return done(f"{PREFIX}/requests/{req.id}", message)


@router.post("/requests/{request_id}/cancel")
def cancel(request_id: str, who: Who, form: Form) -> RedirectResponse:
    reason = form.get("reason", "")[:2000]
    act(
        who,
        "access.request.cancelled",
        lambda db: service.cancel(db, who.state, who.caller, request_id, reason),
        details={"request_id": request_id[:40]},
    )
    return done(f"{PREFIX}/requests/{request_id}", "Request withdrawn")


@router.get("/grants")
def grants(who: Who) -> HTMLResponse:
    """Live grants this person holds or may review; revoke, and sign off break-glass."""
    state, caller = who.state, who.caller
    expiry.expire_due_now(state)
    with unit_of_work(state.sessions) as db:
        rows = service.list_grants(db, state, caller, service.Wanted(["active"], limit=200))
    items = [grant_out(g) for g in rows]
    return render(who.request, "grants.html", who, grants=items)


@router.post("/grants/{grant_id}/revoke")
def revoke(grant_id: str, who: Who, form: Form) -> RedirectResponse:
    body = parse(RevokeBody, form, reason=form.get("reason", ""))
    said = f"Grant {grant_id[:40]} revoked: the next read is refused"
    return _on_grant(who, "access.grant.revoked", service.revoke, grant_id, body.reason, said)


@router.post("/grants/{grant_id}/sign-off")
def sign_off(grant_id: str, who: Who, form: Form) -> RedirectResponse:
    body = parse(SignOffBody, form, comment=form.get("comment", ""))
    said = f"Break-glass grant {grant_id[:40]} signed off"
    return _on_grant(who, "access.grant.signed_off", service.sign_off, grant_id, body.comment, said)


GrantAction = Callable[[Session, Platform, Caller, str, str], Outcome]


def _on_grant(
    who: Who, action: str, call: GrantAction, grant_id: str, text: str, said: str
) -> RedirectResponse:
    """`call` on one grant with the form's `text` (audited as `action`), then back to the
    grants page saying what was done."""
    act(
        who,
        action,
        lambda db: call(db, who.state, who.caller, grant_id, text),
        details={"grant_id": grant_id[:40]},
    )
    return done(f"{PREFIX}/grants", said)


@router.get("/my-access")
def my_access(who: Who) -> HTMLResponse:
    """An engineer's own requests and grants."""
    state, caller = who.state, who.caller
    expiry.expire_due_now(state)
    with unit_of_work(state.sessions) as db:
        own = service.Wanted(mine=True)
        rows, reviews_ = service.list_requests(db, state, caller, own)
        mine = [request_view(db, state, caller, r, reviews_[r.id]) for r in rows]
        held = service.list_grants(db, state, caller, own)
    return render(
        who.request, "my_access.html", who, requests=mine, grants=[grant_out(g) for g in held]
    )
