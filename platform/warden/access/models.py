"""Tables for access requests, their reviews, the grants they produce, every transition of
either, per-dataset access settings, and the webhook outbox. Nothing here is ever deleted."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, utcnow
from warden.db.sealed import Sealed


class AccessRequest(Sealed, Base):
    """Someone asks for columns of a dataset, for a purpose and a duration."""

    __tablename__ = "access_request"
    # who asks for what (db/sealed.py): a grant is built from these, and reviews approve them;
    # and where it stands: a request approved, denied or expired is never pending again (its
    # old approvals would count again), nor its quorum lowered or its deadline moved in SQL;
    # and what its reviewers read before approving (why, and the class it was asked under)
    __sealed__ = ("id", "tenant_id", "dataset_id", "dataset", "requester_id", "requester",
                  "kind", "columns", "purpose", "duration_s", "quorum", "state",
                  "pending_until", "resolved_at", "grant_id", "justification",
                  "classification")  # fmt: skip
    __table_args__ = (Index("ix_access_request_tenant_state", "tenant_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    requester_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    requester: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # request | break_glass
    columns: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(32))
    duration_s: Mapped[int] = mapped_column(Integer)
    justification: Mapped[str] = mapped_column(Text)
    classification: Mapped[str] = mapped_column(String(16))
    # Fixed when the request is made, so a later settings change cannot move the goalposts.
    quorum: Mapped[int] = mapped_column(Integer)
    # pending | approved | denied | cancelled | expired
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pending_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    grant_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class _ReviewColumns:
    """One reviewer's decision (approve or deny) and comment, and when."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reviewer_id: Mapped[str] = mapped_column(ForeignKey("principal.id"))
    reviewer: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve | deny
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # keyed MAC of (who, decision, what was reviewed): see access/duties.review_seal
    seal: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AccessReview(_ReviewColumns, Base):
    """One reviewer's decision on one request; a reviewer counts once per request."""

    __tablename__ = "access_review"
    __table_args__ = (
        UniqueConstraint("request_id", "reviewer_id", name="uq_access_review_request_reviewer"),
    )

    request_id: Mapped[str] = mapped_column(ForeignKey("access_request.id"), index=True)


class AccessGrant(Sealed, Base):
    """What an approval (or a break-glass) gave: the Casbin rules carrying this id."""

    __tablename__ = "access_grant"
    # whose it is, on what (db/sealed.py): revoking removes its rules by this row's id; where
    # it stands, and whether a second person signed off its break-glass (an unsigned one
    # refuses its holder a new break-glass, and waits in the reviewers' queue)
    __sealed__ = ("id", "tenant_id", "request_id", "dataset_id", "dataset", "principal_id",
                  "principal", "columns", "masked_columns", "purpose", "break_glass", "state",
                  "expires_at", "ended_at", "needs_review", "signed_off_by",
                  "signed_off_at")  # fmt: skip
    __table_args__ = (
        Index("ix_access_grant_state_expires", "state", "expires_at"),
        Index("ix_access_grant_tenant_state", "tenant_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    request_id: Mapped[str] = mapped_column(ForeignKey("access_request.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    principal_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    principal: Mapped[str] = mapped_column(String(64))
    columns: Mapped[list[str]] = mapped_column(JSON)
    masked_columns: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # active | expired | revoked
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # False once the grant's Casbin rules are gone (revoked at once; expired ones by tidy-up).
    rules_present: Mapped[bool] = mapped_column(Boolean, default=True)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    signed_off_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signed_off_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# The two things a transition is about; functions over either keep the row's own type.
Subject = TypeVar("Subject", AccessRequest, AccessGrant)


class AccessTransition(Base):
    """One step in the life of a request or a grant: who, when, why (append-only)."""

    __tablename__ = "access_transition"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(16))  # request | grant
    subject_id: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text, default="")
    audit_event_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class AccessSetting(Sealed, Base):
    """Per-dataset overrides of the classification defaults (quorum, maximum duration)."""

    __tablename__ = "access_setting"
    # a quorum or maximum set through a reviewed change, lowered in SQL: refused (503)
    __sealed__ = ("dataset_id", "quorum", "max_duration_s")

    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"), primary_key=True)
    quorum: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_duration_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Sealed, Base):
    """The outbox: written in the transaction of the change it announces, sent after."""

    __tablename__ = "webhook_delivery"
    # what is sent where, signed with the webhook secret (db/sealed.py): a row inserted in
    # SQL would have Warden sign a forged announcement, or post it to any address
    __sealed__ = ("id", "tenant_id", "event", "subject_id", "url", "body")
    __table_args__ = (Index("ix_webhook_delivery_state_next", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(32), index=True)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Wall-clock times: delivery is about real elapsed time, not the decision clock.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReviewedChange(Sealed, Base):
    """A change that widens what someone can read (policy rules, role links, a dataset's
    access terms, a class lowering): proposed by one person, applied only once others
    approve it, or applied at once as a flagged break-glass that stays "needs review"."""

    __tablename__ = "reviewed_change"
    # what is approved, for whom, by how many (db/sealed.py): a beneficiary list cleared in
    # SQL would let a beneficiary approve their own widening; where it stands: a change
    # applied, denied or expired is never pending again (its old approvals would count again);
    # and what its reviewers read before approving (a widening summarised as a narrowing)
    __sealed__ = ("id", "tenant_id", "kind", "payload", "beneficiary_ids", "proposer_id",
                  "proposer", "quorum", "break_glass", "needs_review", "signed_off_by",
                  "signed_off_at", "state", "pending_until", "resolved_at", "summary",
                  "widening", "reason")  # fmt: skip
    __table_args__ = (Index("ix_reviewed_change_tenant_state", "tenant_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"))
    kind: Mapped[str] = mapped_column(String(16))  # rules | settings | classification
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[str] = mapped_column(Text)
    # Why it is a widening, item by item; and whose reading it widens (principal ids).
    widening: Mapped[list[str]] = mapped_column(JSON)
    beneficiary_ids: Mapped[list[str]] = mapped_column(JSON)
    proposer_id: Mapped[str] = mapped_column(ForeignKey("principal.id"), index=True)
    proposer: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    quorum: Mapped[int] = mapped_column(Integer)
    # pending | applied | denied | cancelled | expired
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pending_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    signed_off_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signed_off_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ChangeReview(_ReviewColumns, Base):
    """One reviewer's decision on one reviewed change; a reviewer counts once per change."""

    __tablename__ = "change_review"
    __table_args__ = (
        UniqueConstraint("change_id", "reviewer_id", name="uq_change_review_change_reviewer"),
    )

    change_id: Mapped[str] = mapped_column(ForeignKey("reviewed_change.id"), index=True)
