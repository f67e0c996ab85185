"""Rows as API bodies (also the payloads of webhooks): times in UTC ISO-8601 with a Z."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

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

Body = TypeVar("Body", bound=BaseModel)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return aware(value).isoformat().replace("+00:00", "Z")


def iso(value: datetime | None) -> str | None:
    return None if value is None else _iso(value)


def body_of(model: type[Body], row: object, **computed: Any) -> Body:
    """`model` as the API shows `row`: each field is `row`'s attribute of the same name (a
    time as `iso` writes it) unless `computed` gives it."""
    copied = {
        name: _shown(getattr(row, name)) for name in model.model_fields if name not in computed
    }
    return model(**copied, **computed)


def _shown(value: object) -> object:
    return _iso(value) if isinstance(value, datetime) else value


def transition_out(t: AccessTransition) -> TransitionOut:
    return body_of(TransitionOut, t)


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
    return [body_of(ReviewOut, r, at=_iso(r.created_at)) for r in reviews]


def request_out(
    req: AccessRequest,
    reviews: Sequence[AccessReview],
    *,
    history: Sequence[AccessTransition] | None = None,
    with_reviews: bool = False,
) -> RequestOut:
    return body_of(
        RequestOut,
        req,
        duration=format_duration(req.duration_s),
        approvals=approvers(reviews),
        reviews=reviews_out(reviews) if with_reviews else None,
        history=history_out(history),
    )


def grant_out(grant: AccessGrant, *, history: Sequence[AccessTransition] | None = None) -> GrantOut:
    return body_of(GrantOut, grant, history=history_out(history))


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    pending = d.state == "pending"
    return body_of(DeliveryOut, d, next_attempt_at=iso(d.next_attempt_at) if pending else None)
