"""The audit API: query the log and verify the chain. Reading the log is itself audited."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from warden.api.deps import CurrentCaller, DbSession, State
from warden.audit import service
from warden.audit.schemas import AuditEventOut, AuditEventsPage, BrokenLinkOut, VerifyOut
from warden.audit.service import AuditRecord, Decision, record
from warden.errors import AuditUnavailable, Forbidden
from warden.identity.service import Caller

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AUDIT_OBJECT = "sys:audit"
Name = Annotated[str | None, Query(max_length=64)]


_NUMBER = re.compile(r"\s*[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*")


def _iso_8601(value: Any) -> Any:
    # pydantic would read a bare number as a Unix time; the API documents ISO-8601 only.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected an ISO-8601 date or date-time, not a number")
    return value


When = Annotated[datetime | None, BeforeValidator(_iso_8601)]


def authorise_auditor(state: Any, caller: Caller, action: str, details: dict[str, Any]) -> None:
    """Only callers the policy lets read `sys:audit` pass; refusals are audited too."""
    # ensure_fresh, not current: a revoked auditor must fail on the very next call.
    snapshot = state.policy.ensure_fresh()
    allowed = bool(
        snapshot.can(caller.name, caller.tenant, AUDIT_OBJECT, "read", datetime.now(UTC))
    )
    if not allowed:
        _audit(state, caller, action, "deny", details, reason="not an auditor")
        raise Forbidden("you may not read the audit log")


def _audit(
    state: Any,
    caller: Caller,
    action: str,
    decision: Decision,
    details: dict[str, Any],
    *,
    rows: int | None = None,
    reason: str | None = None,
) -> None:
    version = getattr(state.policy.current(), "version", None)
    record(
        state.sessions,
        AuditRecord(
            action=action,
            decision=decision,
            actor=caller.name,
            actor_kind=caller.kind,
            on_behalf_of=caller.on_behalf_of,
            tenant=caller.tenant,
            policy_version=version if isinstance(version, int) else None,
            rows=rows,
            reason=reason,
            details=details,
        ),
    )


@router.get("/events", response_model=AuditEventsPage)
def list_events(
    db: DbSession,
    caller: CurrentCaller,
    state: State,
    actor: Name = None,
    dataset: Name = None,
    action: Name = None,
    decision: Annotated[Literal["allow", "deny", "error"] | None, Query()] = None,
    since: Annotated[When, Query(description="ISO-8601, inclusive")] = None,
    until: Annotated[When, Query(description="ISO-8601, exclusive")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_QUERY_LIMIT)] = 100,
) -> AuditEventsPage:
    """Events of the caller's tenant, newest first; follow `next_cursor` for older ones."""
    filters = {
        "actor": actor,
        "dataset": dataset,
        "action": action,
        "decision": decision,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "cursor": cursor,
        "limit": limit,
    }
    filters = {k: v for k, v in filters.items() if v is not None}
    authorise_auditor(state, caller, "audit.query", filters)
    events, next_cursor = service.query(
        db,
        actor=actor,
        dataset=dataset,
        action=action,
        decision=decision,
        tenant=caller.tenant,
        with_untenanted=True,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    _audit(state, caller, "audit.query", "allow", filters, rows=len(events))
    return AuditEventsPage(
        events=[AuditEventOut.model_validate(service.event_dict(e)) for e in events],
        next_cursor=next_cursor,
    )


@router.post("/verify", response_model=VerifyOut)
def verify_chain(db: DbSession, caller: CurrentCaller, state: State) -> VerifyOut:
    """Walk the whole chain (all tenants: it is one chain) and report the first broken link."""
    authorise_auditor(state, caller, "audit.verify", {})
    result = service.verify(db)
    outcome = {"ok": result.ok, "checked": result.checked, "head_seq": result.head_seq}
    if result.first_broken is not None:
        outcome["broken_seq"] = result.first_broken.seq
    try:
        _audit(state, caller, "audit.verify", "allow", outcome, rows=result.checked)
    except AuditUnavailable:
        # A chain too broken to append to (say, its head is gone) must still be reportable.
        if result.ok:
            raise
    broken = result.first_broken
    return VerifyOut(
        ok=result.ok,
        checked=result.checked,
        first_broken=BrokenLinkOut(seq=broken.seq, id=broken.id, reason=broken.reason)
        if broken
        else None,
        head_seq=result.head_seq,
    )
