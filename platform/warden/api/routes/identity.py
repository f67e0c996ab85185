"""/v1/me, /v1/principals and /v1/tenants: who is calling; people, service accounts and their
tokens; tenants, created by platform admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from warden.access import changes
from warden.api.deps import CurrentCaller, DbSession, State
from warden.audit.outcomes import by
from warden.audit.service import append
from warden.errors import Conflict, Forbidden
from warden.identity.bootstrap import create_tenant
from warden.identity.models import ApiToken, Principal, Tenant
from warden.identity.names import refuse_unless_free
from warden.identity.schemas import (
    ROLE_PATTERN,
    PrincipalChangeOut,
    PrincipalCreate,
    PrincipalOut,
    RoleChange,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TokenCreate,
    TokenInfo,
    TokenList,
    TokenOut,
)
from warden.identity.service import (
    Caller,
    check_name,
    check_principal_name,
    create_principal,
    get_principal,
    get_tenant,
    list_principals,
    list_tokens,
    mint_token,
    revoke_token,
    set_disabled,
    token_state,
)
from warden.policy.authz import require, require_platform_admin
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
    check_principal_name(body.name)
    # held in this tenant: said why; held in another: "not available", nothing of whose
    refuse_unless_free(db, state.sessions, caller, body.name)
    creator = db.get(Principal, caller.principal_id)
    owner = None
    if body.owner is not None:
        owner = get_principal(db, check_name(body.owner, "owner name"), tenant.id)
    principal = create_principal(db, body.name, body.kind, tenant, owner=owner, created_by=creator)
    # in the creating transaction: a principal never exists without its record
    _audit(db, caller, "principal.create", principal, kind=body.kind, owner=body.owner or "")
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


@router.post(
    "/principals/{name}/tokens",
    status_code=201,
    response_model=TokenOut,
    responses={202: {"model": TokenOut, "description": "Minted; works once approved"}},
)
def add_token(
    name: str, body: TokenCreate, caller: CurrentCaller, db: DbSession, state: State
) -> Any:
    """Issue an API token (shown once; only its hash is kept). Yourself, or with manage. Every
    token expires: the principal kind's default lifetime, or `ttl_days` up to its maximum.
    A token for anyone but yourself or a service account you own lets you act as them: it is
    a reviewed change (202 with `change_id`), refused until a different person approves."""
    principal = _own_or_managed(name, caller, db, state)
    now = state.now()
    ttl = timedelta(days=body.ttl_days) if body.ttl_days else None
    # Who minted it: a token someone else issued never approves what its issuer asked for.
    issuer = db.get(Principal, caller.principal_id)
    held = changes.needs_second_person(caller, principal)
    secret, token = mint_token(
        db,
        principal,
        label=body.label,
        ttl=ttl,
        settings=state.settings,
        now=now,
        issued_by=issuer,
        pending_change_id="pending" if held else None,  # replaced by the change's id below
    )
    change_id = None
    if held:
        proposed = changes.propose_token(db, state, caller, principal, token).change
        assert proposed is not None
        change_id = proposed.id
    assert token.expires_at is not None
    pending = {"pending_change": change_id} if change_id else {}
    _audit(
        db,
        caller,
        "token.issue",
        principal,
        token_id=token.id,
        label=body.label,
        expires_at=_iso(token.expires_at),
        **pending,
    )
    out = TokenOut(
        token=secret,
        id=token.id,
        principal=principal.name,
        expires_at=_iso(token.expires_at),
        change_id=change_id,
    )
    db.commit()  # the token, its audit event and any proposal, before the secret leaves
    return out if change_id is None else JSONResponse(status_code=202, content=out.model_dump())


@router.get("/principals/{name}/tokens", response_model=TokenList)
def tokens(name: str, caller: CurrentCaller, db: DbSession, state: State) -> TokenList:
    """A principal's tokens (never their secrets): your own, or your tenant's with manage."""
    principal = _own_or_managed(name, caller, db, state)
    now = state.now()
    return TokenList(
        principal=principal.name, tokens=[_token_info(t, now) for t in list_tokens(db, principal)]
    )


@router.post("/principals/{name}/tokens/{token_id}/revoke", response_model=TokenInfo)
def revoke(
    name: str, token_id: str, caller: CurrentCaller, db: DbSession, state: State
) -> TokenInfo:
    """Revoke a token: refused from the very next request, on every replica."""
    principal = _own_or_managed(name, caller, db, state)
    now = state.now()
    token, changed = revoke_token(db, principal, token_id, caller.name, now)
    if changed:
        _audit(db, caller, "token.revoke", principal, token_id=token.id, label=token.label)
    return _token_info(token, now)


@router.post("/principals/{name}/disable", response_model=PrincipalOut)
def disable(name: str, caller: CurrentCaller, db: DbSession, state: State) -> PrincipalOut:
    """Disable a principal: all its tokens, and the job tokens of jobs it launched, are refused
    from the next request. Refused for the tenant's last enabled admin."""
    return _set_disabled(name, True, caller, db, state)


