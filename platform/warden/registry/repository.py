"""Queries on the model registry."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
from warden.audit.witness import reads_digest
from warden.db.sealed import RowTampered
from warden.errors import AuditUnavailable
from warden.identity.models import Tenant
from warden.identity.revocations import model_key, revocations_for
from warden.registry.models import Model


def by_name(db: Session, tenant: str, name: str, version: int | None) -> Model | None:
    """The named model (its newest version unless `version`: the one the log says was
    registered last, identity/revocations.py; a newer row deleted in SQL is RowTampered)."""
    query = select(Model).where(Model.tenant == tenant, Model.name == name)
    if version is not None:
        query = query.where(Model.version == version)
    query = query.order_by(Model.version.desc()).limit(1)
    for _ in range(2):  # twice: a registration committed between the row's read and the log's
        row = db.scalars(query).first()
        if version is not None or _newest_logged(db, tenant, name) <= (row.version if row else 0):
            return row
    raise _gone(name)


def _newest_logged(db: Session, tenant: str, name: str) -> int:
    logged = revocations_for(db).refresh(db).models.get(model_key(tenant, name))
    return 0 if logged is None else int(logged[1])


def _gone(name: str) -> RowTampered:
    return RowTampered(
        f"model {name[:64]!r}: a version the audit log says was registered is gone from the"
        " database (deleted past Warden)"
    )


def newest_version(db: Session, tenant_id: str, name: str) -> int:
    """The newest version, read under a lock on the tenant's row so that two registrations in
    one tenant take turns: a row lock on PostgreSQL (whose next statement then sees the other's
    committed row), SQLite's write lock (taken by this write before the read)."""
    db.execute(update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name))
    query = select(func.max(Model.version)).where(Model.tenant_id == tenant_id, Model.name == name)
    newest = int(db.scalar(query) or 0)
    tenant = db.scalar(select(Tenant.name).where(Tenant.id == tenant_id))
    if _newest_logged(db, str(tenant), name) > newest:
        raise _gone(name)  # a deleted version's number is never given to another model
    return newest


def models(db: Session, tenant: str, name: str | None, limit: int, offset: int = 0) -> list[Model]:
    query = select(Model).where(Model.tenant == tenant)
    if name:
        query = query.where(Model.name == name)
    newest_first = query.order_by(Model.created_at.desc(), Model.id)  # id: pages never overlap
    return list(db.scalars(newest_first.offset(offset).limit(limit)))


def reads_by(db: Session, actor: str) -> list[AuditEvent]:
    """The audited reads of one actor (a job's sandbox), oldest first: its lineage, and what
    its model is held to. Each must be the chain's own (keyed, at or below the head): a read
    rewritten in SQL (its columns narrowed) would let the model out to readers denied what
    the job saw, so one that is not refuses the lot (AuditUnavailable, 503)."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.actor == actor, AuditEvent.action == "dataset.read")
        .order_by(AuditEvent.seq)
    )
    reads = list(db.scalars(query))
    keys = keys_for(db.get_bind())
    top = db.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) if reads else 0
    for event in reads:
        genuine = event.chain_v != CHAIN_V1 and event.hash == expected_hash(event, keys)
        if not genuine or not isinstance(top, int) or event.seq > top:
            raise AuditUnavailable(
                f"a read by {actor} (audit event {event.id}) is not the chain's own: it was"
                " written past Warden; nothing is built on its reads until an operator runs"
                " `warden audit verify`"
            )
    return reads


def witnessed_reads(db: Session, actor: str, sandbox_id: str) -> None:
    """Hold a job's reads to its exit event (audit/witness.py): the chain's own `sandbox.exit`
    of its sandbox must name exactly the allowed reads the log holds for it before that event.
    A read cut with the log's unprotected tail while the job ran (its model would then be held
    to less than it saw), or an exit that is not there, refuses the registration
    (AuditUnavailable, 503)."""
    keys = keys_for(db.get_bind())
    top = db.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0
    exits = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.actor == actor, AuditEvent.action == "sandbox.exit")
        .where(AuditEvent.decision == "allow", AuditEvent.seq <= top)
        .order_by(AuditEvent.seq)
    )
    end = next(
        (
            e
            for e in exits
            if (e.details or {}).get("sandbox") == sandbox_id
            and e.chain_v != CHAIN_V1
            and e.hash == expected_hash(e, keys)
        ),
        None,
    )
    held = [
        e.id
        for e in reads_by(db, actor)
        if e.decision == "allow" and end is not None and e.seq < end.seq
    ]
    named = (end.details or {}) if end is not None else {}
    if named.get("reads") != len(held) or named.get("reads_digest") != reads_digest(held):
        raise AuditUnavailable(
            f"the reads of {actor} in the log are not those its end named (audit event"
            f" {end.id if end else 'missing'}): some were cut from the log; nothing is built"
            " on them until an operator runs `warden audit verify`"
        )
