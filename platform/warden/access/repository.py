"""Every query of the access domain. Nothing here commits; nothing here decides rights."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

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
from warden.catalog.models import Dataset
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
    if lock and _sqlite(db):
        db.execute(
            update(model).where(model.id == subject_id).values(state=model.state),
            execution_options={"synchronize_session": False},
        )
    query = select(model).where(model.id == subject_id, model.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def grant_of_request(db: Session, request_id: str) -> AccessGrant | None:
    return db.scalar(select(AccessGrant).where(AccessGrant.request_id == request_id))


def reviews_of(db: Session, request_ids: Collection[str]) -> dict[str, list[AccessReview]]:
    """Reviews of each request, oldest first."""
    found: dict[str, list[AccessReview]] = {rid: [] for rid in request_ids}
    if not request_ids:
        return found
    query = (
        select(AccessReview)
        .where(AccessReview.request_id.in_(list(request_ids)))
        .order_by(AccessReview.id)
    )
    for review in db.scalars(query):
        found[review.request_id].append(review)
    return found


def transitions_of(db: Session, subject_ids: Sequence[str]) -> list[AccessTransition]:
    """Every transition of these requests and grants, in the order they happened."""
    query = (
        select(AccessTransition)
        .where(AccessTransition.subject_id.in_(list(subject_ids)))
        .order_by(AccessTransition.id)
    )
    return list(db.scalars(query))


def _visible(
    model: type[Subject],
    holder: InstrumentedAttribute[str],
    tenant_id: str,
    *,
    visible_to: str | None,
    reviewable_datasets: Collection[str],
    states: Collection[str],
    holder_id: str | None,
    dataset: str | None,
) -> Select[Subject]:
    """A tenant's requests or grants. `visible_to` (a principal id) keeps only those it holds
    and those on `reviewable_datasets` (None: all of them); `holder_id` keeps only its own."""
    query = select(model).where(model.tenant_id == tenant_id)
    if visible_to is not None:
        query = query.where(
            (holder == visible_to) | model.dataset_id.in_(list(reviewable_datasets))
        )
    if states:
        query = query.where(model.state.in_(list(states)))
    if holder_id is not None:
        query = query.where(holder == holder_id)
    if dataset is not None:
        query = query.where(model.dataset == dataset)
    return query


def list_requests(
    db: Session,
    tenant_id: str,
    *,
    visible_to: str | None,
    reviewable_datasets: Collection[str],
    states: Collection[str] = (),
    requester_id: str | None = None,
    reviewable_by: str | None = None,
    dataset: str | None = None,
    limit: int = 100,
) -> list[AccessRequest]:
    """Requests of a tenant, newest first, as `_visible` filters them. `reviewable_by` keeps
    pending requests on `reviewable_datasets` that this principal neither made nor reviewed."""
    query = _visible(
        AccessRequest,
        AccessRequest.requester_id,
        tenant_id,
        visible_to=visible_to,
        reviewable_datasets=reviewable_datasets,
        states=states,
        holder_id=requester_id,
        dataset=dataset,
    )
    if reviewable_by is not None:
        reviewed = exists().where(
            AccessReview.request_id == AccessRequest.id,
            AccessReview.reviewer_id == reviewable_by,
        )
        query = query.where(
            AccessRequest.state == "pending",
            AccessRequest.requester_id != reviewable_by,
            AccessRequest.dataset_id.in_(list(reviewable_datasets)),
            ~reviewed,
        )
    query = query.order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
    return list(db.scalars(query.limit(min(limit, MAX_LIST))))


def list_grants(
    db: Session,
    tenant_id: str,
    *,
    visible_to: str | None,
    reviewable_datasets: Collection[str],
    states: Collection[str] = (),
    principal_id: str | None = None,
    dataset: str | None = None,
    needs_review: bool | None = None,
    limit: int = 100,
) -> list[AccessGrant]:
    """Grants of a tenant, newest first, as `_visible` filters them."""
    query = _visible(
        AccessGrant,
        AccessGrant.principal_id,
        tenant_id,
        visible_to=visible_to,
        reviewable_datasets=reviewable_datasets,
        states=states,
        holder_id=principal_id,
        dataset=dataset,
    )
    if needs_review is not None:
        query = query.where(AccessGrant.needs_review == needs_review)
    query = query.order_by(AccessGrant.starts_at.desc(), AccessGrant.id.desc())
    return list(db.scalars(query.limit(min(limit, MAX_LIST))))


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
    result = db.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.state == src)
        .values(state=dst, resolved_at=at),
        execution_options={"synchronize_session": False},
    )
    return getattr(result, "rowcount", 0) == 1


def move_grant(db: Session, grant_id: str, src: str, dst: str, at: datetime) -> bool:
    """Move a grant from `src` to `dst` unless someone else moved it first."""
    result = db.execute(
        update(AccessGrant)
        .where(AccessGrant.id == grant_id, AccessGrant.state == src)
        .values(state=dst, ended_at=at),
        execution_options={"synchronize_session": False},
    )
    return getattr(result, "rowcount", 0) == 1


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
    if lock and _sqlite(db):
        db.execute(
            update(ReviewedChange)
            .where(ReviewedChange.id == change_id)
            .values(state=ReviewedChange.state),
            execution_options={"synchronize_session": False},
        )
    query = select(ReviewedChange).where(
        ReviewedChange.id == change_id, ReviewedChange.tenant_id == tenant_id
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def change_reviews_of(db: Session, change_ids: Collection[str]) -> dict[str, list[ChangeReview]]:
    found: dict[str, list[ChangeReview]] = {cid: [] for cid in change_ids}
    if not change_ids:
        return found
    query = (
        select(ChangeReview)
        .where(ChangeReview.change_id.in_(list(change_ids)))
        .order_by(ChangeReview.id)
    )
    for review in db.scalars(query):
        found[review.change_id].append(review)
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
    query = select(ReviewedChange).where(ReviewedChange.tenant_id == tenant_id)
    if proposer_id is not None:
        query = query.where(ReviewedChange.proposer_id == proposer_id)
    if states:
        query = query.where(ReviewedChange.state.in_(list(states)))
    if needs_review is not None:
        query = query.where(ReviewedChange.needs_review.is_(needs_review))
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
