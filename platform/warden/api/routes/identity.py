"""/v1/me and /v1/principals: who is calling, and managing people and service accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from warden.access import changes
from warden.api.deps import CurrentCaller, DbSession, State
from warden.errors import Conflict, Forbidden
from warden.identity.models import Principal
from warden.identity.schemas import (
    PrincipalChangeOut,
    PrincipalCreate,
    PrincipalOut,
    RoleChange,
    TokenCreate,
    TokenOut,
)
from warden.identity.service import (
    Caller,
    check_name,
    create_principal,
    get_principal,
    get_tenant,
    issue_token,
    list_principals,
)
from warden.policy.authz import require
from warden.policy.store import CasbinRule

router = APIRouter(prefix="/v1", tags=["identity"])


def roles_of(db: DbSession, name: str, tenant: str) -> list[str]:
    query = select(CasbinRule.v1).where(
        CasbinRule.ptype == "g", CasbinRule.v0 == name, CasbinRule.v2 == tenant
    )
    return sorted(r for r in db.scalars(query) if r)


def _role(role: str) -> str:
    bare = role.removeprefix("role:")
    check_name(bare, "role name")
    return f"role:{bare}"


@router.get(
    "/me",
    response_model=PrincipalOut,
    response_model_exclude_none=True,
    summary="The calling principal",
)
def me(caller: CurrentCaller, db: DbSession) -> PrincipalOut:
    return PrincipalOut(
        name=caller.name,
        kind=caller.kind,
        tenant=caller.tenant,
        roles=roles_of(db, caller.name, caller.tenant),
    )


def _out(db: DbSession, p: Principal, tenant: str, names: dict[str, str]) -> PrincipalOut:
    return PrincipalOut(
        name=p.name,
        kind=p.kind,
        tenant=tenant,
        disabled=p.disabled,
        roles=roles_of(db, p.name, tenant),
        owner=names.get(p.owner_id) if p.owner_id else None,
        created_by=names.get(p.created_by_id) if p.created_by_id else None,
    )


@router.get("/principals", summary="Principals of the caller's tenant")
def principals(caller: CurrentCaller, db: DbSession, state: State) -> dict[str, list[PrincipalOut]]:
    require(state, caller, "sys:principals", "read")
    tenant = get_tenant(db, caller.tenant)
    everyone = list_principals(db, tenant.id)
    names = {p.id: p.name for p in everyone}
    return {"principals": [_out(db, p, caller.tenant, names) for p in everyone]}


@router.post(
    "/principals",
    status_code=201,
    response_model=PrincipalChangeOut,
    responses={202: {"description": "Created; its roles are proposed for review"}},
)
def add_principal(body: PrincipalCreate, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    """Create a person or service account in the caller's tenant (a service account has an
    owning person: `owner`, else its creator). Roles widen access, so they are proposed as a
    reviewed change (202) and take effect once a different person approves them."""
    require(state, caller, "sys:principals", "manage")
    roles = [_role(r) for r in body.roles]
    tenant = get_tenant(db, caller.tenant)
    check_name(body.name, "principal name")
    if db.scalar(select(CasbinRule.id).where(CasbinRule.v0 == body.name).limit(1)) is not None:
        raise Conflict(
            f"rules already name {body.name!r}; a new principal would inherit them unreviewed."
            " Remove those rules first, or choose another name"
        )
    creator = db.get(Principal, caller.principal_id)
    owner = get_principal(db, body.owner, tenant.id) if body.owner else None
    principal = create_principal(db, body.name, body.kind, tenant, owner=owner, created_by=creator)
    names = {p.id: p.name for p in (creator, owner) if p is not None}
    out = PrincipalChangeOut(**_out(db, principal, caller.tenant, names).model_dump())
    if not roles:
        db.commit()
        return out
    links = [("g", (principal.name, r, caller.tenant)) for r in roles]
    outcome = changes.change_rules(
        db,
        state,
        caller,
        add=links,
        remove=(),
        reason=f"create principal {principal.name} with {', '.join(roles)}",
        right=changes.PRINCIPALS_OBJECT,
    )
    return _role_answer(db, state, principal, out, outcome, roles)


def _role_answer(
    db: DbSession,
    state: State,
    principal: Principal,
    out: PrincipalChangeOut,
    outcome: changes.ChangeOutcome,
    pending: list[str],
) -> Any:
    """Commit; 200/201 with the roles in force, or 202 with the roles awaiting review."""
    db.commit()
    if outcome.policy_changed:
        state.policy.ensure_fresh()
    out.roles = roles_of(db, principal.name, out.tenant)
    if outcome.applied:
        return out
    assert outcome.change is not None
    out.pending_roles = pending
    out.change_id = outcome.change.id
    return JSONResponse(status_code=202, content=out.model_dump())


@router.post("/principals/{name}/tokens", status_code=201, response_model=TokenOut)
def add_token(
    name: str, body: TokenCreate, caller: CurrentCaller, db: DbSession, state: State
) -> TokenOut:
    """Issue an API token (shown once; only its hash is kept). Yourself, or with manage."""
    if name != caller.name:
        require(state, caller, "sys:principals", "manage")
    principal = get_principal(db, name, get_tenant(db, caller.tenant).id)
    ttl = timedelta(days=body.ttl_days) if body.ttl_days else None
    issuer = db.get(Principal, caller.principal_id)
    secret = issue_token(db, principal, label=body.label, ttl=ttl, issued_by=issuer)
    expires = (datetime.now(UTC) + ttl).isoformat() if ttl else None
    return TokenOut(token=secret, principal=principal.name, expires_at=expires)


@router.post(
    "/principals/{name}/roles",
    response_model=PrincipalChangeOut,
    responses={202: {"description": "Proposed: a different person must approve it"}},
)
def grant_role(
    name: str, body: RoleChange, caller: CurrentCaller, db: DbSession, state: State
) -> Any:
    """Giving a role widens access: it is proposed (202) and applies once approved."""
    return _change_role(name, body.role, caller, db, state, add=True)


@router.delete(
    "/principals/{name}/roles/{role}",
    response_model=PrincipalChangeOut,
    responses={202: {"description": "Proposed: the role lifts a deny or row filter"}},
)
def remove_role(name: str, role: str, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    """Taking a role away applies at once, unless the role restricts (a deny, a row filter)."""
    return _change_role(name, role, caller, db, state, add=False)


def _change_role(
    name: str, role: str, caller: Caller, db: DbSession, state: State, *, add: bool
) -> Any:
    require(state, caller, "sys:principals", "manage")
    if name == caller.name:
        raise Forbidden("changing your own roles needs another admin")
    principal: Principal = get_principal(db, name, get_tenant(db, caller.tenant).id)
    link = [("g", (principal.name, _role(role), caller.tenant))]
    verb = "grant" if add else "remove"
    outcome = changes.change_rules(
        db,
        state,
        caller,
        add=link if add else (),
        remove=() if add else link,
        reason=f"{verb} {_role(role)} for {principal.name}",
        right=changes.PRINCIPALS_OBJECT,
    )
    out = PrincipalChangeOut(
        name=principal.name, kind=principal.kind, tenant=caller.tenant, roles=[]
    )
    return _role_answer(db, state, principal, out, outcome, [_role(role)] if add else [])
