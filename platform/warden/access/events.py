"""Recording a transition: its row, its audit event (same transaction) and its span; and
queueing the webhook that announces it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from warden.access import repository as repo
from warden.access import webhooks
from warden.access.models import AccessGrant, AccessRequest, AccessTransition
from warden.access.present import grant_out, request_out
from warden.access.rights import reviewers_of
from warden.audit.outcomes import by_actor
from warden.audit.service import append
from warden.audit.telemetry import annotate_span, read_span
from warden.catalog.view import DatasetView
from warden.core.platform import Platform
from warden.identity.models import Tenant
from warden.identity.service import Caller

SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    name: str
    kind: str
    on_behalf_of: str | None = None


SYSTEM_ACTOR = Actor(SYSTEM, SYSTEM)


def actor_of(caller: Caller) -> Actor:
    return Actor(caller.name, caller.kind, caller.on_behalf_of)


def record(
    db: Session,
    state: Platform,
    actor: Actor,
    tenant: Tenant,
    row: AccessRequest | AccessGrant,
    event: str,
    from_state: str | None,
    to_state: str,
    *,
    action: str | None = None,
    reason: str = "",
    columns: Sequence[str] = (),
    masked: Sequence[str] = (),
    policy_version: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record `row` moving from `from_state` to `to_state`; the action is
    access.<subject>.<event> unless named, and a grant's event carries its id and holder."""
    if isinstance(row, AccessGrant):
        subject, grant_ids = "grant", [row.id]
        details = {"principal": row.principal, **(details or {})}
    else:
        subject, grant_ids = "request", []
    attributes = {
        "warden.access.subject": subject,
        "warden.access.id": row.id,
        "warden.access.event": event,
        "warden.access.from": from_state,
        "warden.access.to": to_state,
        "warden.actor": actor.name,
    }
    transition(db, state, actor, tenant, subject, row.id, event, from_state, to_state, reason,
               f"access.{subject}.{event}", attributes, action,
        dataset=row.dataset,
        purpose=row.purpose,
        columns=list(columns),
        masked_columns=list(masked),
        grant_ids=grant_ids,
        policy_version=policy_version,
        details={
            f"{subject}_id": row.id,
            "event": event,
            "from": from_state,
            "to": to_state,
            **(details or {}),
        },
    )  # fmt: skip


def transition(
    db: Session,
    state: Platform,
    actor: Actor,
    tenant: Tenant,
    subject: str,
    subject_id: str,
    event: str,
    from_state: str | None,
    to_state: str,
    reason: str,
    name: str,
    attributes: dict[str, Any],
    action: str | None,
    **fields: Any,
) -> None:
    """The transition row of `subject` `subject_id` and its audit event (same transaction,
    action `action` or else `name`, with `fields`), inside the span warden.<name>."""
    with read_span(f"warden.{name}", attributes) as span:
        what = action or name
        entry = by_actor(actor, tenant.name, what, "allow", reason=reason or None, **fields)
        audit = append(db, entry)
        annotate_span(span, audit)
    db.add(
        AccessTransition(
            subject=subject,
            subject_id=subject_id,
            event=event,
            from_state=from_state,
            to_state=to_state,
            actor=actor.name,
            at=state.now(),
            reason=reason,
            audit_event_id=audit.id,
        )
    )


def notify(
    db: Session,
    state: Platform,
    tenant: Tenant,
    event: str,
    subject_id: str,
    recipients: Iterable[str],
    *,
    request: AccessRequest | None = None,
    grant: AccessGrant | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Queue the webhook announcing `event` of `subject_id` to `recipients`: `payload` plus
    the request and grant, as the API shows them."""
    payload = dict(payload or {})
    if request is not None:
        reviews = repo.reviews_of(db, [request.id])[request.id]
        payload["request"] = request_out(request, reviews, with_reviews=True).model_dump()
    if grant is not None:
        payload["grant"] = grant_out(grant).model_dump()
    webhooks.enqueue(
        db,
        state.settings,
        tenant_id=tenant.id,
        tenant=tenant.name,
        event=event,
        subject_id=subject_id,
        recipients=list(recipients),
        payload=payload,
    )


def holder_and_reviewers(
    db: Session, state: Platform, tenant: Tenant, view: DatasetView, holder: str
) -> list[str]:
    return [holder, *reviewers_of(db, state, tenant, view)]


def notify_grant(
    db: Session, state: Platform, tenant: Tenant, view: DatasetView, grant: AccessGrant, event: str
) -> None:
    """Tell a grant's holder and the dataset's reviewers what became of it."""
    recipients = holder_and_reviewers(db, state, tenant, view, grant.principal)
    notify(db, state, tenant, event, grant.id, recipients, grant=grant)


def notify_resolved(
    db: Session,
    state: Platform,
    tenant: Tenant,
    view: DatasetView,
    req: AccessRequest,
    grant: AccessGrant | None = None,
) -> None:
    """Tell the requester and the dataset's reviewers how a request ended."""
    recipients = holder_and_reviewers(db, state, tenant, view, req.requester)
    notify(
        db, state, tenant, "access.request.resolved", req.id, recipients, request=req, grant=grant
    )
