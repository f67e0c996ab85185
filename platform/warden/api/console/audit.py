"""Console pages for auditors: search the log, open one event, verify the chain.

They call the /v1/audit route functions themselves (routes/audit.py), so who may read the
log, which tenant's events they see, and the audit of each query are the API's exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from warden.api.console.web import PREFIX, ConsoleRoute, Form, Who, render
from warden.api.routes import audit as audit_api
from warden.audit.schemas import AuditFilters
from warden.db.session import unit_of_work
from warden.errors import NotFound, Unprocessable

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

PAGE = 50
Text = Annotated[str, Field(max_length=64)]


def _when(value: str, name: str) -> datetime | None:
    """A date or date-time from the form (a browser's datetime-local has no zone: UTC)."""
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Unprocessable(f"{name}: expected an ISO-8601 date or date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Search(BaseModel):
    """The search form's fields as typed: shown again on the page, and read as AuditFilters."""

    actor: Text = ""
    dataset: Text = ""
    action: Text = ""
    decision: Literal["", "allow", "deny", "error"] = ""
    since: Text = ""
    until: Text = ""
    cursor: Text = ""

    def filters(self) -> AuditFilters:
        return AuditFilters(
            actor=self.actor.strip() or None,
            dataset=self.dataset.strip() or None,
            action=self.action.strip() or None,
            decision=self.decision or None,
            since=_when(self.since, "since"),
            until=_when(self.until, "until"),
            cursor=self.cursor or None,
            limit=PAGE,
        )


@router.get("/audit")
def search(who: Who, form: Annotated[Search, Query()]) -> HTMLResponse:
    with unit_of_work(who.state.sessions) as db:
        page = audit_api.list_events(db, who.caller, who.state, form.filters())
    shown = form.model_dump(exclude={"cursor"})  # the next page's link adds its own cursor
    return render(who.request, "audit.html", who, page=page, filters=shown, searched=True)


@router.get("/audit/events/{event_id}")
def event(event_id: Annotated[str, Path(max_length=64)], who: Who) -> HTMLResponse:
    """One event's full record (by its id: a tenant is not shown the chain's seq), found as a
    query of the caller's tenant would find it."""
    with unit_of_work(who.state.sessions) as db:
        asked = AuditFilters(limit=1, id=event_id)
        page = audit_api.list_events(db, who.caller, who.state, asked)
    found = page.events[0] if page.events else None
    if found is None:
        raise NotFound(f"no audit event {event_id!r} in your tenant's log")
    return render(who.request, "audit_event.html", who, event=found)


@router.post("/audit/verify")
def verify(who: Who, form: Form) -> HTMLResponse:
    """Walk the chain and hold it against the signed checkpoints (audited as audit.verify)."""
    with unit_of_work(who.state.sessions) as db:
        result = audit_api.verify_chain(db, who.caller, who.state)
    return render(who.request, "audit_verify.html", who, result=result)
