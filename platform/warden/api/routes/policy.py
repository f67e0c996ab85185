"""/v1/policy: explain decisions, list rules, change them: narrowing changes apply at once,
widening ones are proposed and reviewed (/v1/policy/changes); every step audited."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from warden.access import changes
from warden.access.changes import ChangeOutcome, change_out, parse_rules
from warden.access.schemas import ChangeDecision, ChangeOut, RulesChange
from warden.api.deps import CurrentCaller, DbSession, State
from warden.catalog.service import load_view
from warden.errors import Unprocessable
from warden.policy.authz import require
from warden.policy.engine import RowFilter
from warden.policy.reads import require_visible
from warden.policy.rules import format_rule
from warden.policy.store import load_rules

router = APIRouter(prefix="/v1/policy", tags=["policy"])


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(max_length=64)
    dataset: str = Field(max_length=64)
    purpose: str = Field(max_length=32)
    columns: list[str] | None = Field(default=None, max_length=256)


HIDDEN = "(hidden: the subject does not read this column raw)"
ChangeState = Literal["pending", "applied", "denied", "cancelled", "expired"]


@router.get("", summary="The policy version now in force")
def version(caller: CurrentCaller, state: State) -> dict[str, Any]:
    snapshot = state.policy.ensure_fresh()
    return {"version": snapshot.version, "tenant": caller.tenant}


@router.post("/check", summary="Explain a read decision, column by column, with its rules")
def check(body: CheckRequest, caller: CurrentCaller, db: DbSession, state: State) -> dict[str, Any]:
    if body.subject != caller.name:
        require(state, caller, "sys:policy", "read")
    view = load_view(db, state.settings.datasets_dir, caller.tenant, body.dataset)
    require_visible(state, caller, view)
    snapshot = state.policy.ensure_fresh()
    columns = body.columns or list(view.column_names)
    if unknown := [c for c in columns if view.column(c) is None]:
        raise Unprocessable(f"unknown columns {unknown[:10]}")
    now = state.now()
    decision = snapshot.decide_read(
        body.subject, caller.tenant, view.name, columns, body.purpose, now
    )
    raw = {
        f.column: snapshot.decide_column(
            body.subject, caller.tenant, view.name, f.column, body.purpose, now
        ).effect
        == "allow"
        for f in decision.row_filters
    }
    return {
        "subject": body.subject,
        "tenant": caller.tenant,
        "dataset": view.name,
        "purpose": body.purpose,
        "policy_version": decision.policy_version,
        "purpose_allowed_by_dataset": body.purpose in view.allowed_purposes,
        "roles": [s for s in snapshot.subjects(body.subject, caller.tenant) if s != body.subject],
        "columns": [
            {
                "column": d.column,
                "effect": d.effect,
                "rule": format_rule("p", d.rule) if d.rule else None,
                "grant_id": d.grant_id,
            }
            for d in decision.columns
        ],
        "row_filters": [_filter_out(f, raw[f.column]) for f in decision.row_filters],
    }


def _filter_out(f: RowFilter, shown: bool) -> dict[str, Any]:
    """A row filter as /check shows it; its value (in the value and in the rule) only where
    the subject reads the column raw: a raw value beside masked reads re-links pseudonyms."""
    if shown:
        return {"column": f.column, "op": f.op, "value": f.value,
                "rule": format_rule("p2", f.rule)}  # fmt: skip
    rule = format_rule("p2", (*f.rule[:-1], HIDDEN))
    return {"column": f.column, "op": f.op, "value": None, "rule": rule}


@router.get("/rules", summary="Rules of the caller's tenant, in policy order")
def rules(caller: CurrentCaller, db: DbSession, state: State) -> dict[str, Any]:
    require(state, caller, "sys:policy", "read")
    version, all_rules = load_rules(db)
    mine = [format_rule(p, f) for p, f in all_rules if _domain(p, f) == caller.tenant]
    return {"version": version, "rules": mine}


def _change_body(db: DbSession, state: State, outcome: ChangeOutcome) -> dict[str, Any]:
    assert outcome.change is not None
    return change_out(db, outcome.change, state.now(), with_reviews=True).model_dump()


@router.post(
    "/rules",
    summary="Change rules: narrowing applies now; widening is proposed (202) for review",
    responses={202: {"description": "Proposed: a different person must approve it"}},
)
def change_rules(body: RulesChange, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    """{add, remove, reason, break_glass}. A change that could widen what anyone reads (an
    allow, a role link, lifting a deny or a row filter) waits for another person's approval;
    `break_glass` (with a reason) applies it now, flagged and listed as needing review."""
    add = parse_rules(body.add, caller.tenant)
    remove = parse_rules(body.remove, caller.tenant)
    outcome = changes.change_rules(
        db, state, caller, add=add, remove=remove, reason=body.reason, break_glass=body.break_glass
    )
    return _answer(db, state, outcome)


def _answer(db: DbSession, state: State, outcome: ChangeOutcome) -> Any:
    """200 with what was applied, or 202 with the proposed change; commit, then reload."""
    change = _change_body(db, state, outcome) if outcome.change is not None else None
    db.commit()
    if outcome.policy_changed:
        state.policy.ensure_fresh()
    if not outcome.applied:
        return JSONResponse(status_code=202, content={"state": "pending", "change": change})
    return {
        "state": "applied",
        "version": outcome.policy_version,
        "added": outcome.added,
        "removed": outcome.removed,
        "change": change,
    }


@router.post(
    "/changes",
    summary="Propose a rules change (same as POST /rules)",
    responses={202: {"description": "Proposed: a different person must approve it"}},
)
def propose(body: RulesChange, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    return change_rules(body, caller, db, state)


@router.get("/changes", summary="Reviewed changes: yours, or all with the policy read right")
def list_changes(
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    state_: Annotated[list[ChangeState] | None, Query(alias="state")] = None,
    mine: bool = False,
    needs_review: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[ChangeOut]]:
    rows = changes.list_changes(
        db, state, caller, states=state_ or [], mine=mine, needs_review=needs_review, limit=limit
    )
    now = state.now()
    return {"changes": [change_out(db, c, now) for c in rows]}


@router.get("/changes/{change_id}", response_model=ChangeOut, summary="One change and its history")
def show_change(change_id: str, caller: CurrentCaller, db: DbSession, state: State) -> ChangeOut:
    change, _, history = changes.show(db, state, caller, change_id)
    return change_out(db, change, state.now(), with_reviews=True, history=history)


def _decide(
    change_id: str, decision: str, comment: str, caller: Any, db: DbSession, state: State
) -> ChangeOut:
    outcome = changes.review(db, state, caller, change_id, decision, comment)
    return _finish(db, state, outcome)


def _finish(db: DbSession, state: State, outcome: ChangeOutcome) -> ChangeOut:
    assert outcome.change is not None
    out = change_out(db, outcome.change, state.now(), with_reviews=True)
    db.commit()
    if outcome.policy_changed:
        state.policy.ensure_fresh()
    return out


@router.post("/changes/{change_id}/approve", response_model=ChangeOut, summary="Approve")
def approve_change(
    change_id: str, body: ChangeDecision, caller: CurrentCaller, db: DbSession, state: State
) -> ChangeOut:
    """The quorum's last approval applies the change. Never the proposer, a beneficiary, a
    principal either owns or created, a service account or a job."""
    return _decide(change_id, "approve", body.comment, caller, db, state)


@router.post("/changes/{change_id}/deny", response_model=ChangeOut, summary="Deny")
def deny_change(
    change_id: str, body: ChangeDecision, caller: CurrentCaller, db: DbSession, state: State
) -> ChangeOut:
    return _decide(change_id, "deny", body.comment, caller, db, state)


@router.post("/changes/{change_id}/cancel", response_model=ChangeOut, summary="Withdraw")
def cancel_change(
    change_id: str, body: ChangeDecision, caller: CurrentCaller, db: DbSession, state: State
) -> ChangeOut:
    return _finish(db, state, changes.cancel(db, state, caller, change_id, body.comment))


@router.post(
    "/changes/{change_id}/sign-off", response_model=ChangeOut, summary="Sign off a break-glass"
)
def sign_off_change(
    change_id: str, body: ChangeDecision, caller: CurrentCaller, db: DbSession, state: State
) -> ChangeOut:
    return _finish(db, state, changes.sign_off(db, state, caller, change_id, body.comment))


def _domain(ptype: str, fields: tuple[str, ...]) -> str:
    return fields[2] if ptype == "g" else fields[1]
