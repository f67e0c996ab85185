"""Request and response bodies for access requests, reviews, grants and webhooks."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

_SPAN = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_S = 3650 * 86400


def parse_duration(value: Any) -> int:
    """Seconds from 3600, "90m", "12h", "7d", "2w" or an ISO-8601 duration like "P7D"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a span like 12h or 7d")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        match = _SPAN.fullmatch(text)
        if match:
            seconds = int(match.group(1)) * _UNITS[match.group(2)]
        elif text.startswith("P") and len(text) <= 32:
            from pydantic import TypeAdapter, ValidationError

            try:
                seconds = int(TypeAdapter(timedelta).validate_python(text).total_seconds())
            except ValidationError:
                raise ValueError(f"{text[:32]!r} is not a duration like 12h, 7d or P7D") from None
        else:
            raise ValueError(f"{text[:32]!r} is not a duration like 12h, 7d or P7D")
    else:
        raise ValueError("a duration is a number of seconds or a span like 12h or 7d")
    if not 60 <= seconds <= MAX_DURATION_S:
        raise ValueError("a duration must be between one minute and ten years")
    return seconds


def format_duration(seconds: int) -> str:
    """The largest exact unit: 604800 -> "7d", 5400 -> "90m"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# Documents what parse_duration accepts: seconds, or a span within the same bounds (it also
# takes ISO-8601 and larger counts of a unit, up to ten years).
DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 60, "maximum": MAX_DURATION_S},
        {
            "type": "string",
            "pattern": r"^(?:(?:[6-9][0-9]|[1-9][0-9]{2,5})s|[1-9][0-9]{0,5}m|[1-9][0-9]{0,3}h"
            r"|[1-9][0-9]{0,2}d|[1-9][0-9]?w)$",
        },
    ],
    "description": 'Seconds, or a span like "90m", "12h", "7d", "2w" (one minute to ten years)',
}
Duration = Annotated[int, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Purpose = Annotated[str, Field(min_length=1, max_length=32)]


class RequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Name
    columns: list[Name] | None = Field(default=None, min_length=1, max_length=256)
    purpose: Purpose
    duration: Duration
    justification: str = Field(min_length=1, max_length=2000)


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    comment: str = Field(default="", max_length=2000)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class BreakGlassCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Name
    purpose: Purpose
    reason: str = Field(min_length=1, max_length=2000)
    columns: list[Name] | None = Field(default=None, min_length=1, max_length=256)


class SignOffBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class SettingsUpdate(BaseModel):
    """Per-dataset overrides; null puts a value back to its classification default."""

    model_config = ConfigDict(extra="forbid")

    quorum: int | None = Field(default=None, ge=0, le=10)
    max_duration: Duration | None = None


class TransitionOut(BaseModel):
    subject: str
    subject_id: str
    event: str
    from_state: str | None
    to_state: str
    actor: str
    at: str
    reason: str
    audit_event_id: str | None


class ReviewOut(BaseModel):
    reviewer: str
    decision: str
    comment: str
    at: str


class GrantOut(BaseModel):
    id: str
    request_id: str
    dataset: str
    principal: str
    columns: list[str]
    masked_columns: list[str]
    purpose: str
    state: str
    starts_at: str
    expires_at: str
    ended_at: str | None
    revoked_by: str | None
    revoke_reason: str | None
    break_glass: bool
    needs_review: bool
    signed_off_by: str | None
    signed_off_at: str | None
    history: list[TransitionOut] | None = None


class RequestOut(BaseModel):
    id: str
    kind: str
    dataset: str
    requester: str
    columns: list[str]
    purpose: str
    duration_s: int
    duration: str
    justification: str
    classification: str
    quorum: int
    approvals: list[str]
    state: str
    created_at: str
    pending_until: str
    resolved_at: str | None
    grant_id: str | None
    reviews: list[ReviewOut] | None = None
    history: list[TransitionOut] | None = None


class SettingsOut(BaseModel):
    dataset: str
    classification: str
    quorum: int
    max_duration_s: int
    max_duration: str
    overridden: list[str]


class DeliveryOut(BaseModel):
    id: str
    event: str
    subject_id: str
    recipients: list[str]
    url: str
    state: str
    attempts: int
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    last_status: int | None
    last_error: str | None


class RulesChange(BaseModel):
    """Rules to add and remove, as one change: all or nothing. A change that could widen
    what anyone reads is proposed (202) unless `break_glass` applies it now, flagged."""

    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, max_length=10_000)
    remove: list[str] = Field(default_factory=list, max_length=10_000)
    reason: str = Field(default="", max_length=500)
    break_glass: bool = False


class ChangeDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class ChangeOut(BaseModel):
    id: str
    kind: str
    summary: str
    payload: dict[str, Any]
    widening: list[str]
    beneficiaries: list[str]
    proposer: str
    reason: str
    quorum: int
    approvals: list[str]
    state: str
    created_at: str
    pending_until: str
    resolved_at: str | None
    policy_version: int | None
    break_glass: bool
    needs_review: bool
    signed_off_by: str | None
    signed_off_at: str | None
    reviews: list[ReviewOut] | None = None
    history: list[TransitionOut] | None = None
