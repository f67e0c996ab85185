"""/v1/me and /v1/principals: who is calling, and managing people and service accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from warden.api.deps import CurrentCaller, DbSession, State
from warden.errors import Forbidden
from warden.identity.models import Principal
from warden.identity.schemas import (
    ROLE_PATTERN,
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
from warden.policy.changes import apply_change
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


@router.get("/me", response_model=PrincipalOut, summary="The calling principal")
def me(caller: CurrentCaller, db: DbSession) -> PrincipalOut:
    return PrincipalOut(
        name=caller.name,
        kind=caller.kind,
        tenant=caller.tenant,
        roles=roles_of(db, caller.name, caller.tenant),
    )


@router.get("/principals", summary="Principals of the caller's tenant")
def principals(caller: CurrentCaller, db: DbSession, state: State) -> dict[str, list[PrincipalOut]]:
    require(state, caller, "sys:principals", "read")
    tenant = get_tenant(db, caller.tenant)
    return {
        "principals": [
            PrincipalOut(
                name=p.name,
                kind=p.kind,
                tenant=caller.tenant,
                disabled=p.disabled,
                roles=roles_of(db, p.name, caller.tenant),
            )
            for p in list_principals(db, tenant.id)
        ]
    }


@router.post("/principals", status_code=201, response_model=PrincipalOut)
def add_principal(
    body: PrincipalCreate, caller: CurrentCaller, db: DbSession, state: State
) -> PrincipalOut:
    """Create a person or service account in the caller's tenant, with roles."""
    require(state, caller, "sys:principals", "manage")
    roles = [_role(r) for r in body.roles]
    principal = create_principal(db, body.name, body.kind, get_tenant(db, caller.tenant))
    if roles:
        links = [("g", (principal.name, r, caller.tenant)) for r in roles]
        apply_change(db, caller, add=links, reason=f"create principal {principal.name}")
    db.commit()
    state.policy.ensure_fresh()
    return PrincipalOut(name=principal.name, kind=principal.kind, tenant=caller.tenant, roles=roles)


@router.post("/principals/{name}/tokens", status_code=201, response_model=TokenOut)
def add_token(
    name: str, body: TokenCreate, caller: CurrentCaller, db: DbSession, state: State
) -> TokenOut:
    """Issue an API token (shown once; only its hash is kept). Yourself, or with manage."""
    if name != caller.name:
        require(state, caller, "sys:principals", "manage")
    principal = get_principal(db, name, get_tenant(db, caller.tenant).id)
    ttl = timedelta(days=body.ttl_days) if body.ttl_days else None
    secret = issue_token(db, principal, label=body.label, ttl=ttl)
    expires = (datetime.now(UTC) + ttl).isoformat() if ttl else None
    return TokenOut(token=secret, principal=principal.name, expires_at=expires)


@router.post("/principals/{name}/roles", response_model=PrincipalOut)
def grant_role(
    name: str, body: RoleChange, caller: CurrentCaller, db: DbSession, state: State
) -> PrincipalOut:
    return _change_role(name, body.role, caller, db, state, add=True)


@router.delete("/principals/{name}/roles/{role}", response_model=PrincipalOut)
def remove_role(
    name: str,
    role: Annotated[str, Path(json_schema_extra={"pattern": ROLE_PATTERN})],
    caller: CurrentCaller,
    db: DbSession,
    state: State,
) -> PrincipalOut:
    return _change_role(name, role, caller, db, state, add=False)


def _change_role(
    name: str, role: str, caller: Caller, db: DbSession, state: State, *, add: bool
) -> PrincipalOut:
    require(state, caller, "sys:principals", "manage")
    if name == caller.name:
        raise Forbidden("changing your own roles needs another admin")
    principal: Principal = get_principal(db, name, get_tenant(db, caller.tenant).id)
    link = [("g", (principal.name, _role(role), caller.tenant))]
    verb = "grant" if add else "remove"
    apply_change(
        db,
        caller,
        add=link if add else (),
        remove=() if add else link,
        reason=f"{verb} {_role(role)} for {principal.name}",
    )
    db.commit()
    state.policy.ensure_fresh()
    return PrincipalOut(
        name=principal.name,
        kind=principal.kind,
        tenant=caller.tenant,
        roles=roles_of(db, principal.name, caller.tenant),
    )
