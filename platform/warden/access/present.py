"""Rows as API bodies (also the payloads of webhooks): times in UTC ISO-8601 with a Z."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from warden.access.models import (
    AccessGrant,
    AccessRequest,
    AccessReview,
    AccessTransition,
    WebhookDelivery,
)
from warden.access.schemas import (
    DeliveryOut,
    GrantOut,
    RequestOut,
    ReviewOut,
    TransitionOut,
    format_duration,
)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return aware(value).isoformat().replace("+00:00", "Z")


def iso(value: datetime | None) -> str | None:
    return None if value is None else _iso(value)


def transition_out(t: AccessTransition) -> TransitionOut:
    return TransitionOut(
        subject=t.subject,
        subject_id=t.subject_id,
        event=t.event,
        from_state=t.from_state,
        to_state=t.to_state,
        actor=t.actor,
        at=_iso(t.at),
        reason=t.reason,
        audit_event_id=t.audit_event_id,
    )


def history_out(history: Sequence[AccessTransition] | None) -> list[TransitionOut] | None:
    return [transition_out(t) for t in history] if history is not None else None


class Review(Protocol):
    reviewer: str
    decision: str
    comment: str
    created_at: datetime


def approvers(reviews: Sequence[Review]) -> list[str]:
    """Who approved, in review order."""
    return [r.reviewer for r in reviews if r.decision == "approve"]


def reviews_out(reviews: Sequence[Review]) -> list[ReviewOut]:
    return [
        ReviewOut(
            reviewer=r.reviewer, decision=r.decision, comment=r.comment, at=_iso(r.created_at)
        )
        for r in reviews
    ]


def request_out(
    req: AccessRequest,
    reviews: Sequence[AccessReview],
    *,
    history: Sequence[AccessTransition] | None = None,
    with_reviews: bool = False,
) -> RequestOut:
    return RequestOut(
        id=req.id,
        kind=req.kind,
        dataset=req.dataset,
        requester=req.requester,
        columns=list(req.columns),
        purpose=req.purpose,
        duration_s=req.duration_s,
        duration=format_duration(req.duration_s),
        justification=req.justification,
        classification=req.classification,
        quorum=req.quorum,
        approvals=approvers(reviews),
        state=req.state,
        created_at=_iso(req.created_at),
        pending_until=_iso(req.pending_until),
        resolved_at=iso(req.resolved_at),
        grant_id=req.grant_id,
        reviews=reviews_out(reviews) if with_reviews else None,
        history=history_out(history),
    )


def grant_out(grant: AccessGrant, *, history: Sequence[AccessTransition] | None = None) -> GrantOut:
    return GrantOut(
        id=grant.id,
        request_id=grant.request_id,
        dataset=grant.dataset,
        principal=grant.principal,
        columns=list(grant.columns),
        masked_columns=list(grant.masked_columns),
        purpose=grant.purpose,
        state=grant.state,
        starts_at=_iso(grant.starts_at),
        expires_at=_iso(grant.expires_at),
        ended_at=iso(grant.ended_at),
        revoked_by=grant.revoked_by,
        revoke_reason=grant.revoke_reason,
        break_glass=grant.break_glass,
        needs_review=grant.needs_review,
        signed_off_by=grant.signed_off_by,
        signed_off_at=iso(grant.signed_off_at),
        history=history_out(history),
    )


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event=d.event,
        subject_id=d.subject_id,
        recipients=list(d.recipients),
        url=d.url,
        state=d.state,
        attempts=d.attempts,
        created_at=_iso(d.created_at),
        next_attempt_at=iso(d.next_attempt_at) if d.state == "pending" else None,
        delivered_at=iso(d.delivered_at),
        last_status=d.last_status,
        last_error=d.last_error,
    )
