"""Principals and tokens. Services never commit; the caller's unit of work does."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from warden.audit.keys import keys_for
from warden.db.generation import CacheAt, bump
from warden.db.sealed import check
from warden.errors import Conflict, NotFound, Unauthenticated, Unprocessable
from warden.identity.caller import JOB_TOKEN_PREFIX, TOKEN_PREFIX, Caller, hash_token, token_seal
from warden.identity.models import ApiToken, Principal, Tenant
from warden.identity.revocations import revocations_for
from warden.identity.row_seals import check_row_seals

if TYPE_CHECKING:
    from warden.config import Settings

NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# How precisely a token's last use is kept: at most one write per token per this interval.
LAST_USED_RESOLUTION = timedelta(hours=1)

log = logging.getLogger("warden.identity")
# A token with its principal and tenant, as `authenticate` reads (and caches) it.
TokenRow = tuple[Any, ...]

# Caller and the token helpers live in identity/caller.py (the sandbox's job tokens use them
# without importing this module); they stay importable from here.
__all__ = ["JOB_TOKEN_PREFIX", "TOKEN_PREFIX", "Caller", "hash_token"]


def check_name(value: str, what: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise Unprocessable(
            f"invalid {what} {value[:80]!r}: use 1-64 lowercase letters, digits, '_', '-' or '.',"
            " starting with a letter"
        )
    return value


# A job acts, and is audited and traced in lineage, as `job-<sandbox id>`
# (sandbox/models.py): a principal with such a name would read as one.
JOB_ACTOR_PREFIX = "job-"


# Warden itself, its access workflow and an unauthenticated caller are audited under these
# actor names: a principal with one would read, by name, as the system or as no one.
SYSTEM_ACTOR_NAMES = frozenset({"warden", "system", "anonymous"})


def check_principal_name(value: str) -> str:
    check_name(value, "principal name")
    if value in SYSTEM_ACTOR_NAMES:
        raise Unprocessable(f"invalid principal name {value!r}: the audit log's system actors'")
    if value.startswith(JOB_ACTOR_PREFIX):
        raise Unprocessable(
            f"invalid principal name {value[:80]!r}: names starting with {JOB_ACTOR_PREFIX!r}"
            " are jobs'"
        )
    return value


def get_or_create_tenant(db: Session, name: str) -> Tenant:
    check_name(name, "tenant name")
    tenant = db.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        db.add(tenant)
        db.flush()
    return tenant


def get_tenant(db: Session, name: str) -> Tenant:
    tenant = db.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}")
    return check(db, tenant)


def create_principal(
    db: Session,
    name: str,
    kind: str,
    tenant: Tenant,
    *,
    owner: Principal | None = None,
    created_by: Principal | None = None,
) -> Principal:
    """A new principal; `created_by` None only at bootstrap. A service account has an
    owning person (its creator unless named), who answers for it and never approves for it."""
    check_principal_name(name)
    if kind not in ("person", "service"):
        raise Unprocessable(f"principal kind must be 'person' or 'service', not {kind!r}")
    if db.scalar(select(Principal).where(Principal.name == name)) is not None:
        raise Conflict(f"a principal named {name!r} already exists")
    if kind == "service":
        owner = owner or created_by
        if owner is None or owner.kind != "person" or owner.tenant_id != tenant.id:
            raise Unprocessable(
                f"service account {name!r} needs an owning person of tenant {tenant.name!r}"
            )
    elif owner is not None:
        raise Unprocessable("only service accounts have an owner; a person answers for themself")
    principal = Principal(
        name=name,
        kind=kind,
        tenant_id=tenant.id,
        owner_id=owner.id if owner else None,
        created_by_id=created_by.id if created_by else None,
    )
    db.add(principal)
    db.flush()
    return principal


def get_principal(db: Session, name: str, tenant_id: str | None = None) -> Principal:
    query = select(Principal).where(Principal.name == name)
    if tenant_id is not None:
        query = query.where(Principal.tenant_id == tenant_id)
    principal = db.scalar(query)
    if principal is None:
        raise NotFound(f"no principal named {name!r}")
    return check(db, principal)


def list_principals(db: Session, tenant_id: str) -> list[Principal]:
    query = select(Principal).where(Principal.tenant_id == tenant_id).order_by(Principal.name)
    return list(db.scalars(query))


def token_lifetime(settings: Settings, kind: str, ttl: timedelta | None) -> timedelta:
    """The lifetime a new token gets: the kind's default, or the asked one up to its maximum."""
    # Anything that is not a person gets the (shorter) service lifetimes.
    person = kind == "person"
    s = settings
    default_days = s.token_person_default_days if person else s.token_service_default_days
    max_days = s.token_person_max_days if person else s.token_service_max_days
    if ttl is None:
        return timedelta(days=default_days)
    if ttl <= timedelta(0):
        raise Unprocessable("a token's lifetime must be positive")
    if ttl > timedelta(days=max_days):
        raise Unprocessable(
            f"a {kind} token lives at most {max_days} days (WARDEN_TOKEN_{kind.upper()}_MAX_DAYS);"
            f" asked for {ttl.days} days"
        )
    return ttl