@router.post("/principals/{name}/enable", response_model=PrincipalOut)
def enable(name: str, caller: CurrentCaller, db: DbSession, state: State) -> PrincipalOut:
    """Enable a disabled principal again; its unexpired, unrevoked tokens work again."""
    return _set_disabled(name, False, caller, db, state)


def _set_disabled(
    name: str, disabled: bool, caller: Caller, db: DbSession, state: State
) -> PrincipalOut:
    require(state, caller, "sys:principals", "manage")
    principal = get_principal(db, name, get_tenant(db, caller.tenant).id)
    snapshot = state.policy.ensure_fresh()
    now = state.now()
    changed = set_disabled(
        db,
        principal,
        disabled,
        can_manage=lambda who: snapshot.can(who, caller.tenant, "sys:principals", "manage", now),
    )
    if changed:
        _audit(db, caller, "principal.disable" if disabled else "principal.enable", principal)
    return PrincipalOut(
        name=principal.name,
        kind=principal.kind,
        tenant=caller.tenant,
        disabled=principal.disabled,
        roles=roles_of(db, principal.name, caller.tenant),
    )


def _own_or_managed(name: str, caller: Caller, db: DbSession, state: State) -> Principal:
    """The named principal of the caller's tenant: the caller itself, or any with manage.
    Jobs never touch tokens; another tenant's principal is a 404 like a missing one."""
    if caller.kind == "job":
        raise Forbidden("jobs may not manage tokens")
    if name != caller.name:
        require(state, caller, "sys:principals", "manage")
    return get_principal(db, name, get_tenant(db, caller.tenant).id)


def _token_info(token: ApiToken, now: datetime) -> TokenInfo:
    return TokenInfo(
        id=token.id,
        label=token.label,
        created_at=_iso(token.created_at),
        expires_at=_iso(token.expires_at) if token.expires_at else None,
        revoked_at=_iso(token.revoked_at) if token.revoked_at else None,
        revoked_by=token.revoked_by,
        last_used_at=_iso(token.last_used_at) if token.last_used_at else None,
        state=token_state(token, now),  # type: ignore[arg-type]
    )


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _audit(
    db: DbSession, caller: Caller, action: str, principal: Principal, **details: str
) -> None:
    append(db, by(caller, action, "allow", details={"principal": principal.name, **details}))


# --- tenants: created by platform admins ------------------------------------------------------


@router.post("/tenants", status_code=201, response_model=TenantCreated, tags=["tenants"])
def add_tenant(
    body: TenantCreate, caller: CurrentCaller, db: DbSession, state: State
) -> TenantCreated:
    """Create a tenant with its first admin (a person), a second founding admin when `founder`
    names one (without one, nobody in the tenant can approve a widening change), and the seed
    role rules; their tokens are shown once. Platform admins only."""
    require_platform_admin(db, state, caller)
    try:
        done = create_tenant(db, state.settings, caller, body.name, body.admin, body.founder)
        db.commit()
    except IntegrityError:  # a concurrent create took the tenant's or an admin's name
        names = " or ".join(repr(n) for n in (body.admin, body.founder) if n)
        raise Conflict(f"tenant {body.name!r} or principal {names} already exists") from None
    state.policy.ensure_fresh()
    return TenantCreated(
        tenant=done.tenant,
        admin=done.admin,
        token=done.token,
        policy_version=done.policy_version,
        founders=done.founders,
    )


@router.get("/tenants", tags=["tenants"])
def tenants(caller: CurrentCaller, db: DbSession, state: State) -> dict[str, list[TenantOut]]:
    """Every tenant of the installation. Platform admins only."""
    require_platform_admin(db, state, caller)
    return {
        "tenants": [
            TenantOut(name=t.name, installation=t.installation, created_at=_iso(t.created_at))
            for t in db.scalars(select(Tenant).order_by(Tenant.name))
        ]
    }


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
def remove_role(
    name: str,
    role: Annotated[str, Path(json_schema_extra={"pattern": ROLE_PATTERN})],
    caller: CurrentCaller,
    db: DbSession,
    state: State,
) -> Any:
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
