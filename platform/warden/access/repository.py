"""Every query of the access domain. Nothing here commits; nothing here decides rights."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from warden.access.ids import BREAK_GLASS_PREFIX
from warden.access.models import (
    AccessGrant,
    AccessRequest,
    AccessReview,
    AccessSetting,
    AccessTransition,
    ChangeReview,
    ReviewedChange,
    Subject,
    WebhookDelivery,
)
from warden.audit.chain import CHAIN_V1, expected_hash
from warden.audit.keys import ChainKeyring, keys_for
from warden.audit.models import HEAD_ID, AuditEvent, AuditHead
from warden.catalog.models import Dataset
from warden.db.queries import where_given
from warden.db.sealed import intact_row, update_sealed
from warden.identity.models import Principal

MAX_LIST = 1000


def _sqlite(db: Session) -> bool:
    return db.get_bind().dialect.name == "sqlite"


def find(
    db: Session, model: type[Subject], subject_id: str, tenant_id: str, *, lock: bool = False
) -> Subject | None:
    """A tenant's request or grant; `lock` holds its row until the transaction ends
    (SELECT … FOR UPDATE).

    SQLite has no row locks: a no-op write first takes the database write lock (waiting on the
    busy timeout), so two reviews of one request run one after the other there too.
    """
    found: Subject | None = _find_row(db, model, subject_id, tenant_id, lock=lock)
    return found


def _find_row(db: Session, model: Any, row_id: str, tenant_id: str, *, lock: bool) -> Any:
    if lock and _sqlite(db):
        db.execute(
            update(model).where(model.id == row_id).values(state=model.state),
            execution_options={"synchronize_session": False},
        )
    query = select(model).where(model.id == row_id, model.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def grant_of_request(db: Session, request_id: str) -> AccessGrant | None:
    return db.scalar(select(AccessGrant).where(AccessGrant.request_id == request_id))


def reviews_of(db: Session, request_ids: Collection[str]) -> dict[str, list[AccessReview]]:
    """Reviews of each request, oldest first."""
    found: dict[str, list[AccessReview]] = _by_parent(db, AccessReview.request_id, request_ids)
    return found


def _by_parent(
    db: Session, parent: InstrumentedAttribute[str], ids: Collection[str]
) -> dict[str, list[Any]]:
    """Rows whose `parent` column is one of `ids`, grouped by it, oldest first."""
    found: dict[str, list[Any]] = {i: [] for i in ids}
    if not ids:
        return found
    model = parent.class_
    query = select(model).where(parent.in_(list(ids))).order_by(model.id)
    for row in db.scalars(query):
        found[getattr(row, parent.key)].append(row)
    return found


def transitions_of(db: Session, subject_ids: Sequence[str]) -> list[AccessTransition]:
    """Every transition of these requests and grants, in the order they happened."""
    query = (
        select(AccessTransition)
        .where(AccessTransition.subject_id.in_(list(subject_ids)))
        .order_by(AccessTransition.id)
    )
    return list(db.scalars(query))


@dataclass(frozen=True)
class Listing:
    """Which of a tenant's requests or grants a list shows, newest first: `visible_to` (a
    principal id) keeps only those it holds and those on `reviewable_datasets` (None: all of
    them); `holder_id` keeps only its own."""

    tenant_id: str
    visible_to: str | None
    reviewable_datasets: Collection[str]
    states: Collection[str] = ()
    holder_id: str | None = None
    dataset: str | None = None
    limit: int = 100


def _listed(
    model: type[Subject], holder: InstrumentedAttribute[str], at: Listing
) -> Select[Subject]:
    query = select(model).where(model.tenant_id == at.tenant_id)
    if at.visible_to is not None:
        query = query.where(
            (holder == at.visible_to) | model.dataset_id.in_(list(at.reviewable_datasets))
        )
    if at.states:
        query = query.where(model.state.in_(list(at.states)))
    return where_given(query, (holder, at.holder_id), (model.dataset, at.dataset))


def list_requests(
    db: Session, listing: Listing, *, reviewable_by: str | None = None
) -> list[AccessRequest]:
    """Requests as `listing` says. `reviewable_by` keeps pending requests on the reviewable
    datasets that this principal neither made nor reviewed."""
    query = _listed(AccessRequest, AccessRequest.requester_id, listing)
    if reviewable_by is not None:
        reviewed = exists().where(
            AccessReview.request_id == AccessRequest.id,
            AccessReview.reviewer_id == reviewable_by,
        )
        query = query.where(
            AccessRequest.state == "pending",
            AccessRequest.requester_id != reviewable_by,
            AccessRequest.dataset_id.in_(list(listing.reviewable_datasets)),
            ~reviewed,
        )
    query = query.order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
    return list(db.scalars(query.limit(min(listing.limit, MAX_LIST))))


def list_grants(
    db: Session, listing: Listing, *, needs_review: bool | None = None
) -> list[AccessGrant]:
    """Grants as `listing` says; `needs_review` keeps those that do (or do not) await a
    break-glass sign-off, a grant whose seal does not match among those that do."""
    query = _listed(AccessGrant, AccessGrant.principal_id, listing)
    query = query.order_by(AccessGrant.starts_at.desc(), AccessGrant.id.desc())
    if needs_review is None:
        return list(db.scalars(query.limit(min(listing.limit, MAX_LIST))))
    if needs_review:
        query = query.where(_maybe_break_glass())
    else:
        query = query.where(AccessGrant.needs_review.is_(False))
    keys = keys_for(db.get_bind())
    found = db.scalars(query.limit(MAX_LIST))
    kept = [g for g in found if awaits_sign_off(keys, g) == needs_review]
    return kept[: min(listing.limit, MAX_LIST)]


def tenant_datasets(db: Session, tenant_id: str) -> list[Dataset]:
    return list(db.scalars(select(Dataset).where(Dataset.tenant_id == tenant_id)))


def tenant_principals(db: Session, tenant_id: str) -> list[Principal]:
    query = (
        select(Principal)
        .where(Principal.tenant_id == tenant_id, Principal.disabled.is_(False))
        .order_by(Principal.name)
    )
    return list(db.scalars(query))


def setting_of(db: Session, dataset_id: str) -> AccessSetting | None:
    return db.get(AccessSetting, dataset_id)


def due_requests(db: Session, now: datetime) -> list[str]:
    query = select(AccessRequest.id).where(
        AccessRequest.state == "pending", AccessRequest.pending_until <= now
    )
    return list(db.scalars(query.order_by(AccessRequest.pending_until)))


def due_grants(db: Session, now: datetime) -> list[str]:
    query = select(AccessGrant.id).where(
        AccessGrant.state == "active", AccessGrant.expires_at <= now
    )
    return list(db.scalars(query.order_by(AccessGrant.expires_at)))


def move_request(db: Session, request_id: str, src: str, dst: str, at: datetime) -> bool:
    """Move a request from `src` to `dst` unless someone else moved it first."""
    return _move(db, AccessRequest, request_id, src, dst, resolved_at=at)


def move_grant(db: Session, grant_id: str, src: str, dst: str, at: datetime) -> bool:
    """Move a grant from `src` to `dst` unless someone else moved it first."""
    return _move(db, AccessGrant, grant_id, src, dst, ended_at=at)


def _move(
    db: Session, model: type[Subject], row_id: str, src: str, dst: str, **values: datetime
) -> bool:
    # the state is sealed (a final request or grant is never reopened in SQL): the seal follows
    where = [model.id == row_id, model.state == src]
    return update_sealed(db, model, where, {"state": dst, **values})


def grants_with_stale_rules(db: Session, limit: int) -> list[AccessGrant]:
    """Grants that no longer allow anything but whose rules are still stored."""
    query = (
        select(AccessGrant)
        .where(AccessGrant.state != "active", AccessGrant.rules_present.is_(True))
        .order_by(AccessGrant.ended_at)
        .limit(limit)
    )
    return list(db.scalars(query))


def deliveries(
    db: Session, tenant_id: str, states: Collection[str], limit: int
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if states:
        query = query.where(WebhookDelivery.state.in_(list(states)))
    query = query.order_by(WebhookDelivery.created_at.desc()).limit(min(limit, MAX_LIST))
    return list(db.scalars(query))


def count_deliveries(db: Session, tenant_id: str, state: str) -> int:
    query = select(func.count()).where(
        WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.state == state
    )
    return int(db.scalar(query) or 0)


def get_delivery(db: Session, delivery_id: str, tenant_id: str) -> WebhookDelivery | None:
    return db.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id
        )
    )


def due_deliveries(db: Session, now: datetime, limit: int) -> list[WebhookDelivery]:
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(db.scalars(query))


def claim_delivery(db: Session, delivery: WebhookDelivery, lease_until: datetime) -> bool:
    """Push the next attempt past the send, unless another process claimed it first."""
    result = db.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.state == "pending",
            WebhookDelivery.attempts == delivery.attempts,
            WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
        )
        .values(next_attempt_at=lease_until),
        execution_options={"synchronize_session": False},
    )
    return getattr(result, "rowcount", 0) == 1


def find_change(
    db: Session, change_id: str, tenant_id: str, *, lock: bool = False
) -> ReviewedChange | None:
    """A tenant's reviewed change; `lock` holds its row until the transaction ends (on
    SQLite a no-op write takes the database write lock first, as `find` does)."""
    found: ReviewedChange | None = _find_row(db, ReviewedChange, change_id, tenant_id, lock=lock)
    return found


def change_reviews_of(db: Session, change_ids: Collection[str]) -> dict[str, list[ChangeReview]]:
    found: dict[str, list[ChangeReview]] = _by_parent(db, ChangeReview.change_id, change_ids)
    return found


def list_changes(
    db: Session,
    tenant_id: str,
    *,
    proposer_id: str | None,
    states: Collection[str],
    needs_review: bool | None,
    limit: int,
) -> list[ReviewedChange]:
    query = where_given(
        select(ReviewedChange).where(ReviewedChange.tenant_id == tenant_id),
        (ReviewedChange.proposer_id, proposer_id),
        (ReviewedChange.needs_review, needs_review),
    )
    if states:
        query = query.where(ReviewedChange.state.in_(list(states)))
    query = query.order_by(ReviewedChange.created_at.desc(), ReviewedChange.id).limit(limit)
    return list(db.scalars(query))


def last_grant_of(db: Session, principal_id: str, dataset_id: str) -> AccessGrant | None:
    """The principal's newest grant on the dataset, in any state."""
    query = (
        select(AccessGrant)
        .where(AccessGrant.principal_id == principal_id, AccessGrant.dataset_id == dataset_id)
        .order_by(AccessGrant.starts_at.desc())
        .limit(1)
    )
    return db.scalar(query)


