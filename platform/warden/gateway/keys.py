"""Per-tenant, versioned mask keys, derived from the deployment's master key.

A pseudonym must be consistent for one entity within one tenant (so masked columns still
join across that tenant's datasets) and unrelated across tenants, entities and key versions
(so a dictionary built in one place unmasks nothing elsewhere). Each (tenant, version,
entity) key is derived from the master key with HMAC-SHA256 (an HKDF-Expand step with a
fixed, labelled info string); the derived secret is never stored. The database holds only
the versions and the time each takes effect: a rotation re-keys every read from then on.
Version 1 is implicit: a tenant without rotations reads with version 1.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.catalog.models import MaskKeyVersion
from warden.db.generation import CacheAt
from warden.errors import Unavailable, Unprocessable
from warden.identity.revocations import revocations_for

FIRST_VERSION = 1
_LABEL = b"warden mask key v1"


@functools.lru_cache(maxsize=1024)  # pure: each read would otherwise derive its keys again
def derive(master: bytes, tenant_id: str, version: int, entity: str | None) -> bytes:
    """The key that masks `entity` identifiers of a tenant under one key version."""
    if not master:
        raise ValueError("the master mask key is empty")
    info = b"\x00".join(
        (_LABEL, tenant_id.encode(), str(version).encode(), (entity or "").encode())
    )
    prk = hmac.new(b"warden-mask-salt", master, hashlib.sha256).digest()  # HKDF-Extract
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # HKDF-Expand, one block


@dataclass(frozen=True)
class TenantMask:
    """What a read needs to mask identifiers: the tenant, its current key version, and a way
    to derive the key for one entity (the master key itself never leaves this object)."""

    tenant_id: str
    version: int
    master: bytes = field(repr=False)

    def key(self, entity: str | None) -> bytes:
        return derive(self.master, self.tenant_id, self.version, entity)


def _aware(at: datetime) -> datetime:
    """UTC, so SQLite (which stores no offset) and PostgreSQL compare the same instants."""
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)


def schedule(db: Session, tenant_id: str) -> tuple[tuple[int, datetime], ...]:
    """Every key version of the tenant with the time it takes effect, newest first."""
    rows = db.connection().execute(
        select(MaskKeyVersion.version, MaskKeyVersion.effective_from)
        .where(MaskKeyVersion.tenant_id == tenant_id)
        .order_by(MaskKeyVersion.version.desc())
    )
    return tuple((int(version), _aware(start)) for version, start in rows)


def version_at(versions: tuple[tuple[int, datetime], ...], now: datetime) -> int:
    """The version in effect at `now` of a `schedule` (the newest that has started)."""
    now = _aware(now)
    return next((v for v, start in versions if start <= now), FIRST_VERSION)


def tenant_mask(
    db: Session,
    master: bytes,
    tenant_id: str,
    now: datetime,
    *,
    tenant: str,
    cached: CacheAt[str, tuple[tuple[int, datetime], ...]] | None = None,
) -> TenantMask:
    """`cached`: the process's schedule cache at the request's change generation; the
    version in effect is still chosen at `now`, so a rotation's start holds to the instant."""
    if cached is None:
        return TenantMask(
            tenant_id, version_at(logged_schedule(db, tenant, tenant_id), now), master
        )
    versions = cached.get(tenant_id, lambda: logged_schedule(db, tenant, tenant_id))
    return TenantMask(tenant_id, version_at(versions, now), master)


def logged_schedule(db: Session, tenant: str, tenant_id: str) -> tuple[tuple[int, datetime], ...]:
    """The tenant's schedule, held to the rotations the audit log recorded: a version deleted
    in SQL, or moved later, would bring back the pseudonyms the rotation retired (the reason
    to rotate is that they leaked). Unavailable (503) until an operator looks."""
    versions = schedule(db, tenant_id)
    stored = dict(versions)
    for version, start in revocations_for(db).refresh(db).rotations.get(tenant, {}).items():
        at = stored.get(version)
        if at is None or at > _aware(datetime.fromisoformat(start)):
            raise Unavailable(
                f"tenant {tenant!r}: mask key version {version}, which the audit log records"
                " from " + start + ", is missing or moved in the database: written past Warden"
            )
    return versions


def rotate(
    db: Session,
    tenant_id: str,
    *,
    effective_from: datetime,
    actor: str,
    reason: str = "",
) -> MaskKeyVersion:
    """Add the tenant's next key version, used by reads from `effective_from` on.

    Versions only move forward: the new one may not start before the latest one does, so a
    rotation can never put an older key back in force.
    """
    effective_from = _aware(effective_from)
    latest = db.execute(
        select(MaskKeyVersion.version, MaskKeyVersion.effective_from)
        .where(MaskKeyVersion.tenant_id == tenant_id)
        .order_by(MaskKeyVersion.version.desc())
        .limit(1)
    ).first()
    if latest is not None and effective_from < _aware(latest[1]):
        raise Unprocessable(
            f"key version {latest[0]} takes effect at {_aware(latest[1]).isoformat()}; "
            "a rotation cannot start before it"
        )
    version = (latest[0] if latest is not None else FIRST_VERSION) + 1
    row = MaskKeyVersion(
        tenant_id=tenant_id,
        version=version,
        effective_from=effective_from,
        created_by=actor[:64],
        reason=reason,
    )
    db.add(row)
    db.flush()
    return row


def versions(db: Session, tenant_id: str) -> list[MaskKeyVersion]:
    return list(
        db.scalars(
            select(MaskKeyVersion)
            .where(MaskKeyVersion.tenant_id == tenant_id)
            .order_by(MaskKeyVersion.version)
        )
    )