def live_token_filter(now: datetime) -> list[ColumnElement[bool]]:
    return [
        ApiToken.revoked_at.is_(None),
        ApiToken.expires_at.is_not(None),
        ApiToken.expires_at > now,
    ]


def lock_principal(db: Session, principal: Principal) -> None:
    """Take the principal's row lock (PostgreSQL) or the write lock (SQLite) before counting,
    so two concurrent requests cannot both pass a count-based check."""
    db.execute(
        update(Principal)
        .where(Principal.id == principal.id)
        .values(disabled=Principal.disabled)
        .execution_options(synchronize_session=False)
    )


def issue_token(
    db: Session, principal: Principal, label: str = "", *, settings: Settings | None = None
) -> str:
    """Create a token with the kind's default lifetime and return its secret; only the hash
    is kept (see `mint_token`). For bootstrap and tooling: nobody else issues it."""
    return mint_token(db, principal, label, settings=settings)[0]


def mint_token(
    db: Session,
    principal: Principal,
    label: str = "",
    ttl: timedelta | None = None,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    issued_by: Principal | None = None,
    pending_change_id: str | None = None,
) -> tuple[str, ApiToken]:
    """Create a token: its secret (shown once) and row. Every token expires: no ttl means the
    kind's default lifetime; above the kind's maximum, or beyond the principal's cap of live
    tokens, is refused. `issued_by` None only at bootstrap: a token someone else mints never
    approves what its issuer asked for."""
    if settings is None:
        from warden.config import get_settings

        settings = get_settings()
    now = now or datetime.now(UTC)
    lifetime = token_lifetime(settings, principal.kind, ttl)
    lock_principal(db, principal)
    live = db.scalar(
        select(func.count())
        .select_from(ApiToken)
        .where(ApiToken.principal_id == principal.id, *live_token_filter(now))
    )
    cap = settings.token_max_live_per_principal
    if (live or 0) >= cap:
        raise Conflict(
            f"{principal.name} already holds {live} live tokens (the most is {cap},"
            " WARDEN_TOKEN_MAX_LIVE_PER_PRINCIPAL); revoke one first"
            f" (`warden principals revoke-token {principal.name} TOKEN_ID`)"
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        principal_id=principal.id,
        token_hash=hash_token(secret, db.get_bind()),
        label=label,
        created_at=now,
        expires_at=now + lifetime,
        issued_by_id=issued_by.id if issued_by else None,
        pending_change_id=pending_change_id,
    )
    db.add(token)
    db.flush()
    seal_token(db, token)
    return secret, token


def seal_of(db: Session, token: ApiToken) -> str:
    """The seal `token`'s row should carry (identity.caller.token_seal)."""
    return token_seal(
        keys_for(db.get_bind()),
        token.id,
        token.principal_id,
        token.token_hash,
        token.expires_at,
        token.issued_by_id,
        token.pending_change_id,
        token.revoked_at is not None,
    )


def seal_token(db: Session, token: ApiToken) -> None:
    """(Re)seal a token row after Warden changed what it says (issue, hold, release, revoke)."""
    token.seal = seal_of(db, token)
    db.flush()