def awaits_sign_off(keys: ChainKeyring, grant: AccessGrant) -> bool:
    """A break-glass grant nobody signed off; one whose seal does not match counts as such
    too, whatever its row says (a sign-off written in SQL signs off nothing)."""
    return not intact_row(keys, grant) or (grant.break_glass and grant.needs_review)


def _maybe_break_glass() -> ColumnElement[bool]:
    """Grants that are, or were before an edit in SQL, break-glass: either flag, or the id
    Warden gave it (sealed, and what its rules carry)."""
    return or_(
        AccessGrant.break_glass.is_(True),
        AccessGrant.needs_review.is_(True),
        AccessGrant.id.startswith(BREAK_GLASS_PREFIX),
    )


def unsigned_break_glass(db: Session, tenant_id: str, principal_id: str) -> AccessGrant | None:
    """The principal's oldest grant that awaits sign-off by its row: a break-glass grant
    nobody signed off, in any state, or any grant naming it whose seal does not match. A
    broken row naming someone else refuses them, not this principal: whose a break-glass grant
    is, and whether it was signed off, the log says too (`logged_unsigned_break_glass`)."""
    keys = keys_for(db.get_bind())
    query = select(AccessGrant).where(
        AccessGrant.tenant_id == tenant_id, AccessGrant.principal_id == principal_id
    )
    for grant in db.scalars(query.order_by(AccessGrant.starts_at)):
        if awaits_sign_off(keys, grant):
            return grant
    return None


