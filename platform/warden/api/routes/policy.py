"""/v1/policy: explain decisions, list and change rules (every change audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from warden.api.deps import CurrentCaller, DbSession, State
from warden.catalog.service import load_view
from warden.errors import Forbidden, Unprocessable
from warden.policy.authz import require
from warden.policy.changes import apply_change
from warden.policy.reads import require_visible
from warden.policy.rules import Rule, format_rule, rule_problems, split_line
from warden.policy.store import load_rules

router = APIRouter(prefix="/v1/policy", tags=["policy"])


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(max_length=64)
    dataset: str = Field(max_length=64)
    purpose: str = Field(max_length=32)
    columns: list[str] | None = Field(default=None, max_length=256)


class RuleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, max_length=10_000)
    remove: list[str] = Field(default_factory=list, max_length=10_000)
    reason: str = Field(default="", max_length=500)


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
    decision = snapshot.decide_read(
        body.subject, caller.tenant, view.name, columns, body.purpose, state.now()
    )
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
        "row_filters": [
            {"column": f.column, "op": f.op, "value": f.value, "rule": format_rule("p2", f.rule)}
            for f in decision.row_filters
        ],
    }


@router.get("/rules", summary="Rules of the caller's tenant, in policy order")
def rules(caller: CurrentCaller, db: DbSession, state: State) -> dict[str, Any]:
    require(state, caller, "sys:policy", "read")
    version, all_rules = load_rules(db)
    mine = [format_rule(p, f) for p, f in all_rules if _domain(p, f) == caller.tenant]
    return {"version": version, "rules": mine}


@router.post("/rules", summary="Add and remove rules; lint first, all or nothing")
def change_rules(
    body: RuleChange, caller: CurrentCaller, db: DbSession, state: State
) -> dict[str, Any]:
    require(state, caller, "sys:policy", "manage")
    add = [_parse(line, caller.tenant) for line in body.add]
    remove = [_parse(line, caller.tenant) for line in body.remove]
    for rule in add + remove:
        _refuse_bypass(rule, caller.name)
    new_version = apply_change(db, caller, add=add, remove=remove, reason=body.reason)
    db.commit()
    state.policy.ensure_fresh()
    return {"version": new_version, "added": len(add), "removed": len(remove)}


def _refuse_bypass(rule: Rule, actor: str) -> None:
    """Rule editing is no way around reviews: no grants, and nothing for the editor."""
    ptype, fields = rule
    if ptype == "p" and (fields[7] or fields[8]):
        raise Forbidden("grants come only from reviewed access requests (/v1/access)")
    if ptype == "p" and fields[0] == actor or ptype == "g" and fields[0] == actor:
        raise Forbidden("a rule for yourself needs someone else: no self-granted rights")


def _domain(ptype: str, fields: tuple[str, ...]) -> str:
    return fields[2] if ptype == "g" else fields[1]


def _parse(line: str, tenant: str) -> Rule:
    tokens = split_line(line)
    if not tokens:
        raise Unprocessable(f"empty rule line {line[:80]!r}")
    ptype, fields = tokens[0], tuple(tokens[1:])
    if problems := rule_problems(ptype, fields):
        raise Unprocessable(f"rule {line[:120]!r}: {'; '.join(problems)}")
    if _domain(ptype, fields) != tenant:
        raise Unprocessable(f"rule {line[:120]!r} is for another tenant than {tenant!r}")
    return ptype, fields