def list_tokens(db: Session, principal: Principal) -> list[ApiToken]:
    query = (
        select(ApiToken)
        .where(ApiToken.principal_id == principal.id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id)
    )
    return list(db.scalars(query))


def token_state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.pending_change_id is not None:
        return "pending"
    if token.expires_at is None or _aware(token.expires_at) <= now:
        return "expired"
    return "live"


def revoke_token(
    db: Session, principal: Principal, token_id: str, by: str, now: datetime
) -> tuple[ApiToken, bool]:
    """Revoke one of the principal's tokens; (token, whether this call revoked it)."""
    token = db.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.principal_id == principal.id)
    )
    if token is None:
        raise NotFound(f"{principal.name} has no token {token_id[:40]!r}")
    if token.revoked_at is not None:
        return token, False
    # Conditional, so two concurrent revocations record one revoker.
    result = db.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
        .execution_options(synchronize_session=False)
    )
    db.refresh(token)
    seal_token(db, token)
    bump(db)
    return token, bool(getattr(result, "rowcount", 0))


def set_disabled(
    db: Session,
    principal: Principal,
    disabled: bool,
    *,
    can_manage: Callable[[str], bool],
) -> bool:
    """Disable or enable a principal; returns whether anything changed. Refuses to disable the
    last enabled person of the tenant who may still manage principals (`can_manage(name)`),
    which would leave nobody able to enable anyone again."""
    # One tenant's disables run one at a time, so two admins cannot disable each other at once.
    db.execute(
        update(Tenant)
        .where(Tenant.id == principal.tenant_id)
        .values(name=Tenant.name)
        .execution_options(synchronize_session=False)
    )
    db.refresh(principal)
    if principal.disabled == disabled:
        return False
    if disabled and principal.kind == "person" and can_manage(principal.name):
        others = db.scalars(
            select(Principal.name).where(
                Principal.tenant_id == principal.tenant_id,
                Principal.kind == "person",
                Principal.disabled.is_(False),
                Principal.id != principal.id,
            )
        )
        if not any(can_manage(name) for name in others):
            raise Conflict(
                f"{principal.name} is the last enabled admin of the tenant; make someone else an"
                " admin first, or nobody could enable anyone again"
            )
    principal.disabled = disabled
    db.flush()
    bump(db)
    return True


def authenticate(
    db: Session,
    secret: str,
    now: datetime | None = None,
    *,
    cached: CacheAt[str, TokenRow] | None = None,
    socket_of: str | None = None,
) -> Caller:
    """`cached`: the process's token cache at the request's change generation (see
    db/generation.py); every check below is still made on each use. `socket_of`: the sandbox
    whose gateway socket the request came through (`SOCKET_SCOPE`), None over TCP."""
    if secret.startswith(JOB_TOKEN_PREFIX) and len(secret) <= 200:
        if socket_of is None:
            # A job token speaks only on its own sandbox's socket: over TCP it is any bad
            # token (not even looked up), so a printed one reads nothing and says nothing.
            raise Unauthenticated("invalid token")
        from warden.sandbox.tokens import authenticate_job_token  # the sandbox domain owns them

        return authenticate_job_token(db, secret, now or datetime.now(UTC), socket_of)
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise Unauthenticated("invalid token")
    digest = hash_token(secret, db.get_bind())
    if cached is None:
        return _check(
            db, _fresh_token_row(db, ApiToken.token_hash == digest), now, presented=digest
        )
    # The statement is built only on a miss: a warm read pays no SQL expression for it.
    row = cached.get(digest, lambda: _fresh_token_row(db, ApiToken.token_hash == digest))
    return _check(db, row, now, cached=True, presented=digest)


def authenticate_token_id(db: Session, token_id: str, now: datetime | None = None) -> Caller:
    """The caller of an API token known by its id (a console session holds one), with every
    check `authenticate` makes: revoked, expired or disabled is refused here too."""
    return _authenticate_where(db, ApiToken.id == token_id, now)


def _authenticate_where(db: Session, which: ColumnElement[bool], now: datetime | None) -> Caller:
    return _check(db, _fresh_token_row(db, which), now)


