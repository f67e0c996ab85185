"""The audit event table and the single-row chain head that serialises appends."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base


class AuditEvent(Base):
    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # person | service | job | anonymous
    on_behalf_of: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    dataset_version: Mapped[str | None] = mapped_column(String(71), nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decision: Mapped[str] = mapped_column(String(16), index=True)  # allow | deny | error
    rule: Mapped[str | None] = mapped_column(Text, nullable=True)
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    masked_columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    row_filter: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    grant_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # The chain step's version (1: unkeyed SHA-256, 2: HMAC under key `key_id`); see chain.py.
    chain_v: Mapped[int] = mapped_column(Integer, server_default="1")
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


HEAD_ID = 1  # the head's one row
CHECKPOINT_ACTION = "audit.checkpoint"  # the chain's record of a signed checkpoint


class AuditHead(Base):
    """One row; appends lock it (FOR UPDATE) so the chain has exactly one tail."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
