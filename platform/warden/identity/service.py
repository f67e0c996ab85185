"""Principals and tokens. Services never commit; the caller's unit of work does."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.errors import Conflict, NotFound, Unauthenticated, Unprocessable
from warden.identity.models import ApiToken, Principal, Tenant

NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "wdn_"  # noqa: S105 - a prefix, not a secret
JOB_TOKEN_PREFIX = "wjt_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class Caller:
    """Who is calling: resolved from a token on every request."""

    name: str
    kind: str  # person | service | job
    tenant: str
    principal_id: str
    on_behalf_of: str | None = None
    # A job token is bound to one job, one segment, its datasets and its purpose.
    job_id: str | None = None
    segment: str | None = None
    scope_datasets: tuple[str, ...] | None = None
    scope_purpose: str | None = None
    # Who issued the API token in use (None: the bootstrap, or not an API token).
    token_issuer_id: str | None = None


def check_name(value: str, what: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise Unprocessable(
            f"invalid {what} {value[:80]!r}: use 1-64 lowercase letters, digits, '_', '-' or '.',"
            " starting with a letter"
        )
    return value


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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
    return tenant


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
    check_name(name, "principal name")
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
    return principal


def list_principals(db: Session, tenant_id: str) -> list[Principal]:
    query = select(Principal).where(Principal.tenant_id == tenant_id).order_by(Principal.name)
    return list(db.scalars(query))


def issue_token(
    db: Session,
    principal: Principal,
    label: str = "",
    ttl: timedelta | None = None,
    *,
    issued_by: Principal | None = None,
) -> str:
    """Create a token and return its secret; only the hash is kept. `issued_by` None only
    at bootstrap."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + ttl if ttl else None
    db.add(
        ApiToken(
            principal_id=principal.id,
            token_hash=hash_token(secret),
            label=label,
            expires_at=expires,
            issued_by_id=issued_by.id if issued_by else None,
        )
    )
    db.flush()
    return secret


def authenticate(db: Session, secret: str, now: datetime | None = None) -> Caller:
    if secret.startswith(JOB_TOKEN_PREFIX) and len(secret) <= 200:
        from warden.sandbox.tokens import authenticate_job_token  # the sandbox domain owns them

        return authenticate_job_token(db, secret, now or datetime.now(UTC))
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise Unauthenticated("invalid token")
    row = db.execute(
        select(ApiToken, Principal, Tenant)
        .join(Principal, Principal.id == ApiToken.principal_id)
        .join(Tenant, Tenant.id == Principal.tenant_id)
        .where(ApiToken.token_hash == hash_token(secret))
    ).first()
    if row is None:
        raise Unauthenticated("invalid token")
    token, principal, tenant = row
    now = now or datetime.now(UTC)
    if token.revoked_at is not None:
        raise Unauthenticated("token revoked")
    if token.expires_at is not None and _aware(token.expires_at) <= now:
        raise Unauthenticated("token expired")
    if principal.disabled:
        raise Unauthenticated("principal disabled")
    return Caller(
        name=principal.name,
        kind=principal.kind,
        tenant=tenant.name,
        principal_id=principal.id,
        token_issuer_id=token.issued_by_id,
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