def _fresh_token_row(db: Session, which: ColumnElement[bool]) -> TokenRow:
    """The token's row, read after the log's newest revocations (identity/revocations.py)."""
    revocations_for(db).refresh(db)
    return _token_row(db, which)


def _token_row(db: Session, which: ColumnElement[bool]) -> TokenRow:
    # Hot path (every request): one core statement, no ORM objects. Cached only by change
    # generation, so a revocation or a disable committed by any process (or written into the
    # database by hand) is refused on the very next request everywhere.
    row = (
        db.connection()
        .execute(
            select(
                ApiToken.id,
                ApiToken.revoked_at,
                ApiToken.expires_at,
                ApiToken.last_used_at,
                ApiToken.issued_by_id,
                ApiToken.pending_change_id,
                ApiToken.token_hash,
                ApiToken.seal,
                *(getattr(Principal, f) for f in Principal.__sealed__),
                Principal.seal,
                *(getattr(Tenant, f) for f in Tenant.__sealed__),
                Tenant.seal,
            )
            .join(Principal, Principal.id == ApiToken.principal_id)
            .join(Tenant, Tenant.id == Principal.tenant_id)
            .where(which)
        )
        .first()
    )
    if row is None:
        raise Unauthenticated("invalid token")
    return tuple(row)


def _check(
    db: Session,
    row: TokenRow,
    now: datetime | None,
    *,
    cached: bool = False,
    presented: str | None = None,
) -> Caller:
    token_id, revoked_at, expires_at, last_used_at, issued_by_id, pending = row[:6]
    # the presented token's row, whatever the database's `=` meant (red team 21)
    if presented is not None and not hmac.compare_digest(row[6] or "", presented):
        raise Unauthenticated("invalid token")
    split = 8 + len(Principal.__sealed__)  # the principal's sealed fields, then its seal
    principal, tenant_row = row[8:split], row[split + 1 : -1]
    who = dict(zip(Principal.__sealed__, principal, strict=True))
    principal_id, name, kind, disabled = who["id"], who["name"], who["kind"], who["disabled"]
    tenant = dict(zip(Tenant.__sealed__, tenant_row, strict=True))["name"]
    now = now or datetime.now(UTC)
    if revoked_at is not None:
        raise Unauthenticated("token revoked")
    # A token without an expiry is treated as expired: every token is issued with one.
    if expires_at is None or _aware(expires_at) <= now:
        raise Unauthenticated("token expired")
    if disabled:
        raise Unauthenticated("principal disabled")
    if pending is not None:
        raise Unauthenticated(
            f"this token was issued for {name} by someone else and works once a second person"
            f" approves change {pending} (`warden policy changes approve {pending}`)"
        )
    # last: whatever refuses a row anyway says why; a row that would work must be Warden's
    check_row_seals(db, row, remember=cached)
    # what the log says is over stays over, whatever the row says now (a row written back)
    over = revocations_for(db).held(db)
    if token_id in over.tokens:
        raise Unauthenticated("token revoked")
    if name in over.disabled:
        raise Unauthenticated("principal disabled")
    _touch(db, token_id, last_used_at, now)
    return Caller(
        name=name,
        kind=kind,
        tenant=tenant,
        principal_id=principal_id,
        token_issuer_id=issued_by_id,
    )


def _touch(db: Session, token_id: str, last: datetime | None, now: datetime) -> None:
    """Note when a token was last used, to the hour, in a transaction of its own (the request's
    own transaction may run long, and SQLite would hold its write lock all that time)."""
    if last is not None and now - _aware(last) < LAST_USED_RESOLUTION:
        return
    try:
        with Session(bind=db.get_bind()) as own:
            own.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == token_id,
                    or_(
                        ApiToken.last_used_at.is_(None),
                        ApiToken.last_used_at < now - LAST_USED_RESOLUTION,
                    ),
                )
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
            own.commit()
    except SQLAlchemyError:
        # Bookkeeping only: the decision above stands, and the next request tries again.
        log.warning("could not note the use of token %s", token_id, exc_info=True)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_installation_tenant(db: Session, name: str) -> bool:
    """The tenant `warden init` made, whose admins administer the platform."""
    tenant = db.scalar(select(Tenant).where(Tenant.name == name))
    return tenant is not None and check(db, tenant).installation