GRANT_CREATED, GRANT_SIGNED_OFF = "access.grant.created", "access.grant.signed_off"


def logged_unsigned_break_glass(db: Session, tenant: str, principal: str) -> list[str]:
    """Ids of `principal`'s break-glass grants the log saw made and never saw signed off,
    whatever their rows say now (moved, renamed, deleted). Only the chain's own events count:
    at or below its head and carrying their keyed hash, so a row written past the chain (a
    forged sign-off) signs off nothing."""
    keys = keys_for(db.get_bind())
    table = AuditEvent.__table__
    top = db.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID)) or 0

    def genuine(action: str, *where: ColumnElement[bool]) -> list[Any]:
        found = db.connection().execute(
            select(table).where(
                table.c.tenant == tenant, table.c.action == action, table.c.seq <= top, *where
            )
        )
        return [
            e
            for e in found.mappings()
            if e["chain_v"] != CHAIN_V1 and e["hash"] == expected_hash(e, keys)
        ]

    made = [
        grant_id
        for e in genuine(GRANT_CREATED, table.c.actor == principal)  # break-glass: by its holder
        if (e["details"] or {}).get("break_glass") and e["details"].get("principal") == principal
        for grant_id in e["grant_ids"] or []
    ]
    if not made:
        return []
    signed = {g for e in genuine(GRANT_SIGNED_OFF) for g in e["grant_ids"] or []}
    return [g for g in made if g not in signed]
